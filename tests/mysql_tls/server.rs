//! A private MariaDB for the TLS tests: `mariadb-install-db` into a temporary directory,
//! `mariadbd` on a free loopback port with its own socket and pid file, and (for the TLS
//! instance) a CA, server certificate and key made here with rcgen for `127.0.0.1` and
//! `localhost`. Its accounts are real (no `--skip-grant-tables`): `wxpay_tls` may only log
//! in over TLS (`REQUIRE SSL`), `wxpay_any` either way.
//!
//! One instance per test binary, started by the first test that needs it. The test harness
//! has no "after all tests" hook, so a watchdog started with it waits for this process to
//! end, however it ends, then stops the server and removes its directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// The account that may only log in over TLS, and one that may log in either way.
pub const TLS_USER: &str = "wxpay_tls";
pub const ANY_USER: &str = "wxpay_any";
/// Both accounts' password: a marker the tests look for where it must not be.
pub const PASSWORD: &str = "Tls-pw-7c1e9a";

pub struct PrivateMariaDb {
    pub port: u16,
    socket: PathBuf,
    /// The CA that signed the server's certificate (PEM); `None` on a plain instance.
    pub ca_pem: Option<String>,
    /// Never waited for: both outlive this process on purpose (the watchdog ends them).
    _server: Child,
    _watchdog: Child,
}

/// The TLS instance, or `None` (said loudly) where MariaDB is not installed outside CI.
pub fn tls() -> Option<&'static PrivateMariaDb> {
    static TLS: OnceLock<Option<PrivateMariaDb>> = OnceLock::new();
    TLS.get_or_init(|| PrivateMariaDb::start(true)).as_ref()
}

/// A second instance without TLS, for when the shared server turns out to have TLS.
pub fn plain() -> Option<&'static PrivateMariaDb> {
    static PLAIN: OnceLock<Option<PrivateMariaDb>> = OnceLock::new();
    PLAIN.get_or_init(|| PrivateMariaDb::start(false)).as_ref()
}

