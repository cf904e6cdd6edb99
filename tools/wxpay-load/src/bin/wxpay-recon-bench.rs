//! `wxpay-recon-bench`: one day's reconciliation at a busy merchant's volume, end to end
//! through the router binary.
//!
//! For each size it fills a fresh store (MySQL database whose name contains `bench`,
//! dropped first; or a SQLite file) in bulk SQL with that many orders paid today, has the
//! simulator serve a bill of the same payments in WeChat Pay's layout, starts the router
//! (`wxpay_functions`, local HTTP) and calls `wxpay_reconcile` until the day is no longer
//! `in_progress`. It prints the calls, rows per second end to end (download, both passes,
//! lookups, checkpoints) and the router's peak RSS (VmHWM).
//!
//! ```sh
//! cargo build --release -p wxpay_functions -p wxpay-load
//! ./target/release/wxpay-recon-bench --rows 10000,100000,1000000
//! ./target/release/wxpay-recon-bench --rows 10000,100000,1000000 \
//!     --database-url mysql://root@127.0.0.1:3306/wxpay_recon_bench
//! ```

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use time::{Date, OffsetDateTime, UtcOffset};
use wxpay_local::FakeBackend;
use wxpay_shared::store;
use wxpay_sim::bill::{ALL_HEADER, SUMMARY_HEADER};
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{SimConfig, Simulator};

const USAGE: &str = "usage: wxpay-recon-bench [--rows N,N,…] [--bin PATH] [--timeout-ms MS] [--database-url mysql://…/NAME_WITH_bench | sqlite://PATH]";
const SECRET: &str = "recon-bench-internal-secret-000000";

const COLUMNS: &str = "out_trade_no, transaction_id, openid, amount, paid_amount, \
    refunded_amount, description, trade_type, status, paid_at, created_at, updated_at";

/// Row `n`'s order: paid 29.90 today, `WXR{n}` / `42000{n}`.
fn select_rows(n: &str, concat: fn(&[&str]) -> String, ts: &str) -> String {
    format!(
        "SELECT {otn}, {tid}, 'o_bench', 2990, 2990, 0, 'bench', 'JSAPI', 'paid', {ts}, {ts}, {ts}",
        otn = concat(&["'WXR'", n]),
        tid = concat(&["'42000'", n]),
    )
}

/// Beijing midnight of `day`, as `YYYY-MM-DD HH:MM:SS` in UTC.
fn day_start_utc(day: Date) -> String {
    let t = day
        .midnight()
        .assume_offset(UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC))
        .to_offset(UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02}",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn fill_mysql(url: &str, rows: u64, day: Date) -> Result<(), String> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
    let name = opts.db_name().unwrap_or_default().to_string();
    if !name.contains("bench") {
        return Err(format!(
            "refusing to drop `{name}`: the database name must contain `bench`"
        ));
    }
    let server = url.rsplit_once('/').map(|(s, _)| s).unwrap_or(url);
    let pool = mysql_async::Pool::new(server);
    let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
    for sql in [
        format!("DROP DATABASE IF EXISTS `{name}`"),
        format!("CREATE DATABASE `{name}`"),
    ] {
        conn.query_drop(sql).await.map_err(|e| e.to_string())?;
    }
    drop(conn);
    pool.disconnect().await.map_err(|e| e.to_string())?;
    store::open(url)
        .map_err(|e| e.to_string())?
        .migrate()
        .await
        .map_err(|e| e.to_string())?;
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
    let concat = |parts: &[&str]| format!("CONCAT({})", parts.join(", "));
    let ts = format!(
        "TIMESTAMP('{}') + INTERVAL FLOOR(seq * 86000 / {rows}) SECOND",
        day_start_utc(day)
    );
    let batch = 100_000u64;
    let mut start = 1;
    while start <= rows {
        let end = (start + batch - 1).min(rows);
        let sql = format!(
            "INSERT INTO orders ({COLUMNS}) {} FROM seq_{start}_to_{end}",
            select_rows("seq", concat, &ts)
        );
        conn.query_drop(sql).await.map_err(|e| e.to_string())?;
        start = end + 1;
    }
    conn.query_drop("ANALYZE TABLE orders")
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    pool.disconnect().await.map_err(|e| e.to_string())
}

async fn fill_sqlite(url: &str, path: &str, rows: u64, day: Date) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    store::open(url)
        .map_err(|e| e.to_string())?
        .migrate()
        .await
        .map_err(|e| e.to_string())?;
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let concat = |parts: &[&str]| parts.join(" || ");
    let ts = format!(
        "strftime('%Y-%m-%d %H:%M:%S.000', '{}', '+' || (i * 86000 / {rows}) || ' seconds')",
        day_start_utc(day)
    );
    let sql = format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) \
         INSERT INTO orders ({COLUMNS}) {} FROM s",
        select_rows("i", concat, &ts)
    );
    conn.execute_batch(&format!("BEGIN; {sql}; COMMIT; ANALYZE;"))
        .map_err(|e| e.to_string())
}

