//! `wxpay-load`: measures the router binary the way a platform runs it, and optionally the
//! Node.js reference side by side (issue 6).
//!
//! The WeChat Pay simulator and the fake business backend run inside this process; the
//! function under test is a separate process (so its start-up and its memory are its own),
//! started in local HTTP mode on 127.0.0.1 against a fresh store. Phases:
//!
//! - orders: N `wxpay_order` calls at concurrency C;
//! - notifications: N orders paid at the simulator, their signed `TRANSACTION.SUCCESS`
//!   notifications built beforehand, then delivered at concurrency C straight to the function;
//!   afterwards the function's peak RSS (VmHWM) and the backend deliveries are checked;
//! - cold: R times exec → first `/healthz` 200 and R times exec → first order answered;
//! - lambda: R times, under the Lambda Runtime API, exec → first response for an order
//!   (`wxpay_order`, the router) and a notification (`wxpay_callback`, the router).
//!
//! With `--cluster-urls`, the orders and notifications also run against a multi-primary
//! cluster in the same rounds: one router process per node, orders spread over them and each
//! notification sent to another instance than the one that took its order (as a TCP
//! balancer would), statements and database CPU counted on every node.

mod cold;
mod cpu;
mod db;
mod drive;
mod lambda;
mod report;
mod target;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wxpay_local::FakeBackend;
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{PlatformMode, SignedNotification, SimConfig, Simulator};

use cold::Spread;
use db::Database;
use report::{
    compare, mb, ms, print_cpu, print_database_work, print_stats, print_summary, LoadRound,
    Summary, TargetScope,
};
use target::{Kind, Running};

const USAGE: &str = "\
wxpay-load: throughput, latency, peak RSS and cold starts of the wxpay router binary,
optionally side by side with the Node.js reference.

USAGE: wxpay-load [OPTIONS]

  --bin PATH            router binary [target/release/wxpay_functions]
  --baseline PATH       also measure this router binary (an earlier build) in the same run,
                        rounds interleaved, and print the database work of all side by side
  --lambda-dirs LIST    comma-separated directories holding wxpay_order, wxpay_callback and
                        wxpay_functions, for the lambda phase; several builds are measured
                        interleaved [the directory of --bin]
  --secrets-extension   lambda phase: the binaries get their secrets as on AWS, from a
                        Secrets Manager secret (WXPAY_SECRET_ID) served by the fake
                        Parameters and Secrets extension, none in their environment
  --node DIR            also measure the Node.js reference in DIR (runs `node index.js`
                        there; `npm ci` it first) and print the ratios; needs MySQL
  --node-bin PATH       the node executable [node]
  --database-url URL    mysql://USER@HOST:PORT/NAME; NAME (which must contain `bench`) is
                        dropped and recreated before every run. Default: a temporary SQLite file
  --cluster-urls LIST   comma-separated mysql:// URLs of the nodes of a Galera cluster, each
                        naming the same benchmark database (scripts/galera.sh runs one on
                        127.0.0.1:4306-4308): the orders and notifications also run there,
                        in the same rounds, one router per node
  -n, --requests N      orders and notifications per phase [1000]
  -c, --concurrency C   requests in flight [16]
  --rounds K            repeat the orders and notifications K times (a fresh process and
                        store each time, implementations alternating) and report medians [1]
  --cold-runs R         cold starts per implementation (per binary and event in the lambda
                        phase), interleaved with the others [20]
  --phases LIST         any of orders,notifications,cold,lambda [all four]
  --trade-type T        JSAPI (paySign, X-WX-OPENID) or NATIVE [JSAPI]
  --public-key          the simulator signs with a WeChat Pay public key (WECHAT_PUBLIC_KEY
                        configured) instead of downloadable platform certificates
  -h, --help            this text

Exits non-zero when any request failed, a backend delivery is missing, or a process would
not start: it checks that the tool works, whatever the speed.";

/// Internal secret shared by the function and the fake backend.
const SECRET: &str = "bench-internal-secret-0123456789";

