//! What a run measured, summarised over rounds, and the side-by-side table.

use std::time::Duration;

use crate::cold::Spread;
use crate::cpu::CpuPerRequest;
use crate::drive::Stats;

/// One round's load phases against one process.
#[derive(Default)]
pub struct LoadRound {
    pub orders: Option<Stats>,
    pub orders_cpu: Option<CpuPerRequest>,
    pub notifications: Option<Stats>,
    pub notifications_cpu: Option<CpuPerRequest>,
    /// VmHWM after the phases, in bytes.
    pub peak_rss: Option<u64>,
}

/// A phase over all rounds: the median of each round's figure, so one round disturbed by
/// something else on a 2-core machine does not decide the result.
#[derive(Debug, Clone, Copy)]
pub struct PhaseSummary {
    pub throughput: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub errors: usize,
    pub rounds: usize,
    /// Medians of each process's CPU per request.
    pub cpu: Option<CpuPerRequest>,
}

fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn median_duration(v: Vec<Duration>) -> Duration {
    Spread::of(v).map(|s| s.median).unwrap_or_default()
}

impl PhaseSummary {
    pub fn of<'a>(
        rounds: impl Iterator<Item = (&'a Stats, Option<&'a CpuPerRequest>)>,
    ) -> Option<PhaseSummary> {
        let (rounds, cpus): (Vec<&Stats>, Vec<Option<&CpuPerRequest>>) = rounds.unzip();
        let cpus: Vec<&CpuPerRequest> = cpus.into_iter().flatten().collect();
        let cpu = (!cpus.is_empty()).then(|| CpuPerRequest {
            function: median_duration(cpus.iter().map(|c| c.function).collect()),
            database: cpus
                .iter()
                .map(|c| c.database)
                .collect::<Option<Vec<_>>>()
                .map(median_duration),
            tool: median_duration(cpus.iter().map(|c| c.tool).collect()),
            statements: cpus
                .iter()
                .map(|c| c.statements)
                .collect::<Option<Vec<_>>>()
                .and_then(median_f64),
        });
        Some(PhaseSummary {
            cpu,
            throughput: median_f64(rounds.iter().map(|s| s.throughput()).collect())?,
            p50: median_duration(rounds.iter().map(|s| s.pct(50.0)).collect()),
            p90: median_duration(rounds.iter().map(|s| s.pct(90.0)).collect()),
            p99: median_duration(rounds.iter().map(|s| s.pct(99.0)).collect()),
            errors: rounds.iter().map(|s| s.errors).sum(),
            rounds: rounds.len(),
        })
    }
}

/// Everything measured for one implementation.
#[derive(Default)]
pub struct Summary {
    pub orders: Option<PhaseSummary>,
    pub notifications: Option<PhaseSummary>,
    pub peak_rss: Option<u64>,
    pub cold_health: Option<Spread>,
    pub cold_order: Option<Spread>,
}

impl Summary {
    pub fn from_rounds(rounds: &[LoadRound]) -> Summary {
        Summary {
            orders: PhaseSummary::of(
                rounds
                    .iter()
                    .filter_map(|r| Some((r.orders.as_ref()?, r.orders_cpu.as_ref()))),
            ),
            notifications: PhaseSummary::of(
                rounds.iter().filter_map(|r| {
                    Some((r.notifications.as_ref()?, r.notifications_cpu.as_ref()))
                }),
            ),
            peak_rss: median_f64(
                rounds
                    .iter()
                    .filter_map(|r| r.peak_rss)
                    .map(|b| b as f64)
                    .collect(),
            )
            .map(|b| b as u64),
            cold_health: None,
            cold_order: None,
        }
    }
}

pub fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else if m < 100.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

pub fn print_stats(label: &str, s: &Stats) {
    println!(
        "  {label:<14} {ok:>6} ok {err:>4} errors {tp:>8.1}/s   p50 {p50:>8}  p90 {p90:>8}  p99 {p99:>8}  max {max:>8}",
        ok = s.ok,
        err = s.errors,
        tp = s.throughput(),
        p50 = ms(s.pct(50.0)),
        p90 = ms(s.pct(90.0)),
        p99 = ms(s.pct(99.0)),
        max = ms(s.latencies.last().copied().unwrap_or_default()),
    );
    if let Some(e) = &s.first_error {
        println!("  {:<14} first error: {e}", "");
    }
}

