//! Two function instances on two nodes of a Galera cluster: instance A (the local
//! environment's own router, with the WeChat Pay simulator and the fake backend) talks to
//! node 1, instance B (a second router, configured the same) to node 2. Both share the
//! simulator and the backend, as two warm instances of one deployment do.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use wxpay_local::{LocalEnv, LocalOptions};
use wxpay_shared::config::Config;
use wxpay_shared::state::App;
use wxpay_shared::store::{self, Order, Store};
use wxpay_sim::SignedNotification;

pub const SECRET: &str = "test-internal-secret-0123456789";

const HINT: &str = "the cluster tests need TEST_GALERA_URLS=mysql://root@127.0.0.1:4306/test,mysql://root@127.0.0.1:4307/test,mysql://root@127.0.0.1:4308/test (scripts/galera.sh start)";

/// Killing a node stalls the whole cluster for a few seconds while the others evict it; the
/// tests of this binary take turns so that no test measures another's fault.
pub static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node URLs, or `None` (said loudly) outside CI; with `CI=true` a missing cluster fails.
pub fn galera_urls() -> Option<Vec<String>> {
    match std::env::var("TEST_GALERA_URLS") {
        Ok(v) if !v.trim().is_empty() => {
            let urls: Vec<String> = v.split(',').map(|u| u.trim().to_string()).collect();
            assert!(urls.len() >= 2, "TEST_GALERA_URLS names at least two nodes");
            Some(urls)
        }
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{HINT} (CI=true, so they may not be skipped)");
            }
            static LOUD: Once = Once::new();
            LOUD.call_once(|| {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {HINT} ***\n");
            });
            None
        }
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

/// The test's database on the cluster (made on node 1, replicated), dropped at the end.
struct ClusterDb {
    admin_url: String,
    name: String,
}

impl Drop for ClusterDb {
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
                if let Ok(mut c) = mysql_async::Conn::from_url(url.as_str()).await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}

/// Which instance a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    A,
    B,
}

pub struct Pair {
    /// Instance A (node 1), the simulator and the backend.
    pub env: LocalEnv,
    pub b_url: String,
    /// The instances' own stores: `stores[0]` on node 1, `stores[1]` on node 2.
    pub stores: [Arc<dyn Store>; 2],
    pub http: reqwest::Client,
    _db: ClusterDb,
}

impl std::ops::Deref for Pair {
    type Target = LocalEnv;
    fn deref(&self) -> &LocalEnv {
        &self.env
    }
}

impl Pair {
    pub async fn start() -> Option<Pair> {
        let urls = galera_urls()?;
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "wxpay_gc_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = mysql_async::Conn::from_url(urls[0].as_str())
            .await
            .expect("connect to node 1 of TEST_GALERA_URLS");
        admin
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create the test database");
        let _ = admin.disconnect().await;
        let db = ClusterDb {
            admin_url: urls[0].clone(),
            name: name.clone(),
        };
        let (node1, node2) = (
            with_database(&urls[0], &name),
            with_database(&urls[1], &name),
        );

        let mut opts = LocalOptions::for_tests();
        opts.database_url = node1;
        opts.extra_vars
            .push(("TRUST_OPENID_HEADER".into(), "true".into()));
        let env = LocalEnv::start(opts)
            .await
            .expect("instance A starts on node 1");

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a port for instance B");
        let b_url = format!("http://{}", listener.local_addr().expect("address"));
        let mut vars = env.vars.clone();
        for (k, v) in vars.iter_mut() {
            match k.as_str() {
                "DATABASE_URL" => *v = node2.clone(),
                "WECHAT_NOTIFY_URL" => *v = format!("{b_url}/pay"),
                _ => {}
            }
        }
        let config = Config::from_vars(vars).expect("instance B's configuration");
        let b_store = store::open(&node2).expect("instance B's store on node 2");
        let app = Arc::new(App::with_store(
            config,
            b_store.clone(),
            wxpay_shared::handlers::ALL_TYPES,
        ));
        tokio::spawn(wxpay_shared::runtime::serve(app, listener));
        let stores = [env.store.clone(), b_store];
        Some(Pair {
            env,
            b_url,
            stores,
            http: reqwest::Client::new(),
            _db: db,
        })
    }