impl PrivateMariaDb {
    /// `mysql://USER:PASSWORD@HOST:PORT/DB?QUERY` for this server.
    pub fn url(&self, user: &str, host: &str, db: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "?" };
        format!(
            "mysql://{user}:{PASSWORD}@{host}:{}/{db}{sep}{query}",
            self.port
        )
    }

    /// The superuser over the unix socket, for setting up and for looking from the server's
    /// side.
    pub fn admin(&self) -> mysql_async::Pool {
        let opts = mysql_async::OptsBuilder::default()
            .user(Some("root"))
            .socket(Some(self.socket.display().to_string()));
        mysql_async::Pool::new(opts)
    }

    /// A fresh database both accounts may use.
    pub async fn database(&self) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("wxpay_tls_{}", N.fetch_add(1, Ordering::SeqCst));
        let pool = self.admin();
        let mut conn = pool.get_conn().await.expect("admin connects");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create database");
        drop(conn);
        let _ = pool.disconnect().await;
        name
    }

    fn start(tls: bool) -> Option<PrivateMariaDb> {
        let (Some(mariadbd), Some(install_db)) = (
            find(&["mariadbd", "mysqld"]),
            find(&["mariadb-install-db", "mysql_install_db"]),
        ) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but mariadbd / mariadb-install-db are not installed: the TLS tests \
                     must run in CI (apt-get install mariadb-server)"
                );
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: the MySQL TLS tests need mariadbd and mariadb-install-db \
                 (apt-get install mariadb-server) ***\n"
            );
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "wxpay-mariadb-{}-{}",
            if tls { "tls" } else { "plain" },
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("server directory");
        // From here on, however this process ends, the directory goes.
        let watchdog = watchdog(&dir);
        let as_root = is_root();

        let began = Instant::now();
        let mut install = Command::new(&install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if as_root {
            install.arg("--user=root");
        }
        run(install, &dir.join("install.log"), "mariadb-install-db");
        let install_took = began.elapsed();

        let ca_pem = tls.then(|| write_certificates(&dir));
        std::fs::write(dir.join("init.sql"), accounts()).expect("init.sql");
        let port = free_port();
        let socket = dir.join("mysqld.sock");
        let began = Instant::now();
        let mut server = Command::new(&mariadbd);
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--init-file={}", dir.join("init.sql").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                // The tests read each connection's transport from performance_schema.threads.
                "--performance-schema=ON",
            ]);
        if tls {
            server
                .arg(format!("--ssl-ca={}", dir.join("ca.pem").display()))
                .arg(format!(
                    "--ssl-cert={}",
                    dir.join("server-cert.pem").display()
                ))
                .arg(format!(
                    "--ssl-key={}",
                    dir.join("server-key.pem").display()
                ));
        } else {
            // Newer MariaDB makes itself a certificate unless told not to.
            server.arg("--skip-ssl");
        }
        if as_root {
            server.arg("--user=root");
        }
        use std::os::unix::process::CommandExt;
        // Its own process group: a Ctrl-C meant for the tests does not cut it down before
        // the watchdog can clean up.
        let mut child = server
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        std::fs::write(dir.join(LAUNCHED), child.id().to_string()).expect("pid file");

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        // `--init-file` runs before the server listens, so the accounts exist once it does.
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mariadbd exited ({status}) before listening:\n{}",
                    tail(&dir.join("error.log"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not listen on {addr} within 30 s:\n{}",
                tail(&dir.join("error.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let start_took = began.elapsed();
        eprintln!(
            "private MariaDB ({}) on 127.0.0.1:{port}: install {install_took:?}, start {start_took:?}",
            if tls { "TLS" } else { "plain" }
        );
        Some(PrivateMariaDb {
            port,
            socket,
            ca_pem,
            _server: child,
            _watchdog: watchdog,
        })
    }
}

/// The accounts, made by the server itself at start-up (`--init-file`).
fn accounts() -> String {
    format!(
        "DROP USER IF EXISTS ''@'localhost';\n\
         CREATE USER '{TLS_USER}'@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL;\n\
         CREATE USER '{ANY_USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n\
         GRANT ALL ON `wxpay\\_tls\\_%`.* TO '{TLS_USER}'@'%';\n\
         GRANT ALL ON `wxpay\\_tls\\_%`.* TO '{ANY_USER}'@'%';\n"
    )
}

/// A CA, and a server certificate it signed for `127.0.0.1` and `localhost`; returns the
/// CA's PEM.
fn write_certificates(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wxpay test database CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");

    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.join("server-cert.pem"), server_cert.pem()).expect("server-cert.pem");
    std::fs::write(dir.join("server-key.pem"), server_key.serialize_pem()).expect("key");
    ca_cert.pem()
}

/// A CA that signed nothing the server holds.
pub fn stranger_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wxpay test database CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-signed").pem()
}

/// Where the test writes the pid of the `mariadbd` it started.
const LAUNCHED: &str = "launched.pid";

/// Waits for the tests to end (this process, whichever way it ends), then stops the server
/// it started, if any, and removes the directory. In its own process group, like the server.
fn watchdog(dir: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let script = r#"
        # Gone, or a zombie nobody has reaped yet: either way the tests are over.
        alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }
        while alive "$1"; do sleep 0.2; done
        if [ -f "$2/$3" ]; then
            server=$(cat "$2/$3")
            kill -TERM "$server" 2>/dev/null
            i=0
            while alive "$server" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
            kill -KILL "$server" 2>/dev/null
        fi
        rm -rf "$2"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(LAUNCHED)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watchdog starts")
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    let dirs: Vec<PathBuf> = dirs.collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn run(mut command: Command, log: &Path, what: &str) {
    let out = std::fs::File::create(log).expect("log file");
    let status = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .status()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(status.success(), "{what} failed ({status}):\n{}", tail(log));
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
