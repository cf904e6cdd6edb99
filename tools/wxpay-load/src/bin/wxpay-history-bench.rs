//! `wxpay-history-bench`: how long `wxpay_order_list` pages and `wxpay_stats` totals take on
//! a store holding a million orders, through the product's own store code.
//!
//! It fills a fresh store (MySQL database whose name contains `bench`, dropped first; or a
//! SQLite file) in bulk SQL, then times each query R times and prints min / median / max.
//!
//! ```sh
//! cargo run --release -p wxpay-load --bin wxpay-history-bench -- --orders 1000000
//! cargo run --release -p wxpay-load --bin wxpay-history-bench -- --orders 1000000 \
//!     --database-url mysql://root@127.0.0.1:3306/wxpay_history_bench
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use time::OffsetDateTime;
use wxpay_shared::store::history::{OrderListQuery, PagePosition, StatsQuery};
use wxpay_shared::store::{self, OrderStatus, Store};

const USAGE: &str = "usage: wxpay-history-bench [--orders N] [--runs R] [--database-url mysql://…/NAME_WITH_bench | sqlite://PATH]";

/// Ordinary payers get about ten orders each (a million over 100,000 openids); one heavy
/// payer gets `HEAVY` orders, so deep pages are measured too.
const USERS: u64 = 100_000;
const HEAVY: u64 = 10_000;

/// Every order's columns, in bulk: ids and spreads derived from the row number `n`
/// (statuses 60% paid, 25% pending, 10% closed, 4% failed, 1% refunded; a year of times).
fn select_rows(n: &str, concat: fn(&[&str]) -> String, ts: &str) -> String {
    format!(
        "SELECT {otn}, CASE WHEN {n} % 100 < 60 OR {n} % 100 = 99 THEN {tid} END, \
         CASE WHEN {n} <= {HEAVY} THEN 'o_heavy' ELSE {openid} END, NULL, NULL, 'premium', \
         CASE {n} % 3 WHEN 0 THEN 'course' WHEN 1 THEN 'vip' ELSE NULL END, NULL, 2990, \
         CASE WHEN {n} % 100 < 60 OR {n} % 100 = 99 THEN 2990 END, \
         CASE WHEN {n} % 100 = 99 THEN 2990 ELSE 0 END, 'bench', 'JSAPI', \
         CASE WHEN {n} % 100 < 60 THEN 'paid' WHEN {n} % 100 < 85 THEN 'pending' \
              WHEN {n} % 100 < 95 THEN 'closed' WHEN {n} % 100 < 99 THEN 'failed' ELSE 'refunded' END, \
         NULL, {ts}, {ts}",
        otn = concat(&["'WXB'", n]),
        tid = concat(&["'42000'", n]),
        openid = concat(&["'o_user_'", &format!("({n} % {USERS})")]),
    )
}

const COLUMNS: &str =
    "out_trade_no, transaction_id, openid, user_id, generation_id, package_type, \
    business_type, business_id, amount, paid_amount, refunded_amount, description, trade_type, \
    status, paid_at, created_at, updated_at";

async fn fill_mysql(url: &str, orders: u64) -> Result<(), String> {
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
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .map_err(|e| e.to_string())?;
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .map_err(|e| e.to_string())?;
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
    let ts = "TIMESTAMP('2026-01-01') + INTERVAL (seq * 31) SECOND";
    // MariaDB's sequence engine numbers the rows; batches keep each transaction modest.
    let batch = 100_000u64;
    let mut start = 1;
    while start <= orders {
        let end = (start + batch - 1).min(orders);
        let sql = format!(
            "INSERT INTO orders ({COLUMNS}) {} FROM seq_{start}_to_{end}",
            select_rows("seq", concat, ts)
        );
        conn.query_drop(sql).await.map_err(|e| e.to_string())?;
        eprint!("\rfilled {end} of {orders} orders");
        start = end + 1;
    }
    eprintln!();
    conn.query_drop("ANALYZE TABLE orders")
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    pool.disconnect().await.map_err(|e| e.to_string())
}

fn fill_sqlite(path: &str, orders: u64) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    drop(store::SqliteStore::open(path).map_err(|e| e.to_string())?);
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let concat = |parts: &[&str]| parts.join(" || ");
    let ts = "strftime('%Y-%m-%d %H:%M:%S.000', 1767225600 + i * 31, 'unixepoch')";
    let sql = format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {orders}) \
         INSERT INTO orders ({COLUMNS}) {} FROM s",
        select_rows("i", concat, ts)
    );
    eprintln!("filling {orders} orders…");
    conn.execute_batch(&format!("BEGIN; {sql}; COMMIT; ANALYZE;"))
        .map_err(|e| e.to_string())
}