#[derive(Debug, Clone)]
struct Args {
    bin: PathBuf,
    baseline: Option<PathBuf>,
    lambda_dirs: Vec<PathBuf>,
    secrets_extension: bool,
    node_dir: Option<PathBuf>,
    node_bin: String,
    database_url: Option<String>,
    cluster_urls: Option<String>,
    requests: usize,
    concurrency: usize,
    cold_runs: usize,
    rounds: usize,
    orders: bool,
    notifications: bool,
    cold: bool,
    lambda: bool,
    jsapi: bool,
    public_key: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        bin: PathBuf::from("target/release/wxpay_functions"),
        baseline: None,
        lambda_dirs: Vec::new(),
        secrets_extension: false,
        node_dir: None,
        node_bin: "node".into(),
        database_url: None,
        cluster_urls: None,
        requests: 1000,
        concurrency: 16,
        cold_runs: 20,
        rounds: 1,
        orders: true,
        notifications: true,
        cold: true,
        lambda: true,
        jsapi: true,
        public_key: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String, max: usize| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{name} must be a whole number from 1 to {max} (got `{v}`)"
                )),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bin" => a.bin = PathBuf::from(value("--bin")?),
            "--baseline" => a.baseline = Some(PathBuf::from(value("--baseline")?)),
            "--lambda-dirs" => {
                a.lambda_dirs = value("--lambda-dirs")?
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| PathBuf::from(d.trim()))
                    .collect()
            }
            "--secrets-extension" => a.secrets_extension = true,
            "--node" => a.node_dir = Some(PathBuf::from(value("--node")?)),
            "--node-bin" => a.node_bin = value("--node-bin")?,
            "--database-url" => a.database_url = Some(value("--database-url")?),
            "--cluster-urls" => a.cluster_urls = Some(value("--cluster-urls")?),
            "-n" | "--requests" => {
                a.requests = number("--requests", value("--requests")?, 100_000)?
            }
            "-c" | "--concurrency" => {
                a.concurrency = number("--concurrency", value("--concurrency")?, 256)?
            }
            "--cold-runs" => a.cold_runs = number("--cold-runs", value("--cold-runs")?, 200)?,
            "--rounds" => a.rounds = number("--rounds", value("--rounds")?, 20)?,
            "--phases" => {
                let list = value("--phases")?;
                a.orders = false;
                a.notifications = false;
                a.cold = false;
                a.lambda = false;
                for p in list.split(',').map(str::trim) {
                    match p {
                        "orders" => a.orders = true,
                        "notifications" | "notify" => a.notifications = true,
                        "cold" => a.cold = true,
                        "lambda" => a.lambda = true,
                        other => {
                            return Err(format!(
                                "unknown phase `{other}`: use orders, notifications, cold, lambda"
                            ))
                        }
                    }
                }
            }
            "--trade-type" => {
                a.jsapi = match value("--trade-type")?.to_ascii_uppercase().as_str() {
                    "JSAPI" => true,
                    "NATIVE" => false,
                    other => {
                        return Err(format!(
                            "--trade-type must be JSAPI or NATIVE (got `{other}`)"
                        ))
                    }
                }
            }
            "--public-key" => a.public_key = true,
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if a.lambda_dirs.is_empty() {
        let dir = a.bin.parent().filter(|d| !d.as_os_str().is_empty());
        a.lambda_dirs
            .push(dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf));
    }
    Ok(Some(a))
}

/// The simulator, the fake backend, and the product variables that point at them.
struct Stack {
    sim: Simulator,
    backend: FakeBackend,
    base_vars: Vec<(String, String)>,
    client: reqwest::Client,
}

