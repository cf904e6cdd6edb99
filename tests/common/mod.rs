//! The end-to-end harness: the router in local HTTP mode against the WeChat Pay simulator,
//! a fake business backend, and a real store (in-memory SQLite, or a fresh MySQL database
//! when `TEST_DATABASE_URL` is set). Nothing in the product is mocked.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use wxpay_local::{LocalEnv, LocalOptions};
use wxpay_shared::store::Order;

pub const SECRET: &str = "test-internal-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Mysql,
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    admin_url: String,
    name: String,
}

impl TestDb {
    /// `None` (and a loud note) when MySQL is not configured outside CI; in CI a missing
    /// `TEST_DATABASE_URL` fails the test.
    pub async fn create() -> Option<(TestDb, String)> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but TEST_DATABASE_URL is not set: MySQL tests must run in CI (e.g. TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test)");
            }
            // Straight to stderr, once per test binary: the test harness swallows eprintln!
            // of passing tests, and a skip nobody sees is no skip at all.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: the MySQL end-to-end tests of this binary need TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test ***\n"
                );
            });
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "wxpay_e2e_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let pool = mysql_async::Pool::new(url.as_str());
        let mut conn = pool.get_conn().await.expect("connect to TEST_DATABASE_URL");
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .expect("drop db");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create db");
        drop(conn);
        let _ = pool.disconnect().await;
        let base = url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(url.clone());
        let db_url = format!("{base}/{name}");
        Some((
            TestDb {
                admin_url: url,
                name,
            },
            db_url,
        ))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a private one on its own thread may block.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                let pool = mysql_async::Pool::new(url.as_str());
                if let Ok(mut conn) = pool.get_conn().await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                }
                let _ = pool.disconnect().await;
            });
        })
        .join();
    }
}

/// A second business backend (for `API_BASE_URL_<BUSINESSTYPE>`), expecting [`SECRET`].
pub async fn business_backend() -> wxpay_local::FakeBackend {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    wxpay_local::FakeBackend::start(any, Some(SECRET.into()), false)
        .await
        .expect("the business backend starts")
}

pub struct Harness {
    pub env: LocalEnv,
    pub http: reqwest::Client,
    pub kind: StoreKind,
    _db: Option<TestDb>,
}

impl std::ops::Deref for Harness {
    type Target = LocalEnv;
    fn deref(&self) -> &LocalEnv {
        &self.env
    }
}

impl Harness {
    pub async fn start(kind: StoreKind) -> Option<Harness> {
        Self::start_with(kind, |_| {}).await
    }

    /// WeChat Pay calls time out after 700 ms, so a delayed answer is a timeout in tests.
    pub async fn start_impatient(kind: StoreKind) -> Option<Harness> {
        Self::start_with(kind, |o| {
            o.extra_vars
                .push(("WECHATPAY_TIMEOUT_MS".into(), "700".into()));
        })
        .await
    }

    pub async fn start_with(
        kind: StoreKind,
        tweak: impl FnOnce(&mut LocalOptions),
    ) -> Option<Harness> {
        let mut opts = LocalOptions::for_tests();
        // The router stands where CloudBase would put it: the gateway sets X-WX-OPENID.
        opts.extra_vars
            .push(("TRUST_OPENID_HEADER".into(), "true".into()));
        let db = match kind {
            StoreKind::Sqlite => None,
            StoreKind::Mysql => {
                let (db, url) = TestDb::create().await?;
                opts.database_url = url;
                Some(db)
            }
        };
        tweak(&mut opts);
        let env = LocalEnv::start(opts)
            .await
            .expect("local environment starts");
        Some(Harness {
            env,
            http: reqwest::Client::new(),
            kind,
            _db: db,
        })
    }

    /// The `DATABASE_URL` the functions were given.
    pub fn database_url(&self) -> String {
        self.vars
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .expect("DATABASE_URL is set")
    }

    pub fn pay_url(&self) -> String {
        format!("{}/pay", self.env.router_url)
    }