struct Timing {
    what: &'static str,
    rows: usize,
    samples: Vec<Duration>,
}

async fn time<T, F, Fut>(what: &'static str, runs: usize, mut f: F) -> Result<Timing, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, store::StoreError>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        rows = f().await.map_err(|e| e.to_string())?.len();
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(Timing {
        what,
        rows,
        samples,
    })
}

fn page(openid: &str, after: Option<PagePosition>) -> OrderListQuery {
    OrderListQuery {
        openid: openid.to_string(),
        status: None,
        after,
        limit: 21,
    }
}

async fn run(url: &str, orders: u64, runs: usize) -> Result<(), String> {
    let started = Instant::now();
    match url.strip_prefix("sqlite://") {
        Some(path) => fill_sqlite(path, orders)?,
        None => fill_mysql(url, orders).await?,
    }
    eprintln!("filled in {:.1} s", started.elapsed().as_secs_f64());
    let store: std::sync::Arc<dyn Store> = store::open(url).map_err(|e| e.to_string())?;

    // The heavy payer's oldest orders: the deepest page there is.
    let deep = PagePosition {
        created_at: OffsetDateTime::from_unix_timestamp(1_767_225_600 + 40 * 31)
            .map_err(|e| e.to_string())?,
        out_trade_no: "WXB40".to_string(),
    };
    let month = StatsQuery {
        from: Some(OffsetDateTime::from_unix_timestamp(1_767_225_600).map_err(|e| e.to_string())?),
        to: Some(
            OffsetDateTime::from_unix_timestamp(1_767_225_600 + 86_400 * 30)
                .map_err(|e| e.to_string())?,
        ),
        business_type: None,
    };
    let store = &store;
    let list = |q: OrderListQuery| {
        move || {
            let q = q.clone();
            async move { store.list_orders(&q).await }
        }
    };
    let stats = |q: StatsQuery| {
        move || {
            let q = q.clone();
            async move { store.order_stats(&q).await }
        }
    };
    let refunded = OrderListQuery {
        status: Some(OrderStatus::Refunded),
        ..page("o_heavy", None)
    };
    let day = StatsQuery {
        to: month.from.map(|t| t + time::Duration::days(1)),
        ..month.clone()
    };
    let vip = StatsQuery {
        business_type: Some("vip".into()),
        ..StatsQuery::default()
    };
    let timings = vec![
        time(
            "list: first page, payer with 9 orders",
            runs,
            list(page("o_user_4242", None)),
        )
        .await?,
        time(
            "list: first page, payer with 10,000 orders",
            runs,
            list(page("o_heavy", None)),
        )
        .await?,
        time(
            "list: deepest page, payer with 10,000 orders",
            runs,
            list(page("o_heavy", Some(deep))),
        )
        .await?,
        time(
            "list: status=refunded, payer with 10,000 orders",
            runs,
            list(refunded),
        )
        .await?,
        time("stats: whole store", runs, stats(StatsQuery::default())).await?,
        time("stats: one month (from/to)", runs, stats(month)).await?,
        time("stats: one day (from/to)", runs, stats(day)).await?,
        time("stats: businessType=vip", runs, stats(vip)).await?,
    ];
    println!(
        "\n{orders} orders, {runs} runs each ({})\n",
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "MySQL"
        }
    );
    println!("| query | rows | min | median | max |\n|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    for t in timings {
        println!(
            "| {} | {} | {} | {} | {} |",
            t.what,
            t.rows,
            ms(t.samples[0]),
            ms(t.samples[t.samples.len() / 2]),
            ms(t.samples[t.samples.len() - 1])
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut orders = 1_000_000u64;
    let mut runs = 20usize;
    let mut url = "sqlite://target/wxpay-history-bench.db".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--orders", Some(v)) if v.parse::<u64>().is_ok_and(|n| n > HEAVY) => {
                orders = v.parse().unwrap_or(orders)
            }
            ("--runs", Some(v)) if v.parse::<usize>().is_ok_and(|n| n > 0) => {
                runs = v.parse().unwrap_or(runs)
            }
            ("--database-url", Some(v)) => url = v,
            _ => {
                eprintln!("{USAGE}\n(--orders must be more than {HEAVY}, --runs at least 1)");
                return ExitCode::from(2);
            }
        }
    }
    match run(&url, orders, runs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxpay-history-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