fn cpu_line(c: &CpuPerRequest) -> String {
    let db = c
        .database
        .map(|d| format!(", database server {}", ms(d)))
        .unwrap_or_default();
    let db = match c.statements {
        Some(n) => format!("{db} ({n:.2} statements)"),
        None => db,
    };
    format!(
        "function {}{db}, load tool {} (simulator, backend, client)",
        ms(c.function),
        ms(c.tool)
    )
}

pub fn print_cpu(c: Option<&CpuPerRequest>) {
    if let Some(c) = c {
        println!("  {:<14} CPU per request: {}", "", cpu_line(c));
    }
}

pub fn print_spread(what: &str, s: &Spread) {
    println!(
        "  {what:<28} min {:>8}  median {:>8}  max {:>8}  ({} runs)",
        ms(s.min),
        ms(s.median),
        ms(s.max),
        s.runs
    );
}

pub fn print_summary(name: &str, s: &Summary) {
    println!("\n== {name}: summary");
    for (label, p) in [("orders", &s.orders), ("notifications", &s.notifications)] {
        if let Some(p) = p {
            println!(
                "  {label:<14} {:>8.1}/s   p50 {:>8}  p90 {:>8}  p99 {:>8}   {} errors  (median of {} round(s))",
                p.throughput,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                p.errors,
                p.rounds
            );
            print_cpu(p.cpu.as_ref());
        }
    }
    if let Some(b) = s.peak_rss {
        println!(
            "  {:<14} {} (VmHWM after the load phases)",
            "peak RSS",
            mb(b)
        );
    }
    if let Some(c) = &s.cold_health {
        print_spread("cold start → /healthz 200", c);
    }
    if let Some(c) = &s.cold_order {
        print_spread("cold start → first order", c);
    }
}

/// When the targets of issue 6 apply to this run's settings.
pub struct TargetScope {
    /// N = 1,000 and the notification phase ran: the RSS target's condition.
    pub rss: bool,
    /// MySQL at concurrency 16: the end-to-end notification targets' condition.
    pub end_to_end: bool,
}

/// One row: ours, theirs, how many times better ours is, and the target if one applies.
fn row(
    what: &str,
    ours: Option<f64>,
    node: Option<f64>,
    fmt: fn(f64) -> String,
    lower_is_better: bool,
    target: String,
) {
    let (Some(o), Some(n)) = (ours, node) else {
        return;
    };
    let ratio = if lower_is_better {
        n / o.max(1e-12)
    } else {
        o / n.max(1e-12)
    };
    println!(
        "  {what:<34} {:>10} {:>10} {:>8.1}×  {target}",
        fmt(o),
        fmt(n),
        ratio
    );
}

fn f_ms(v: f64) -> String {
    ms(Duration::from_secs_f64(v))
}

fn f_mb(v: f64) -> String {
    mb(v as u64)
}

fn f_count(v: f64) -> String {
    format!("{v:.2}")
}

fn f_rate(v: f64) -> String {
    format!("{v:.1}/s")
}

