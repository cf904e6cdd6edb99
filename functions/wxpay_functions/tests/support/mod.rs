//! The built router run as a local HTTP server (how it runs as an SCF / CloudBase web
//! function, and locally), a MySQL database of a test's own, and the `migrate` command.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");

static N: AtomicUsize = AtomicUsize::new(0);

/// A directory of the test's own under the temp directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "wxpay-fn-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite://{}", self.0.join(name).display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The router binary serving local HTTP on a free port, with only `vars` in its
/// environment. Killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Server {
    pub async fn start(vars: &[(String, String)], log_dir: &Path) -> Server {
        Server::start_with(vars, log_dir, None).await
    }

    /// As [`Server::start`], with at most `max_files` file descriptors (RLIMIT_NOFILE), as
    /// a small container or a busy host gives it.
    pub async fn start_with(
        vars: &[(String, String)],
        log_dir: &Path,
        max_files: Option<u64>,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = log_dir.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(BIN);
        if let Some(n) = max_files {
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit(2) is async-signal-safe, and runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .env_clear()
            .envs(vars.iter().cloned())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the router binary");
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", server.url)).send().await {
                if r.status().is_success() {
                    return server;
                }
            }
            if started.elapsed() > Duration::from_secs(60) || server.exited() {
                panic!("the router did not come up:\n{}", server.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Freezes the process, as Lambda freezes a sandbox once it has answered.
    pub fn freeze(&self) {
        // SAFETY: a signal to our own child, whose pid we hold and have not reaped.
        assert_eq!(
            unsafe { libc::kill(self.pid(), libc::SIGSTOP) },
            0,
            "SIGSTOP"
        );
    }

    pub fn thaw(&self) {
        // SAFETY: as in `freeze`.
        assert_eq!(
            unsafe { libc::kill(self.pid(), libc::SIGCONT) },
            0,
            "SIGCONT"
        );
    }

    /// POSTs `body` to `/pay` with `headers`: the status and the envelope.
    pub async fn call(
        &self,
        headers: &[(&str, &str)],
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/pay", self.url))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("the router answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("an envelope: {text}\n{}", self.logs()));
        (status, value)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A frozen process ignores SIGKILL until it runs again only on some systems; thaw it.
        // SAFETY: as in `freeze`.
        unsafe {
            libc::kill(self.pid(), libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- the router's log ---\n{}", self.logs());
        }
    }
}

/// `wxpay_functions migrate ARGS` with `DATABASE_URL` (and nothing else) set.
pub fn migrate(database_url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .arg("migrate")
        .args(args)
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run the migrate command")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A MySQL database of the test's own, dropped afterwards. `None` (said loudly) without
/// `TEST_DATABASE_URL`; with `CI=true` its absence fails the test.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Option<TestDb> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true but TEST_DATABASE_URL is not set: these MySQL tests must run");
                }
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: this MySQL test needs TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test ***\n"
                );
                return None;
            }
        };
        let name = format!(
            "wxpay_fn_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = mysql_async::Conn::from_url(admin_url.as_str())
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create database");
        let _ = conn.disconnect().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.clone(), |(b, _)| b.to_string());
        Some(TestDb {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url.as_str())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = mysql_async::Conn::from_url(url.as_str()).await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}
