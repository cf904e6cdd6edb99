//! A MariaDB server of the campaign's own (`--private-mariadb`), so the fault schedule may
//! restart it: the shared server on 3306 serves other test runs and is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

fn run_as() -> &'static str {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        "mysql"
    } else {
        ""
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    /// A fresh datadir under `work`, and the server started on a free port.
    pub async fn create(work: &Path) -> Result<Server, String> {
        let dir = work.join("mariadb");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let user = run_as();
        let cnf = format!(
            "[mariadbd]\n{}datadir = {d}/data\nsocket = {d}/mariadbd.sock\npid-file = {d}/mariadbd.pid\n\
             log-error = {d}/error.log\nbind-address = 127.0.0.1\nport = {port}\nskip-name-resolve\n\
             performance_schema = OFF\ninnodb_buffer_pool_size = 64M\nmax_connections = 400\n",
            if user.is_empty() { String::new() } else { format!("user = {user}\n") },
            d = dir.display()
        );
        let server = Server {
            port,
            dir,
            child: Mutex::new(None),
        };
        std::fs::write(server.cnf(), cnf).map_err(|e| e.to_string())?;
        if !user.is_empty() {
            let _ = Command::new("chown")
                .args(["-R", user])
                .arg(&server.dir)
                .status();
        }
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", server.cnf().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .map_err(|e| format!("cannot run mariadb-install-db: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        server.start().await?;
        Ok(server)
    }

    pub async fn start(&self) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.join("mariadbd.out")).map_err(|e| e.to_string())?;
        let child = Command::new("/usr/sbin/mariadbd")
            .arg(format!("--defaults-file={}", self.cnf().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start mariadbd: {e}"))?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(c) = mysql_async::Conn::from_url(self.url().as_str()).await {
                let _ = c.disconnect().await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "mariadbd did not come up (see {}/error.log)",
            self.dir.display()
        ))
    }

    /// A crash (SIGKILL: InnoDB recovers on start) or a clean shutdown (SIGTERM).
    pub async fn restart(&self, crash: bool, down: Duration) -> Result<(), String> {
        self.stop(crash);
        tokio::time::sleep(down).await;
        self.start().await
    }

    pub fn stop(&self, crash: bool) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe {
                libc::kill(
                    c.id() as i32,
                    if crash { libc::SIGKILL } else { libc::SIGTERM },
                );
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nodes of `scripts/galera.sh`'s cluster, in its order (node N serves port 4305+N),
/// crashed and started again through the script: the cluster's own restart fault. One node
/// at a time, so the other two keep the quorum.
pub struct GaleraNodes {
    pub script: std::path::PathBuf,
    pub count: usize,
    /// A node that would not come back: no other node is killed, or the quorum goes.
    pub broken: std::sync::atomic::AtomicBool,
}

impl GaleraNodes {
    /// SIGKILL of node `node` (1-based), then, after `down`, its start; it rejoins by IST
    /// and is back once the script has seen it Synced.
    pub async fn restart(&self, node: usize, down: Duration) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.script_run("kill-node", node).await?;
        tokio::time::sleep(down).await;
        let mut last = String::new();
        for _ in 0..3 {
            match self.script_run("start-node", node).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        self.broken.store(true, Ordering::SeqCst);
        Err(format!(
            "node {node} did not come back; no more node restarts in this campaign: {last}"
        ))
    }

    async fn script_run(&self, what: &'static str, node: usize) -> Result<(), String> {
        let script = self.script.clone();
        let out = tokio::task::spawn_blocking(move || {
            // Bounded: a wait inside the script must not hold the fault schedule forever.
            std::process::Command::new("timeout")
                .arg("180")
                .arg("bash")
                .arg(&script)
                .arg(what)
                .arg(node.to_string())
                .output()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {what} {node} failed: {}{}",
                self.script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}