    /// POSTs raw bytes to a router path with headers; returns status and body text.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.env.router_url))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("router answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    pub async fn call_with(&self, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let (status, text) = self.post_raw("/pay", headers, body.to_string()).await;
        let value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("envelope is JSON: {text}"));
        (status, value)
    }

    /// An anonymous caller (web page, no identity).
    pub async fn call(&self, body: Value) -> (u16, Value) {
        self.call_with(&[], body).await
    }

    /// A mini-program user, identified the way CloudBase does it (`X-WX-OPENID`, and the
    /// app it belongs to in `X-WX-APPID`).
    pub async fn call_as(&self, openid: &str, body: Value) -> (u16, Value) {
        let app = self.sim.config().appid.clone();
        self.call_with(&[("X-WX-OPENID", openid), ("X-WX-APPID", &app)], body)
            .await
    }

    /// A trusted server caller.
    pub async fn call_trusted(&self, body: Value) -> (u16, Value) {
        self.call_with(&[("X-Internal-Secret", SECRET)], body).await
    }

    /// Creates a JSAPI order for `openid` and returns its `outTradeNo`.
    pub async fn create_order(&self, openid: &str, package: &str) -> String {
        let (status, body) = self
            .call_as(
                openid,
                json!({ "type": "wxpay_order", "packageType": package }),
            )
            .await;
        assert_eq!(status, 200, "order created: {body}");
        body["data"]["outTradeNo"]
            .as_str()
            .expect("outTradeNo")
            .to_string()
    }

    /// Creates an order and lets the simulator pay it (notification delivered and handled).
    pub async fn create_paid_order(&self, openid: &str, package: &str) -> String {
        let no = self.create_order(openid, package).await;
        let outcome = self.env.sim.pay(&no).await.expect("simulator pays");
        assert_eq!(
            outcome.status, 204,
            "notification handled: {}",
            outcome.body
        );
        no
    }

    /// Starts a refund as the trusted backend; returns its `outRefundNo`.
    pub async fn start_refund(&self, out_trade_no: &str, amount: Option<i64>) -> String {
        let mut call = json!({ "type": "wxpay_refund", "outTradeNo": out_trade_no });
        if let Some(a) = amount {
            call["amount"] = json!(a);
        }
        let (status, body) = self.call_trusted(call).await;
        assert_eq!(status, 200, "refund started: {body}");
        body["data"]["outRefundNo"]
            .as_str()
            .expect("outRefundNo")
            .to_string()
    }

    /// WeChat Pay finishes a refund; its notification must be handled.
    pub async fn finish_refund(&self, out_refund_no: &str, outcome: wxpay_sim::RefundOutcome) {
        let answer = self
            .env
            .sim
            .complete_refund(out_refund_no, outcome)
            .await
            .expect("simulator finishes the refund");
        assert_eq!(
            answer.status, 204,
            "refund notification handled: {}",
            answer.body
        );
    }

    pub async fn refund_status(&self, out_refund_no: &str) -> wxpay_shared::store::RefundStatus {
        self.env
            .store
            .get_refund(out_refund_no)
            .await
            .expect("store answers")
            .expect("refund exists")
            .status
    }

    pub async fn order(&self, out_trade_no: &str) -> Order {
        self.env
            .store
            .get_order(out_trade_no)
            .await
            .expect("store answers")
            .expect("order exists")
    }

    /// Waits (bounded) until `cond` holds; for effects that happen after an answer.
    pub async fn eventually(&self, what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..100 {
            if cond() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }
}

/// Instantiates each `async fn name(kind: StoreKind)` once per store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::StoreKind::Sqlite).await
                }
            )*
        }
        mod on_mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::StoreKind::Mysql).await
                }
            )*
        }
    };
}

/// A harness whose store other sessions can open too: on SQLite a file in a directory of
/// its own (removed when the returned guard drops), on MySQL the test's database.
pub async fn start_on_shared_store(
    kind: StoreKind,
    name: &str,
    tweak: impl FnOnce(&mut LocalOptions),
) -> Option<(Harness, SharedDir)> {
    let dir = std::env::temp_dir().join(format!("wxpay-{name}-{}-{kind:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let file = dir.join("store.db").display().to_string();
    let h = Harness::start_with(kind, |o| {
        if kind == StoreKind::Sqlite {
            o.database_url = format!("sqlite://{file}");
        }
        tweak(o);
    })
    .await?;
    Some((h, SharedDir(dir)))
}

/// Removes a shared store's directory at the end of a test.
pub struct SharedDir(std::path::PathBuf);

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Harness {
    /// WeChat Pay retries a paid order's notification to `url`, twice (the second a
    /// duplicate): both are acknowledged, the payment is recorded once and the backend is
    /// told once.
    pub async fn retries_record_once(&self, no: &str, url: &str) {
        for _ in 0..2 {
            let n = self.sim.build_transaction_notification(no).expect("paid");
            let outcome = self.sim.deliver(&n, url).await.expect("delivered");
            assert_eq!(outcome.status, 204, "{outcome:?}");
        }
        assert_eq!(
            self.order(no).await.status,
            wxpay_shared::store::OrderStatus::Paid
        );
        assert_eq!(self.store.outbox_for_order(no).await.unwrap().len(), 1);
        self.eventually("one delivery", || self.backend.deliveries_for(no) == 1)
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(self.backend.deliveries_for(no), 1, "exactly one delivery");
    }
}