/// The same payments as WeChat Pay's ALL bill prints them.
fn bill(rows: u64, day: Date, appid: &str, mchid: &str) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = ALL_HEADER.join(",");
    s.push_str("\r\n");
    for n in 1..=rows {
        let _ = write!(
            s,
            "`{day} 10:00:00,`{appid},`{mchid},`0,`,`42000{n},`WXR{n},`o_bench,`JSAPI,`SUCCESS,`OTHERS,`CNY,`29.90,`0.00,`0,`0,`0.00,`0.00,`,`,`bench,`,`0.18000,`0.60%,`29.90,`0.00,`\r\n"
        );
    }
    s.push_str(&SUMMARY_HEADER.join(","));
    s.push_str("\r\n");
    let total = wxpay_sim::bill::yuan(2990 * rows as i64);
    let fees = wxpay_sim::bill::yuan(18 * rows as i64);
    let _ = write!(
        s,
        "`{rows},`{total},`0.00,`0.00,`{fees}000,`{total},`0.00\r\n"
    );
    s.into_bytes()
}

fn peak_rss(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

struct Run {
    rows: u64,
    calls: usize,
    elapsed: Duration,
    peak_rss: Option<u64>,
    status: String,
}

async fn one_size(args: &Args, rows: u64) -> Result<Run, String> {
    let day = OffsetDateTime::now_utc()
        .to_offset(UtcOffset::from_hms(8, 0, 0).map_err(|e| e.to_string())?)
        .date();
    match args.url.strip_prefix("sqlite://") {
        Some(path) => fill_sqlite(&args.url, path, rows, day).await?,
        None => fill_mysql(&args.url, rows, day).await?,
    }
    let keys = tokio::task::spawn_blocking(MerchantKeys::generate)
        .await
        .map_err(|e| e.to_string())?;
    let sim = Simulator::start(SimConfig::for_merchant(&keys))
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    let backend = FakeBackend::start(([127, 0, 0, 1], 0).into(), Some(SECRET.into()), false)
        .await
        .map_err(|e| format!("fake backend: {e}"))?;
    let sc = sim.config();
    sim.serve_bills_early(true);
    sim.serve_bill_file(day, bill(rows, day, &sc.appid, &sc.mchid));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(format!("target/wxpay-recon-bench-{rows}.log"))
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(&args.bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("WECHAT_APPID", &sc.appid)
        .env("WECHAT_MCHID", &sc.mchid)
        .env("WECHAT_SERIAL_NO", &keys.serial_no)
        .env("WECHAT_PRIVATE_KEY", &keys.private_key_pem)
        .env("WECHAT_APIV3_KEY", &sc.apiv3_key)
        .env("WECHATPAY_BASE_URL", sim.base_url())
        .env("WECHAT_NOTIFY_URL", format!("http://127.0.0.1:{port}/pay"))
        .env("API_BASE_URL", backend.url())
        .env("INTERNAL_API_SECRET", SECRET)
        .env("DATABASE_URL", &args.url)
        .env("FUNCTION_TIMEOUT_MS", args.timeout_ms.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.bin))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(args.timeout_ms + 5_000))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{port}/pay");
    let ready = Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        if ready.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("the router did not answer /healthz".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = serde_json::json!({ "type": "wxpay_reconcile", "billDate": day.to_string(), "early": true });
    let started = Instant::now();
    let mut calls = 0;
    let status = loop {
        calls += 1;
        let text = client
            .post(&url)
            .header("X-Internal-Secret", SECRET)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        let status = answer["data"]["status"].as_str().unwrap_or("").to_string();
        eprintln!(
            "  call {calls}: {status} rowsDone={} ({:.1} s)",
            answer["data"]["rowsDone"],
            started.elapsed().as_secs_f64()
        );
        if status != "in_progress" || calls >= 100 {
            if status != "matched" {
                eprintln!("  answer: {answer}");
            }
            break status;
        }
    };
    let elapsed = started.elapsed();
    let peak = peak_rss(&child);
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown();
    Ok(Run {
        rows,
        calls,
        elapsed,
        peak_rss: peak,
        status,
    })
}

struct Args {
    sizes: Vec<u64>,
    bin: String,
    url: String,
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut a = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        bin: "target/release/wxpay_functions".into(),
        url: "sqlite://target/wxpay-recon-bench.db".into(),
        timeout_ms: 30_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let ok = match (arg.as_str(), value) {
            ("--rows", Some(v)) => {
                let sizes: Result<Vec<u64>, _> = v.split(',').map(str::parse).collect();
                sizes.map(|s| a.sizes = s).is_ok()
            }
            ("--bin", Some(v)) => {
                a.bin = v;
                true
            }
            ("--database-url", Some(v)) => {
                a.url = v;
                true
            }
            ("--timeout-ms", Some(v)) => v.parse().map(|t| a.timeout_ms = t).is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let store_kind = if a.url.starts_with("sqlite://") {
        "SQLite"
    } else {
        "MySQL"
    };
    println!("| store | bill rows | calls | seconds | rows/s | router peak RSS | status |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for &rows in &a.sizes {
        match one_size(&a, rows).await {
            Ok(r) => println!(
                "| {store_kind} | {} | {} | {:.1} | {:.0} | {} | {} |",
                r.rows,
                r.calls,
                r.elapsed.as_secs_f64(),
                r.rows as f64 / r.elapsed.as_secs_f64(),
                r.peak_rss
                    .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "-".into()),
                r.status
            ),
            Err(e) => {
                eprintln!("wxpay-recon-bench: {rows} rows: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