pub fn compare(ours: &Summary, node: &Summary, scope: &TargetScope) {
    println!("\n== Side by side: Rust router vs Node.js reference (ratio: how many times better Rust is)");
    println!(
        "  {:<34} {:>10} {:>10} {:>9}  target",
        "measure", "rust", "node", "ratio"
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let med = |s: &Option<Spread>| s.map(|s| s.median.as_secs_f64());
    let (oh, nh) = (med(&ours.cold_health), med(&node.cold_health));
    let target = match (oh, nh) {
        (Some(o), Some(n)) => format!(
            "≤ 15 ms and ≥ 25×: {}",
            verdict(o <= 0.015 && n / o >= 25.0)
        ),
        _ => String::new(),
    };
    row("cold start → /healthz (median)", oh, nh, f_ms, true, target);
    row(
        "cold start → first order (median)",
        med(&ours.cold_order),
        med(&node.cold_order),
        f_ms,
        true,
        String::new(),
    );
    let (or, nr) = (
        ours.peak_rss.map(|b| b as f64),
        node.peak_rss.map(|b| b as f64),
    );
    let target = match (or, nr) {
        (Some(o), Some(n)) if scope.rss => format!(
            "≤ 16 MB and ≤ 1/5: {}",
            verdict(o <= 16_000_000.0 && o * 5.0 <= n)
        ),
        _ => "(target: after 1,000 notifications)".into(),
    };
    row("peak RSS (VmHWM)", or, nr, f_mb, true, target);
    let tp = |p: &Option<PhaseSummary>| p.map(|p| p.throughput);
    let pct = |p: &Option<PhaseSummary>, f: fn(&PhaseSummary) -> Duration| {
        p.as_ref().map(|p| f(p).as_secs_f64())
    };
    let cpu = |p: &Option<PhaseSummary>, f: fn(&CpuPerRequest) -> Option<Duration>| {
        p.as_ref()
            .and_then(|p| p.cpu.as_ref())
            .and_then(f)
            .map(|d| d.as_secs_f64())
    };
    row(
        "orders/s",
        tp(&ours.orders),
        tp(&node.orders),
        f_rate,
        false,
        String::new(),
    );
    row(
        "function CPU per order",
        cpu(&ours.orders, |c| Some(c.function)),
        cpu(&node.orders, |c| Some(c.function)),
        f_ms,
        true,
        String::new(),
    );
    row(
        "order p50",
        pct(&ours.orders, |p| p.p50),
        pct(&node.orders, |p| p.p50),
        f_ms,
        true,
        String::new(),
    );
    row(
        "order p99",
        pct(&ours.orders, |p| p.p99),
        pct(&node.orders, |p| p.p99),
        f_ms,
        true,
        String::new(),
    );
    let (o, n) = (tp(&ours.notifications), tp(&node.notifications));
    let target = match (o, n) {
        (Some(o), Some(n)) if scope.end_to_end => format!("≥ 2×: {}", verdict(o >= 2.0 * n)),
        _ => "(target: MySQL, concurrency 16)".into(),
    };
    row("notifications/s", o, n, f_rate, false, target);
    row(
        "function CPU per notification",
        cpu(&ours.notifications, |c| Some(c.function)),
        cpu(&node.notifications, |c| Some(c.function)),
        f_ms,
        true,
        String::new(),
    );
    row(
        "database CPU per notification",
        cpu(&ours.notifications, |c| c.database),
        cpu(&node.notifications, |c| c.database),
        f_ms,
        true,
        String::new(),
    );
    row(
        "MySQL statements per notification",
        ours.notifications
            .as_ref()
            .and_then(|p| p.cpu.as_ref())
            .and_then(|c| c.statements),
        node.notifications
            .as_ref()
            .and_then(|p| p.cpu.as_ref())
            .and_then(|c| c.statements),
        f_count,
        true,
        String::new(),
    );
    row(
        "notification p50",
        pct(&ours.notifications, |p| p.p50),
        pct(&node.notifications, |p| p.p50),
        f_ms,
        true,
        String::new(),
    );
    let (o, n) = (
        pct(&ours.notifications, |p| p.p99),
        pct(&node.notifications, |p| p.p99),
    );
    let target = match (o, n) {
        (Some(o), Some(n)) if scope.end_to_end => format!("≤ 1/2: {}", verdict(o * 2.0 <= n)),
        _ => String::new(),
    };
    row("notification p99", o, n, f_ms, true, target);
}

/// The database work per notification of every implementation measured in this run, side
/// by side: what limits how far a deployment sharing one database grows.
pub fn print_database_work(named: &[(String, &Summary)]) {
    println!("\n== database work per notification (medians)");
    println!(
        "  {:<58} {:>10} {:>12} {:>12} {:>10} {:>9}",
        "", "statements", "MariaDB CPU", "function CPU", "notif/s", "p99"
    );
    for (name, s) in named {
        let Some(p) = &s.notifications else {
            continue;
        };
        let cpu = p.cpu.as_ref();
        println!(
            "  {:<58} {:>10} {:>12} {:>12} {:>10.1} {:>9}",
            name,
            cpu.and_then(|c| c.statements)
                .map(f_count)
                .unwrap_or_else(|| "-".into()),
            cpu.and_then(|c| c.database)
                .map(ms)
                .unwrap_or_else(|| "-".into()),
            cpu.map(|c| ms(c.function)).unwrap_or_else(|| "-".into()),
            p.throughput,
            ms(p.p99)
        );
    }
}