    pub fn pay_url(&self, on: On) -> String {
        match on {
            On::A => format!("{}/pay", self.env.router_url),
            On::B => format!("{}/pay", self.b_url),
        }
    }

    pub fn store(&self, on: On) -> &Arc<dyn Store> {
        match on {
            On::A => &self.stores[0],
            On::B => &self.stores[1],
        }
    }

    pub async fn call(&self, on: On, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.pay_url(on)).body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("the instance answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, value)
    }

    pub async fn call_trusted(&self, on: On, body: Value) -> (u16, Value) {
        self.call(on, &[("X-Internal-Secret", SECRET)], body).await
    }

    /// A JSAPI order for `openid`, made through instance `on`.
    pub async fn create_order(&self, on: On, openid: &str) -> String {
        let app = self.sim.config().appid.clone();
        let (status, body) = self
            .call(
                on,
                &[("X-WX-OPENID", openid), ("X-WX-APPID", &app)],
                json!({ "type": "wxpay_order", "packageType": "premium" }),
            )
            .await;
        assert_eq!(status, 200, "order created on {on:?}: {body}");
        body["data"]["outTradeNo"]
            .as_str()
            .expect("outTradeNo")
            .to_string()
    }

    /// WeChat Pay posts `n` to instance `on`: the status and how long the answer took.
    pub async fn deliver(&self, on: On, n: &SignedNotification) -> (u16, Duration) {
        let started = Instant::now();
        let status = match self.sim.deliver(n, &self.pay_url(on)).await {
            Ok(outcome) => outcome.status,
            Err(e) => panic!("instance {on:?} did not answer a notification: {e}"),
        };
        (status, started.elapsed())
    }

    /// Waits (bounded) until node `on` sees the order, and paid when `paid` says so: a node
    /// applies another's commit a moment later, and these tests race writes, not reads.
    pub async fn seen(&self, on: On, no: &str, paid: bool) -> Order {
        for _ in 0..500 {
            if let Ok(Some(o)) = self.store(on).get_order(no).await {
                if !paid || o.transaction_id.is_some() {
                    return o;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("order {no} never reached node {on:?} (paid: {paid})");
    }

    /// Waits (bounded) until `cond` holds.
    pub async fn eventually(&self, what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    /// Conflicts the cluster resolved so far, summed over the nodes: transactions that
    /// failed certification at commit, and local ones aborted by a replicated write
    /// (`wsrep_local_cert_failures` + `wsrep_local_bf_aborts`).
    pub async fn conflicts(&self) -> u64 {
        let mut total = 0;
        for url in galera_urls().unwrap_or_default() {
            let Ok(mut c) = mysql_async::Conn::from_url(url.as_str()).await else {
                continue;
            };
            let rows: Vec<(String, String)> = c
                .query(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN \
                     ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
                )
                .await
                .unwrap_or_default();
            total += rows
                .iter()
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum::<u64>();
            let _ = c.disconnect().await;
        }
        total
    }

    /// POSTs to WeChat Pay's refund endpoint so far (lookups of one refund not counted).
    pub fn refund_requests(&self) -> usize {
        self.sim.request_count("/v3/refund/domestic/refunds")
            - self.sim.request_count("/v3/refund/domestic/refunds/")
    }
}

/// `scripts/galera.sh` of this checkout, for crashing and restarting a node.
pub fn galera(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/galera.sh");
    let out = std::process::Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/galera.sh {}: {text}",
        args.join(" ")
    );
    text
}

/// Starts node N again when dropped, if a test stopped with it down.
pub struct Revive(pub &'static str);

impl Drop for Revive {
    fn drop(&mut self) {
        let _ = std::process::Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/galera.sh"),
        )
        .args(["start-node", self.0])
        .output();
    }
}
