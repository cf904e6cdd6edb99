//! `wxpay-chaos`: a randomised fault campaign in the manner of Jepsen (issue 25).
//!
//! The WeChat Pay simulator and a fake business backend run in this process; at least three
//! router processes (`wxpay_functions` in local HTTP mode) share one store (a SQLite file or
//! a MySQL database, migrated first as a deployment would). Workers play orders' stories
//! while a fault schedule kills, freezes and starves them; then the campaign heals and
//! checks the ledger against WeChat Pay's. Every decision comes from `--seed`.

mod args;
mod check;
mod faults;
mod fleet;
mod heal;
mod instance;
mod mariadb;
mod rng;
mod store;
mod story;
mod world;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wxpay_local::FakeBackend;
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{SimConfig, Simulator};

use args::{parse_args, replay, Args, USAGE};
use store::Store;
use world::{World, SECRET};

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wxpay-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxpay-chaos: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wxpay-chaos: {e}");
            eprintln!("replay: {}", replay(&args));
            ExitCode::from(2)
        }
    }
}

/// One instance's clock 4 minutes off, ahead or behind as the seed says, through
/// libfaketime (scripts/install-faketime.sh); without it the campaign says so loudly.
fn clock_skew(seed: u64, mysql: bool) -> (Vec<(String, String)>, String) {
    if !mysql {
        // Processes sharing a SQLite file in WAL mode share one host (its shared memory),
        // so one kernel clock: a per-process skew cannot happen there, and the outbox's
        // `strftime('now')` is each writer's own clock.
        return (
            Vec::new(),
            "not injected on SQLite (one host, one clock; MySQL campaigns skew one instance)"
                .into(),
        );
    }
    // The MT build: the router is multi-threaded, and libfaketime's README says the plain
    // library caches state in statics without synchronisation.
    let lib = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"))
        .find(|p| std::path::Path::new(p).exists());
    let Some(lib) = lib else {
        return (
            Vec::new(),
            "NOT INJECTED: libfaketime is not installed (scripts/install-faketime.sh)".into(),
        );
    };
    let offset = if rng::Rng::fork(seed, 0xC10C).chance(50) {
        "+4m"
    } else {
        "-4m"
    };
    (
        vec![
            ("LD_PRELOAD".into(), lib),
            ("FAKETIME".into(), offset.into()),
            // Wall clock only: deadlines are timed on the monotonic clock, as on any host.
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ],
        format!("the last instance runs {offset} (libfaketime)"),
    )
}

