//! TLS to MySQL (issue 21, item 5), against a MariaDB these tests start themselves with a CA
//! they make (`server.rs`), and against the shared MariaDB, which has no TLS.
//!
//! The stories: an order is created, paid and queried with `ssl-mode=VERIFY_IDENTITY`, and
//! the server sees TLS on every connection the functions hold; a CA that did not sign the
//! server, or a name its certificate lacks, is refused naming TLS, the host and the mode
//! (VERIFY_CA accepts the name); REQUIRED against a server without TLS is refused with
//! nothing sent, not even the user name; the login travels inside TLS; a login without TLS
//! for an account that requires it is refused by the server and the store says so; and
//! without `ssl-mode` a local server is used over TLS when it offers it, in plain when not.

#[path = "../common/mod.rs"]
mod common;
mod proxy;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use common::{Harness, StoreKind};
use mysql_async::prelude::Queryable;
use proxy::{contains, Forwarder};
use serde_json::json;
use server::{PrivateMariaDb, ANY_USER, PASSWORD, TLS_USER};
use wxpay_shared::config::Config;
use wxpay_shared::state::App;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The harness starts with in-memory SQLite; each story points the functions at the
/// database it is about instead.
async fn harness() -> Harness {
    let _ = captured();
    Harness::start(StoreKind::Sqlite)
        .await
        .expect("the harness starts")
}

/// The functions' configuration with this `DATABASE_URL` (and `DATABASE_CA_PEM`), as a
/// deployment would set it: the CA with literal `\n`, as it fits in one variable.
fn config(h: &Harness, url: &str, ca_pem: Option<&str>) -> Config {
    let mut vars = h.vars.clone();
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".into(), url.into()));
    if let Some(pem) = ca_pem {
        vars.push(("DATABASE_CA_PEM".into(), pem.trim().replace('\n', "\\n")));
    }
    Config::from_vars(vars).expect("the configuration is valid")
}

fn app(h: &Harness, url: &str, ca_pem: Option<&str>) -> App {
    App::new(config(h, url, ca_pem), wxpay_shared::handlers::ALL_TYPES).expect("the store opens")
}

/// Why the store cannot be used, as the functions would report it.
async fn refusal(app: &App) -> String {
    match app.store.ping().await {
        Ok(()) => panic!("the store was expected to refuse"),
        Err(e) => e.to_string(),
    }
}

/// An order asked for through the functions: 50010 before WeChat Pay hears of it.
async fn order_is_refused_retryable(h: &Harness, app: &App) {
    let answer = wxpay_shared::runtime::handle_raw_event(
        app,
        json!({ "type": "wxpay_order", "packageType": "basic",
                "userInfo": { "appId": h.sim.config().appid, "openId": "o_tls_refused" } }),
    )
    .await;
    assert_eq!(answer["code"], 50010, "{answer}");
    assert_eq!(
        h.sim.request_count("/v3/pay"),
        0,
        "no prepay without a stored order"
    );
    assert!(!answer.to_string().contains(PASSWORD), "{answer}");
}

