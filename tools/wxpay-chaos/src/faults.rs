//! The fault schedule: one fault after another, drawn from the seed, while the stories
//! run. Each fault ends by itself (a restart, a SIGCONT, a count of answers spent, a timer)
//! so the campaign never depends on healing to make progress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wxpay_local::backend::DeliveryFault;
use wxpay_sim::{Fault, FaultKind};

use crate::mariadb::{GaleraNodes, Server};
use crate::rng::Rng;
use crate::store::Store;
use crate::world::Shared;

/// Faults injected, by kind, for the report.
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<&'static str, u64>>);

impl Tally {
    fn add(&self, kind: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

const KINDS: &[&str] = &[
    "sigkill",
    "sigstop",
    "db_kill_sessions",
    "wechat_500",
    "wechat_429",
    "wechat_drop",
    "wechat_stall",
    "wechat_refund_late",
    "backend_500",
    "backend_hang",
    "backend_slow",
    "notify_before_prepay",
    "mariadb_restart",
];

/// What `mariadb_restart` restarts: the campaign's own server, or one node of the cluster.
pub enum Restarts {
    Server(Arc<Server>),
    Nodes(Arc<GaleraNodes>),
}

pub async fn schedule(
    w: Shared,
    store: Arc<Store>,
    restarts: Option<Restarts>,
    tally: Arc<Tally>,
    early: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::fork(w.seed, 0xFA17);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let kind = *rng.pick(KINDS);
        if kind == "db_kill_sessions" && !store.is_mysql() {
            continue;
        }
        if kind == "mariadb_restart" {
            // Only a server of the campaign's own; awaited here, so the schedule ends with
            // the database up.
            let Some(restarts) = &restarts else { continue };
            // A restart keeps the database away for seconds: a third as often as the
            // others, or the store would be down for much of the campaign.
            if !rng.chance(33) {
                continue;
            }
            tally.add(kind);
            let crash = rng.chance(50);
            let down = Duration::from_millis(rng.range(200, 3000));
            let restarted = match restarts {
                Restarts::Server(server) => server.restart(crash, down).await,
                // A node always crashes: a clean shutdown is only a quieter crash to the
                // cluster, and its instance's pool sees the same refused connections.
                Restarts::Nodes(nodes) => {
                    let node = rng.range(1, nodes.count as u64) as usize;
                    nodes.restart(node, down).await
                }
            };
            if let Err(e) = restarted {
                eprintln!("mariadb restart: {e}");
            }
            continue;
        }
        tally.add(kind);
        inject(&w, &store, &mut rng, kind, &early).await;
    }
}

async fn inject(w: &Shared, store: &Store, rng: &mut Rng, kind: &str, early: &AtomicBool) {
    let n = w.fleet.workers() as u64;
    let sim = &w.sim;
    match kind {
        "sigkill" => {
            // Prefer an instance in the middle of a call; keep at least one alive.
            let workers = &w.fleet.instances[..w.fleet.workers()];
            let alive = workers.iter().filter(|i| i.is_running()).count();
            if alive < 2 {
                return;
            }
            let busy: Vec<usize> = workers
                .iter()
                .filter(|i| i.is_running() && i.in_flight.load(Ordering::SeqCst) > 0)
                .map(|i| i.index)
                .collect();
            let i = if busy.is_empty() {
                rng.range(0, n - 1) as usize
            } else {
                *rng.pick(&busy)
            };
            let inst = w.fleet.instances[i].clone();
            inst.kill();
            let down = Duration::from_millis(rng.range(200, 2000));
            let w2 = w.clone();
            tokio::spawn(async move {
                tokio::time::sleep(down).await;
                if let Err(e) = w2.fleet.start(inst.index).await {
                    eprintln!("restart: {e}");
                }
            });
        }
        "sigstop" => {
            let i = rng.range(0, n - 1) as usize;
            let inst = w.fleet.instances[i].clone();
            if !inst.is_running() || inst.is_stopped() {
                return;
            }
            inst.stop();
            let frozen = Duration::from_millis(rng.range(300, 3000));
            tokio::spawn(async move {
                tokio::time::sleep(frozen).await;
                inst.cont();
            });
        }
        "db_kill_sessions" => store.kill_sessions().await,
        "wechat_500" => sim.inject_fault(Fault::new(
            "/v3/",
            rng.range(1, 6) as usize,
            FaultKind::status(500, "SYSTEM_ERROR", "系统错误"),
        )),
        "wechat_429" => sim.inject_fault(Fault::new(
            "/v3/",
            rng.range(1, 4) as usize,
            FaultKind::status(429, "FREQUENCY_LIMITED", "频率超限"),
        )),
        "wechat_drop" => sim.inject_fault(Fault::new(
            "/v3/",
            rng.range(1, 3) as usize,
            FaultKind::Disconnect,
        )),
        // Processed, answered after the call's deadline has passed.
        "wechat_stall" => sim.inject_fault(Fault::new(
            *rng.pick(&["/v3/pay/", "/v3/refund/"]),
            1,
            FaultKind::Delay(Duration::from_millis(rng.range(4500, 6000))),
        )),
        "wechat_refund_late" => {
            sim.answer_refunds_late(Duration::from_millis(rng.range(4500, 6000)), 1)
        }
        "backend_500" | "backend_hang" | "backend_slow" => {
            let fault = match kind {
                "backend_500" => DeliveryFault::Status(500),
                // Longer than any delivery waits: the caller gives up, nothing recorded.
                "backend_hang" => DeliveryFault::Stall(Duration::from_secs(7)),
                _ => DeliveryFault::Slow(Duration::from_millis(rng.range(200, 1500))),
            };
            w.backend.set_delivery_fault(Some(fault));
            let backend = w.backend.clone();
            let lasts = Duration::from_millis(rng.range(500, 3000));
            tokio::spawn(async move {
                tokio::time::sleep(lasts).await;
                backend.set_delivery_fault(None);
            });
        }
        "notify_before_prepay" => {
            // The next prepay is processed but its answer held, and the payer pays (and the
            // notification arrives) before the caller has it.
            sim.inject_fault(Fault::new(
                "/v3/pay/transactions/",
                1,
                FaultKind::Delay(Duration::from_millis(1500)),
            ));
            early.store(true, Ordering::SeqCst);
        }
        _ => {}
    }
}