async fn run(args: &Args) -> Result<usize, String> {
    let replay = replay(args);
    let work =
        std::env::temp_dir().join(format!("wxpay-chaos-{}-{}", args.seed, std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    println!(
        "== wxpay-chaos seed {} on {} for {} min; logs in {}",
        args.seed,
        args.store,
        args.minutes,
        work.display()
    );

    let keys = tokio::task::spawn_blocking(MerchantKeys::generate)
        .await
        .map_err(|e| e.to_string())?;
    let mut config = SimConfig::for_merchant(&keys);
    // The campaign refunds one order several times in a row; the spacing rule has its own
    // tests, and 429s come from the fault schedule.
    config.refund_frequency_window = Duration::ZERO;
    let sim = Simulator::start(config)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    // WeChat Pay's retry schedule a hundred times faster: 15 s becomes 150 ms.
    sim.set_notification_retry_scale(0.01)?;
    let backend = FakeBackend::start(([127, 0, 0, 1], 0).into(), Some(SECRET.into()), false)
        .await
        .map_err(|e| format!("fake backend: {e}"))?;

    let private = if args.private_mariadb {
        let s = mariadb::Server::create(&work).await?;
        println!("  a MariaDB server of its own on port {}", s.port);
        Some(Arc::new(s))
    } else {
        None
    };
    let store = Arc::new(match args.store.as_str() {
        "mysql" => Store::Mysql {
            server: private
                .as_ref()
                .map_or_else(|| args.mysql_url.clone(), |s| s.url()),
            db: format!("chaos_{}_{}", args.seed, std::process::id()),
            nodes: args.cluster.clone(),
        },
        _ => Store::Sqlite {
            path: work.join("chaos.db"),
        },
    });
    store.create().await?;
    let sc = sim.config();
    let vars: Vec<(String, String)> = vec![
        ("WECHAT_APPID".into(), sc.appid.clone()),
        ("WECHAT_MCHID".into(), sc.mchid.clone()),
        ("WECHAT_SERIAL_NO".into(), keys.serial_no.clone()),
        ("WECHAT_PRIVATE_KEY".into(), keys.private_key_pem.clone()),
        ("WECHAT_APIV3_KEY".into(), sc.apiv3_key.clone()),
        ("WECHATPAY_BASE_URL".into(), sim.base_url()),
        ("API_BASE_URL".into(), backend.url()),
        ("INTERNAL_API_SECRET".into(), SECRET.into()),
        ("DATABASE_URL".into(), store.url()),
        (
            "FUNCTION_TIMEOUT_MS".into(),
            world::CALL_DEADLINE.as_millis().to_string(),
        ),
        ("OUTBOX_SWEEP_INTERVAL_SECS".into(), "5".into()),
        ("RUST_LOG".into(), "info".into()),
        ("METRICS".into(), "off".into()),
    ];
    let secrets = check::secrets(&sc.apiv3_key, &keys.private_key_pem);
    let (skewed, skew_note) = clock_skew(args.seed, store.is_mysql());
    println!("  clock skew: {skew_note}");
    let db_name = match &*store {
        Store::Mysql { db, .. } => db.clone(),
        Store::Sqlite { .. } => String::new(),
    };
    let node_urls: Vec<String> = args
        .cluster
        .iter()
        .map(|n| format!("{n}/{db_name}"))
        .collect();
    let fleet = fleet::Fleet::new(
        args.bin.clone(),
        vars,
        args.instances,
        &work,
        skewed,
        &node_urls,
    )?;
    println!("  {}", fleet.migrate()?.replace('\n', "\n  "));
    for i in 0..fleet.instances.len() {
        fleet.start(i).await?;
    }
    let w = Arc::new(World {
        seed: args.seed,
        sim,
        backend,
        fleet,
        client: world::client()?,
        journal: Mutex::new(Default::default()),
        calls: Mutex::new(Vec::new()),
        counters: Default::default(),
        refunds_asked: Mutex::new(Vec::new()),
        answered_orders: Mutex::new(Default::default()),
        started: Instant::now(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    let supervising = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (w, done) = (w.clone(), supervising.clone());
        tokio::spawn(async move { w.fleet.supervise(&done).await })
    };
    let early = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(faults::Tally::default());
    let mut workers = Vec::new();
    for k in 0..args.workers {
        workers.push(tokio::spawn(story::worker(w.clone(), k, stop.clone())));
    }
    let payer = tokio::spawn(story::early_payer(w.clone(), early.clone(), stop.clone()));
    let schedule = tokio::spawn(faults::schedule(
        w.clone(),
        store.clone(),
        match (&private, &args.node_script) {
            (Some(server), _) => Some(faults::Restarts::Server(server.clone())),
            (None, Some(script)) => Some(faults::Restarts::Nodes(Arc::new(mariadb::GaleraNodes {
                script: script.clone(),
                count: args.cluster.len(),
                broken: Default::default(),
            }))),
            (None, None) => None,
        },
        tally.clone(),
        early.clone(),
        stop.clone(),
    ));
    let length = Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_report = Duration::from_secs(30);
    while w.started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if w.started.elapsed() >= next_report {
            next_report += Duration::from_secs(30);
            println!(
                "  {:>5.0} s: {} calls, {} orders, faults {:?}",
                w.started.elapsed().as_secs_f64(),
                w.counters.calls.load(Ordering::Relaxed),
                w.counters.orders.load(Ordering::Relaxed),
                tally.snapshot()
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = schedule.await;
    let _ = payer.await;
    for h in workers {
        let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
    }
    // Late duplicate notifications the stories spawned land within 4 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ran = w.started.elapsed();
    println!("== healing");
    heal::heal(&w, &store).await?;
    println!("== checking the invariants");
    let violations = check::check(&w, &store, &secrets).await?;

    let c = &w.counters;
    let faults = tally.snapshot();
    let fault_total: u64 = faults.values().sum();
    println!(
        "== seed {}, {} min, store {}",
        args.seed, args.minutes, args.store
    );
    println!(
        "  operations: {} calls ({} orders, {} payments, {} harness-sent notifications, {} refund calls, {} queries, {} closes); WeChat Pay: {} orders, {} refunds, {} notifications",
        c.calls.load(Ordering::Relaxed),
        c.orders.load(Ordering::Relaxed),
        c.payments.load(Ordering::Relaxed),
        c.notifications.load(Ordering::Relaxed),
        c.refunds.load(Ordering::Relaxed),
        c.queries.load(Ordering::Relaxed),
        c.closes.load(Ordering::Relaxed),
        w.sim.orders().len(),
        w.sim.refunds().len(),
        w.sim.notification_deliveries().len(),
    );
    println!("  faults: {fault_total} ({faults:?}); clock skew: {skew_note}");
    println!("  ran {:.1} min before healing", ran.as_secs_f64() / 60.0);
    let mut by_invariant = [0usize; 7];
    for v in &violations {
        by_invariant[v.invariant as usize] += 1;
    }
    println!(
        "  violations: {} (by invariant 1-6: {:?})",
        violations.len(),
        &by_invariant[1..]
    );
    let mut told = std::collections::HashSet::new();
    for v in &violations {
        println!(
            "VIOLATION of invariant {} about {}: {}",
            v.invariant, v.about, v.detail
        );
    }
    for v in violations
        .iter()
        .filter(|v| v.about.len() > 1 && v.about != "reconciliation")
    {
        if told.len() >= 10 {
            break;
        }
        if told.insert(v.about.clone()) {
            println!("{}", check::story(&w, &store, &v.about).await);
        }
    }
    if !violations.is_empty() {
        println!("replay: {replay}");
    }
    supervising.store(true, Ordering::SeqCst);
    let _ = supervisor.await;
    w.fleet.shutdown();
    store.drop_database().await;
    drop(private);
    Ok(violations.len())
}