impl Stack {
    async fn start(public_key: bool) -> Result<Stack, String> {
        let keys = tokio::task::spawn_blocking(MerchantKeys::generate)
            .await
            .map_err(|e| e.to_string())?;
        let mut config = SimConfig::for_merchant(&keys);
        config.mode = if public_key {
            PlatformMode::PublicKey
        } else {
            PlatformMode::Certificate
        };
        let sim = Simulator::start(config)
            .await
            .map_err(|e| format!("simulator: {e}"))?;
        let backend = FakeBackend::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(SECRET.to_string()),
            false,
        )
        .await
        .map_err(|e| format!("fake backend: {e}"))?;
        let sc = sim.config();
        let mut base_vars: Vec<(String, String)> = vec![
            ("WECHAT_APPID".into(), sc.appid.clone()),
            ("WECHAT_MCHID".into(), sc.mchid.clone()),
            ("WECHAT_SERIAL_NO".into(), keys.serial_no.clone()),
            ("WECHAT_PRIVATE_KEY".into(), keys.private_key_pem.clone()),
            ("WECHAT_APIV3_KEY".into(), sc.apiv3_key.clone()),
            ("WECHATPAY_BASE_URL".into(), sim.base_url()),
            ("API_BASE_URL".into(), backend.url()),
            ("INTERNAL_API_SECRET".into(), SECRET.into()),
            // JSAPI orders identify the payer by X-WX-OPENID, as behind CloudBase.
            ("TRUST_OPENID_HEADER".into(), "true".into()),
        ];
        // METRICS passes through (emf / off), to time the function binaries with and
        // without their metric lines.
        if let Ok(metrics) = std::env::var("METRICS") {
            base_vars.push(("METRICS".into(), metrics));
        }
        if public_key {
            let id = sim
                .public_key_id()
                .ok_or("the simulator has no public key id in public-key mode")?;
            base_vars.push(("WECHAT_PUBLIC_KEY".into(), sim.platform_public_key_pem()));
            base_vars.push(("WECHAT_PUBLIC_KEY_ID".into(), id));
        }
        // No proxy: a proxy from the environment must never see, or slow, loopback traffic.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Stack {
            sim,
            backend,
            base_vars,
            client,
        })
    }

    /// The product's environment for one process. URL parameters (e.g. mysql_async's
    /// `reset_connection=false`) are the Rust driver's; mysql2 would only warn about them.
    fn vars(&self, kind: &Kind, database_url: &str) -> Vec<(String, String)> {
        let url = match kind {
            Kind::Rust { .. } => database_url,
            Kind::Node { .. } => database_url.split('?').next().unwrap_or(database_url),
        };
        let mut v = self.base_vars.clone();
        v.push(("DATABASE_URL".into(), url.to_string()));
        v
    }
}

/// The cheapest package: the amount comes from the backend's price list, as for a user.
fn order_body_for(jsapi: bool) -> &'static str {
    if jsapi {
        r#"{"type":"wxpay_order","packageType":"basic","tradeType":"JSAPI"}"#
    } else {
        r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s.to_string()
    }
}