/// The transport (`SSL/TLS`, `TCP/IP`, `Socket`) of every connection the server holds on
/// database `db`, and the TLS version of each, read on the server.
async fn transports(db: &PrivateMariaDb, name: &str) -> Vec<(String, Option<String>)> {
    let pool = db.admin();
    let mut conn = pool.get_conn().await.expect("admin connects");
    let rows: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT t.CONNECTION_TYPE, s.VARIABLE_VALUE FROM performance_schema.threads t \
             LEFT JOIN performance_schema.status_by_thread s \
               ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_version' \
             WHERE t.PROCESSLIST_DB = ?",
            (name,),
        )
        .await
        .expect("performance_schema answers");
    drop(conn);
    let _ = pool.disconnect().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_created_paid_and_queried_over_a_verified_tls_connection() {
    let Some(db) = server::tls() else {
        return;
    };
    let name = db.database().await;
    let ca = db.ca_pem.clone().expect("the TLS server has a CA");
    // The account may only log in over TLS; the host is checked against the certificate.
    let url = db.url(TLS_USER, "127.0.0.1", &name, "ssl-mode=VERIFY_IDENTITY");
    let h = Harness::start_with(StoreKind::Sqlite, |o| {
        o.database_url = url.clone();
        o.extra_vars
            .push(("DATABASE_CA_PEM".into(), ca.trim().replace('\n', "\\n")));
    })
    .await
    .expect("the functions start against the TLS server");

    let no = h.create_paid_order("o_tls", "premium").await;
    let (status, body) = h
        .call_as(
            "o_tls",
            json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tradeState"], "SUCCESS", "{body}");
    h.eventually("the backend is told", || h.backend.deliveries_for(&no) == 1)
        .await;

    // On the server: the row is paid, and every connection the functions hold is TLS.
    let pool = db.admin();
    let mut conn = pool.get_conn().await.expect("admin connects");
    let stored: Option<(String, i64)> = conn
        .exec_first(
            format!("SELECT status, amount FROM `{name}`.orders WHERE out_trade_no = ?"),
            (no.as_str(),),
        )
        .await
        .expect("the order is readable");
    assert_eq!(stored, Some(("paid".to_string(), 2990)));
    drop(conn);
    let _ = pool.disconnect().await;
    let seen = transports(db, &name).await;
    assert!(!seen.is_empty(), "the functions hold a connection");
    for (transport, version) in &seen {
        assert_eq!(transport, "SSL/TLS", "{seen:?}");
        assert!(
            version.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
            "{seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_server_certificate_is_refused_naming_tls_the_host_and_the_mode()
{
    let Some(db) = server::tls() else {
        return;
    };
    let h = harness().await;
    let name = db.database().await;
    let stranger = server::stranger_ca_pem();
    for mode in ["VERIFY_IDENTITY", "VERIFY_CA"] {
        let url = db.url(TLS_USER, "127.0.0.1", &name, &format!("ssl-mode={mode}"));
        let app = app(&h, &url, Some(&stranger));
        let why = refusal(&app).await;
        assert!(why.contains("database unavailable"), "{why}");
        assert!(why.contains("TLS"), "{why}");
        assert!(why.contains(&format!("127.0.0.1:{}", db.port)), "{why}");
        assert!(why.contains(&format!("ssl-mode={mode}")), "{why}");
        // Same name as the real CA, another key: the signature gives it away.
        assert!(why.contains("invalid peer certificate"), "{why}");
        assert!(!why.contains(PASSWORD), "{why}");
        order_is_refused_retryable(&h, &app).await;
    }
    // The operator's log says why, with the host and the mode.
    let log = log_text();
    let said = format!(
        "TLS to 127.0.0.1:{} failed (ssl-mode=VERIFY_IDENTITY)",
        db.port
    );
    assert!(log.contains(&said), "the log lacks `{said}`:\n{log}");
    assert!(!log.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_identity_refuses_a_name_the_certificate_lacks_and_verify_ca_accepts_it() {
    let Some(db) = server::tls() else {
        return;
    };
    let h = harness().await;
    let name = db.database().await;
    let ca = db.ca_pem.as_deref().expect("CA");
    // 127.0.0.2 reaches the same server, but the certificate names 127.0.0.1 and localhost.
    let other_name = Forwarder::start(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        SocketAddr::new(LOOPBACK, db.port),
    )
    .await;
    let host = other_name.addr.to_string();
    let url = |mode: &str| format!("mysql://{TLS_USER}:{PASSWORD}@{host}/{name}?ssl-mode={mode}");

    let strict = app(&h, &url("VERIFY_IDENTITY"), Some(ca));
    let why = refusal(&strict).await;
    assert!(why.contains("TLS"), "{why}");
    assert!(why.contains(&host), "{why}");
    assert!(why.contains("ssl-mode=VERIFY_IDENTITY"), "{why}");
    assert!(why.contains("not valid for name"), "{why}");
    order_is_refused_retryable(&h, &strict).await;

    let chain_only = app(&h, &url("VERIFY_CA"), Some(ca));
    chain_only
        .store
        .migrate()
        .await
        .expect("VERIFY_CA checks the chain, not the name");
    // `migrate` closes its own connection (it carries a migration's limits); a plain call
    // leaves one in the pool to look at.
    chain_only
        .store
        .ping()
        .await
        .expect("VERIFY_CA serves calls");
    assert_eq!(
        transports(db, &name).await.first().map(|t| t.0.as_str()),
        Some("SSL/TLS")
    );
}

/// The shared MariaDB when it has no TLS (it has none here), else a private one without;
/// with the `user[:password]` that logs in there.
async fn server_without_tls() -> Option<(SocketAddr, String)> {
    let private = || {
        server::plain().map(|db| {
            (
                SocketAddr::new(LOOPBACK, db.port),
                format!("{ANY_USER}:{PASSWORD}"),
            )
        })
    };
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        return private();
    };
    let opts = mysql_async::Opts::from_url(&url).expect("TEST_DATABASE_URL parses");
    let pool = mysql_async::Pool::new(opts.clone());
    let mut conn = pool.get_conn().await.expect("the shared server answers");
    let have_ssl: Option<(String, String)> = conn
        .query_first("SHOW VARIABLES LIKE 'have_ssl'")
        .await
        .expect("have_ssl");
    drop(conn);
    let _ = pool.disconnect().await;
    if have_ssl.is_some_and(|(_, v)| v.eq_ignore_ascii_case("YES")) {
        return private();
    }
    let ip: IpAddr = opts.ip_or_hostname().parse().unwrap_or(LOOPBACK);
    let login = match (opts.user(), opts.pass()) {
        (Some(u), Some(p)) => format!("{u}:{p}"),
        (Some(u), None) => u.to_string(),
        _ => "root".to_string(),
    };
    Some((SocketAddr::new(ip, opts.tcp_port()), login))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_against_a_server_without_tls_is_refused_before_the_user_name_or_password_is_sent()
{
    let Some((plain, _)) = server_without_tls().await else {
        return;
    };
    let h = harness().await;
    let wire = Forwarder::start(LOOPBACK, plain).await;
    let url = format!(
        "mysql://wxpay_probe:{PASSWORD}@127.0.0.1:{}/test?ssl-mode=REQUIRED",
        wire.addr.port()
    );
    let app = app(&h, &url, None);
    let why = refusal(&app).await;
    assert!(why.contains("database unavailable"), "{why}");
    assert!(why.contains("TLS"), "{why}");
    assert!(why.contains(&wire.addr.to_string()), "{why}");
    assert!(why.contains("ssl-mode=REQUIRED"), "{why}");
    assert!(wire.connections() >= 1, "the store did reach the server");
    // Not a login, not a TLS request: the store read the greeting and hung up.
    assert_eq!(wire.sent(), Vec::<u8>::new(), "the store sent something");

    order_is_refused_retryable(&h, &app).await;
    let log = log_text();
    let said = format!("TLS refused: {} offers no TLS", wire.addr);
    assert!(log.contains(&said), "the log lacks `{said}`:\n{log}");
    assert!(wire.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_travels_inside_tls_and_without_it_the_user_name_is_on_the_wire() {
    let Some(db) = server::tls() else {
        return;
    };
    let h = harness().await;
    let name = db.database().await;
    let target = SocketAddr::new(LOOPBACK, db.port);

    let tls_wire = Forwarder::start(LOOPBACK, target).await;
    let url = format!(
        "mysql://{TLS_USER}:{PASSWORD}@{}/{name}?ssl-mode=REQUIRED",
        tls_wire.addr
    );
    app(&h, &url, None)
        .store
        .ping()
        .await
        .expect("REQUIRED logs in over TLS");
    let sent = tls_wire.sent();
    assert!(!sent.is_empty());
    assert!(!contains(&sent, TLS_USER.as_bytes()), "user name in clear");
    assert!(!contains(&sent, PASSWORD.as_bytes()), "password in clear");

    // The same check sees a plain login: the user name is right there.
    let plain_wire = Forwarder::start(LOOPBACK, target).await;
    let url = format!(
        "mysql://{ANY_USER}:{PASSWORD}@{}/{name}?ssl-mode=DISABLED",
        plain_wire.addr
    );
    app(&h, &url, None)
        .store
        .ping()
        .await
        .expect("DISABLED logs in");
    assert!(contains(&plain_wire.sent(), ANY_USER.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_against_an_account_that_requires_tls_is_refused_by_the_server_and_said_so() {
    let Some(db) = server::tls() else {
        return;
    };
    let h = harness().await;
    let name = db.database().await;
    let url = db.url(TLS_USER, "127.0.0.1", &name, "ssl-mode=DISABLED");
    let app = app(&h, &url, None);
    let why = refusal(&app).await;
    assert!(why.contains("Access denied"), "the server refused: {why}");
    assert!(why.contains("without TLS (ssl-mode=DISABLED)"), "{why}");
    assert!(why.contains(&format!("127.0.0.1:{}", db.port)), "{why}");
    assert!(!why.contains(PASSWORD), "{why}");
    order_is_refused_retryable(&h, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssl_mode_a_local_server_is_used_over_tls_when_it_offers_it_and_plain_when_not() {
    let Some(db) = server::tls() else {
        return;
    };
    let h = harness().await;
    let name = db.database().await;
    // Even the TLS-only account: the default on this machine is PREFERRED.
    let offered = app(&h, &db.url(TLS_USER, "127.0.0.1", &name, ""), None);
    offered.store.migrate().await.expect("TLS when offered");
    offered.store.ping().await.expect("TLS when offered");
    let seen = transports(db, &name).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|t| t.0 == "SSL/TLS"),
        "{seen:?}"
    );

    // A server without TLS (the shared MariaDB, as every other MySQL test uses it).
    let Some((plain, login)) = server_without_tls().await else {
        return;
    };
    let wire = Forwarder::start(LOOPBACK, plain).await;
    let not_offered = app(&h, &format!("mysql://{login}@{}/", wire.addr), None);
    not_offered
        .store
        .ping()
        .await
        .expect("plain when not offered");
    not_offered
        .store
        .ping()
        .await
        .expect("and again, plain at once");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The functions' log, shared by the tests of this binary (the subscriber is process-wide).
fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber =
            wxpay_shared::logging::subscriber(tracing::Level::INFO, move || sink.clone()).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        out
    })
}

fn log_text() -> String {
    let bytes = captured()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    String::from_utf8_lossy(&bytes).into_owned()
}