/// One order through the function; its `outTradeNo`.
async fn create_order(
    client: &reqwest::Client,
    url: &str,
    jsapi: bool,
    i: usize,
) -> Result<String, String> {
    let mut req = client
        .post(format!("{url}/pay"))
        .header("Content-Type", "application/json")
        .body(order_body_for(jsapi));
    if jsapi {
        req = req
            .header("X-WX-OPENID", format!("o_bench_user_{i}"))
            .header("X-WX-APPID", wxpay_sim::DEFAULT_APPID);
    }
    let resp = req.send().await.map_err(|e| format!("order: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("order answer: {e}"))?;
    if status != 200 {
        return Err(format!("order answered HTTP {status}: {}", clip(&text)));
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("order answer is not JSON ({e}): {}", clip(&text)))?;
    if v["code"] != 0 {
        return Err(format!("order refused: {}", clip(&text)));
    }
    let pay_field = if jsapi { "paySign" } else { "codeUrl" };
    if v["data"][pay_field].as_str().is_none_or(str::is_empty) {
        return Err(format!("order answer has no {pay_field}: {}", clip(&text)));
    }
    v["data"]["outTradeNo"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("order answer has no outTradeNo: {}", clip(&text)))
}

/// Posts a notification exactly as WeChat Pay would; 2xx means handled.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    n: &SignedNotification,
) -> Result<(), String> {
    let mut req = client.post(format!("{url}/pay"));
    for (k, v) in &n.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req
        .body(n.body.clone())
        .send()
        .await
        .map_err(|e| format!("notification: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 200 || status == 204 {
        Ok(())
    } else {
        Err(format!(
            "notification answered HTTP {status}: {}",
            clip(&text)
        ))
    }
}

/// Pays orders at the simulator without telling anyone and builds their signed
/// notifications, so the timed phase spends nothing on RSA signing in this process.
async fn paid_notifications(
    sim: &Simulator,
    orders: &[String],
) -> Result<Vec<SignedNotification>, String> {
    let mut out = Vec::with_capacity(orders.len());
    for no in orders {
        sim.mark_paid_silently(no)
            .await
            .map_err(|e| format!("simulator could not pay {no}: {e}"))?;
        out.push(
            sim.build_transaction_notification(no)
                .ok_or_else(|| format!("simulator has no paid order {no}"))?,
        );
    }
    Ok(out)
}

/// Orders and notifications against long-running processes, one per node of `db` (one for
/// a single server); failures are pushed to `failures` (the run goes on, the exit status
/// reports them).
async fn load_round(
    kind: &Kind,
    stack: &Stack,
    db: &Database,
    args: &Args,
    work: &Path,
    failures: &mut Vec<String>,
) -> Result<LoadRound, String> {
    let label = kind.label();
    let mut round = LoadRound::default();
    let mut procs = Vec::new();
    for (j, database_url) in db
        .fresh_nodes(&format!("{label}-load"))
        .await?
        .iter()
        .enumerate()
    {
        let vars = stack.vars(kind, database_url);
        let log = work.join(format!("{label}-load-{}.log", j + 1));
        let mut proc = Running::start(kind, &vars, &log)?;
        let ready = tokio::task::block_in_place(|| proc.wait_ready(Duration::from_secs(30)))?;
        println!(
            "  started (pid {}), /healthz answered {} after exec; log: {}",
            proc.pid(),
            ms(ready),
            log.display()
        );
        procs.push(proc);
    }
    let pids: Vec<u32> = procs.iter().map(Running::pid).collect();
    let db_pids = db.server_pids().await;
    let urls: Arc<Vec<String>> = Arc::new(procs.iter().map(Running::url).collect());
    let tails = |procs: &[Running]| {
        procs
            .iter()
            .map(|p| p.log_tail(20))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let client = stack.client.clone();

    // Warm-up, untimed: each instance's first order and notification pay for the schema check, the
    // price list and the certificate download, which the cold-start phase measures on its own.
    for url in urls.iter() {
        let first = create_order(&client, url, args.jsapi, 0)
            .await
            .map_err(|e| format!("warm-up order failed: {e}\n{}", tails(&procs)))?;
        let n = paid_notifications(&stack.sim, std::slice::from_ref(&first)).await?;
        deliver(&client, url, &n[0])
            .await
            .map_err(|e| format!("warm-up notification failed: {e}\n{}", tails(&procs)))?;
    }

    let jsapi = args.jsapi;
    let mut order_nos: Vec<String> = Vec::new();
    if args.orders {
        println!(
            "  orders: {} at concurrency {}…",
            args.requests, args.concurrency
        );
        let (c, u) = (client.clone(), urls.clone());
        let statements = db.statement_counter().await;
        let mark = cpu::mark(&pids, &db_pids);
        let (stats, results) = drive::run("orders", args.requests, args.concurrency, move |i| {
            let (c, u) = (c.clone(), u.clone());
            async move { create_order(&c, &u[i % u.len()], jsapi, i + 1).await }
        })
        .await;
        round.orders_cpu = mark.per_request(&pids, &db_pids, args.requests);
        let per_order = match statements {
            Some(s) => s.per_request(args.requests).await,
            None => None,
        };
        if let Some(c) = round.orders_cpu.as_mut() {
            c.statements = per_order;
        }
        print_stats("orders", &stats);
        print_cpu(round.orders_cpu.as_ref());
        if stats.errors > 0 {
            failures.push(format!("{label}: {} order(s) failed", stats.errors));
        }
        order_nos = results.into_iter().flatten().collect();
        round.orders = Some(stats);
    }
    if args.notifications {
        if order_nos.len() < args.requests {
            // Orders skipped (or some failed): create what the notifications need, untimed.
            let missing = args.requests - order_nos.len();
            println!("  creating {missing} order(s) to notify (untimed)…");
            let (c, u) = (client.clone(), urls.clone());
            let (_, results) =
                drive::run("orders to notify", missing, args.concurrency, move |i| {
                    let (c, u) = (c.clone(), u.clone());
                    async move { create_order(&c, &u[i % u.len()], jsapi, 100_000 + i).await }
                })
                .await;
            order_nos.extend(results.into_iter().flatten());
        }
        println!(
            "  paying {} order(s) at the simulator and signing their notifications (untimed)…",
            order_nos.len()
        );
        let notes = Arc::new(paid_notifications(&stack.sim, &order_nos).await?);
        println!(
            "  notifications: {} at concurrency {}…",
            notes.len(),
            args.concurrency
        );
        let (c, u, ns) = (client.clone(), urls.clone(), notes.clone());
        let statements = db.statement_counter().await;
        let mark = cpu::mark(&pids, &db_pids);
        // Order i was taken by instance i % K; its notification goes to the next one, so on
        // a cluster the payment is recorded through another node than the order.
        let (stats, _) = drive::run("notifications", notes.len(), args.concurrency, move |i| {
            let (c, u, ns) = (c.clone(), u.clone(), ns.clone());
            async move { deliver(&c, &u[(i + 1) % u.len()], &ns[i]).await }
        })
        .await;
        round.notifications_cpu = mark.per_request(&pids, &db_pids, notes.len());
        let per_notification = match statements {
            Some(s) => s.per_request(notes.len()).await,
            None => None,
        };
        if let Some(c) = round.notifications_cpu.as_mut() {
            c.statements = per_notification;
        }
        print_stats("notifications", &stats);
        print_cpu(round.notifications_cpu.as_ref());
        let failed = stats.errors + args.requests.saturating_sub(notes.len());
        if failed > 0 {
            failures.push(format!(
                "{label}: {failed} of {} notification(s) failed",
                args.requests
            ));
        }
        // Every handled notification must have reached the backend exactly once: proof that
        // the function did the whole job, not just answered.
        let wanted: HashSet<&str> = order_nos.iter().map(String::as_str).collect();
        let delivered = stack
            .backend
            .deliveries()
            .iter()
            .filter(|d| d.secret_ok)
            .filter_map(|d| d.payload["outTradeNo"].as_str().map(str::to_string))
            .filter(|no| wanted.contains(no.as_str()))
            .count();
        println!(
            "  backend        {delivered} deliveries for {} handled notifications",
            stats.ok
        );
        if delivered != stats.ok {
            failures.push(format!(
                "{label}: the backend received {delivered} deliveries for {} handled notifications",
                stats.ok
            ));
        }
        round.notifications = Some(stats);
    }
    for proc in procs.iter_mut() {
        if let Some(status) = proc.exited() {
            return Err(format!(
                "the process exited during the run ({status}):\n{}",
                proc.log_tail(20)
            ));
        }
    }
    // Of several instances, the largest.
    if let Some(m) = procs
        .iter()
        .filter_map(Running::memory)
        .max_by_key(|m| m.peak_rss)
    {
        println!(
            "  memory         peak RSS {} (VmHWM), RSS now {}",
            mb(m.peak_rss),
            mb(m.rss)
        );
        round.peak_rss = Some(m.peak_rss);
    }
    Ok(round)
}

/// How one implementation is started for the cold phase, and what it measured.
struct ColdSeries {
    kind: Kind,
    vars: Vec<(String, String)>,
    log: PathBuf,
    health: Vec<Duration>,
    order: Vec<Duration>,
}

/// Exec → first order answered (HTTP 200, code 0).
fn first_order(
    kind: &Kind,
    vars: &[(String, String)],
    log: &Path,
    jsapi: bool,
) -> Result<Duration, String> {
    let mut proc = Running::start(kind, vars, log)?;
    let req = cold::order_request(
        proc.addr,
        order_body_for(jsapi),
        jsapi.then_some("o_bench_cold"),
    );
    let a = proc.first_answer(&req, Duration::from_secs(30))?;
    if a.status == 200 && a.body.contains("\"code\":0") {
        Ok(a.elapsed)
    } else {
        Err(format!(
            "first order answered HTTP {}: {}\n{}",
            a.status,
            clip(&a.body),
            proc.log_tail(20)
        ))
    }
}

/// R cold starts per implementation, interleaved (Rust, Node, Rust, Node, …) so that
/// whatever else the machine does at the time weighs on both alike.
fn cold_phase(series: &mut [ColdSeries], runs: usize, jsapi: bool) -> Result<(), String> {
    // One untimed start each: it brings the binary or node_modules into the page cache, as
    // on a warm host (the Node reference also creates its tables if missing).
    for s in series.iter() {
        first_order(&s.kind, &s.vars, &s.log, jsapi)
            .map_err(|e| format!("{}: priming start: {e}", s.kind.label()))?;
    }
    for r in 0..runs {
        for s in series.iter_mut() {
            let mut proc = Running::start(&s.kind, &s.vars, &s.log)?;
            let t = proc
                .wait_ready(Duration::from_secs(30))
                .map_err(|e| format!("{}: {e}", s.kind.label()))?;
            s.health.push(t);
        }
        for s in series.iter_mut() {
            let t = first_order(&s.kind, &s.vars, &s.log, jsapi)
                .map_err(|e| format!("{}: {e}", s.kind.label()))?;
            s.order.push(t);
        }
        if runs >= 10 && (r + 1) % 5 == 0 && r + 1 < runs {
            eprintln!("    cold starts: {}/{runs} rounds done", r + 1);
        }
    }
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPU(s), {model}; the load generator, simulator and backend share them with the function")
}

async fn run(args: Args) -> Result<bool, String> {
    let work = std::env::temp_dir().join(format!("wxpay-load-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let db = Database::from_url(args.database_url.as_deref(), &work)?;
    let cluster = args
        .cluster_urls
        .as_deref()
        .map(Database::cluster)
        .transpose()?;
    if args.node_dir.is_some() && !db.is_mysql() {
        return Err("the Node.js reference stores through mysql2 like the cloud function: pass --database-url mysql://root@127.0.0.1:3306/wxpay_bench".into());
    }
    let mut kinds = vec![Kind::Rust {
        bin: args.bin.clone(),
        label: "rust",
    }];
    if let Some(dir) = &args.node_dir {
        if !dir.join("node_modules").is_dir() {
            return Err(format!(
                "{} has no node_modules: run `npm ci` (or `npm install`) there first",
                dir.display()
            ));
        }
        kinds.push(Kind::Node {
            node: args.node_bin.clone(),
            dir: dir.clone(),
        });
    }
    if let Some(bin) = &args.baseline {
        kinds.push(Kind::Rust {
            bin: bin.clone(),
            label: "baseline",
        });
    }
    println!("wxpay-load: {}", machine());
    println!(
        "N = {}, concurrency = {}, rounds = {}, cold runs = {}, {} orders, platform {}, store: {}",
        args.requests,
        args.concurrency,
        args.rounds,
        args.cold_runs,
        if args.jsapi { "JSAPI" } else { "NATIVE" },
        if args.public_key {
            "public key"
        } else {
            "certificates"
        },
        db.describe()
    );
    // The load phases' targets: every implementation on `db`, then the router on the
    // cluster (one instance per node).
    let mut targets: Vec<(Kind, &Database, String)> = kinds
        .iter()
        .map(|k| (k.clone(), &db, k.describe()))
        .collect();
    if let Some(cluster) = &cluster {
        targets.push((
            Kind::Rust {
                bin: args.bin.clone(),
                label: "cluster",
            },
            cluster,
            format!(
                "Rust router {} × {}, one per node",
                args.bin.display(),
                cluster.nodes()
            ),
        ));
        println!("cluster: {}", cluster.describe());
    }
    println!("generating merchant keys, starting the WeChat Pay simulator and the fake backend…");
    let stack = Stack::start(args.public_key).await?;
    let mut failures = Vec::new();

    // Load rounds alternate between the implementations for the same reason the cold starts
    // interleave: background noise on a small machine then hits both.
    let mut rounds: Vec<Vec<LoadRound>> = targets.iter().map(|_| Vec::new()).collect();
    if args.orders || args.notifications {
        for r in 1..=args.rounds {
            for (k, (kind, on, name)) in targets.iter().enumerate() {
                println!(
                    "\n== round {r}/{}: {name} on {}",
                    args.rounds,
                    on.describe()
                );
                match load_round(kind, &stack, on, &args, &work, &mut failures).await {
                    Ok(round) => rounds[k].push(round),
                    Err(e) => failures.push(format!("{}: {e}", kind.label())),
                }
            }
        }
    }
    let mut summaries: Vec<Summary> = rounds.iter().map(|r| Summary::from_rounds(r)).collect();

    if args.cold {
        println!(
            "\n== cold starts: {} runs × 2 process starts per implementation, interleaved…",
            args.cold_runs
        );
        let mut series = Vec::new();
        for kind in &kinds {
            let url = db.fresh(&format!("{}-cold", kind.label())).await?;
            series.push(ColdSeries {
                kind: kind.clone(),
                vars: stack.vars(kind, &url),
                log: work.join(format!("{}-cold.log", kind.label())),
                health: Vec::new(),
                order: Vec::new(),
            });
        }
        // On MySQL both series share the one benchmark database (recreated and migrated
        // above, as a deploy step would): every cold start finds the schema, as a real cold
        // instance does.
        match tokio::task::block_in_place(|| cold_phase(&mut series, args.cold_runs, args.jsapi)) {
            Ok(()) => {
                for (s, summary) in series.into_iter().zip(summaries.iter_mut()) {
                    summary.cold_health = Spread::of(s.health);
                    summary.cold_order = Spread::of(s.order);
                }
            }
            Err(e) => failures.push(format!("cold start: {e}")),
        }
    }

    if args.lambda {
        println!(
            "\n== Lambda cold starts: {} runs per binary and first event, interleaved…",
            args.cold_runs
        );
        let url = db.fresh("lambda").await?;
        if let Err(e) = lambda::phase(
            &stack,
            &args.lambda_dirs,
            &url,
            args.cold_runs,
            &work,
            args.secrets_extension,
        )
        .await
        {
            failures.push(format!("lambda cold start: {e}"));
        }
    }

    // The lambda phase prints its own table.
    if args.orders || args.notifications || args.cold {
        for ((_, _, name), summary) in targets.iter().zip(&summaries) {
            print_summary(name, summary);
        }
    }
    if targets.len() > 2 || args.baseline.is_some() || cluster.is_some() {
        let named: Vec<(String, &Summary)> = targets
            .iter()
            .map(|(_, on, name)| format!("{name} ({})", on.describe()))
            .zip(summaries.iter())
            .collect();
        print_database_work(&named);
    }
    let node = kinds.iter().position(|k| matches!(k, Kind::Node { .. }));
    if let (Some(ours), Some(node)) = (summaries.first(), node.map(|i| &summaries[i])) {
        compare(
            ours,
            node,
            &TargetScope {
                rss: args.requests == 1000 && args.notifications,
                end_to_end: db.is_mysql() && args.concurrency == 16,
            },
        );
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
        Ok(true)
    } else {
        println!(
            "\n{} problem(s); process logs kept in {}:",
            failures.len(),
            work.display()
        );
        for f in &failures {
            println!("  - {f}");
        }
        Ok(false)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wxpay-load: {e}");
            return ExitCode::from(2);
        }
    };
    // Two workers: enough to drive C connections and run the simulator, without pretending
    // the load generator is free on a small machine.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxpay-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("wxpay-load: {e}");
            ExitCode::FAILURE
        }
    }
}
