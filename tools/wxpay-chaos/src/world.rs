//! What a campaign shares: the simulator, the fake backend, the instances, and the journal
//! of everything the harness asked and was answered, per order, for the stories a
//! violation prints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wxpay_local::FakeBackend;
use wxpay_sim::{SignedNotification, Simulator};

use crate::fleet::Fleet;

/// The secret trusted callers present and the backend checks.
pub const SECRET: &str = "chaos-internal-secret-0123456789";
/// `FUNCTION_TIMEOUT_MS` of every instance: the deadline of a call.
pub const CALL_DEADLINE: Duration = Duration::from_millis(4000);
/// `FUNCTION_TIMEOUT_MS` of the healer, which sweeps and reconciles a whole campaign.
pub const HEALER_DEADLINE: Duration = Duration::from_millis(120_000);
/// A notification's deadline (contract §12).
pub const NOTIFY_DEADLINE: Duration = Duration::from_millis(5000);
/// Invariant 5's allowance past the deadline.
pub const GRACE: Duration = Duration::from_millis(200);

/// One call to an instance, as timed by the harness.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub what: String,
    pub about: Option<String>,
    pub instance: usize,
    pub elapsed: Duration,
    pub limit: Duration,
    /// The instance was killed or frozen while the call ran: its time is the harness's.
    pub interrupted: bool,
    pub status: u16,
    /// Why there was no answer, when there was none.
    pub failure: Option<String>,
}

/// What a call answered: HTTP status (0: no answer) and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> Option<i64> {
        self.body["code"].as_i64()
    }
    pub fn ok(&self) -> bool {
        self.status == 200 && self.code() == Some(0)
    }
}

#[derive(Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub orders: AtomicU64,
    pub payments: AtomicU64,
    pub notifications: AtomicU64,
    pub refunds: AtomicU64,
    pub queries: AtomicU64,
    pub closes: AtomicU64,
}

pub struct World {
    pub seed: u64,
    pub sim: Simulator,
    pub backend: FakeBackend,
    pub fleet: Fleet,
    pub client: reqwest::Client,
    pub journal: Mutex<HashMap<String, Vec<String>>>,
    pub calls: Mutex<Vec<CallRecord>>,
    pub counters: Counters,
    /// Refund numbers the harness asked for: (outTradeNo, outRefundNo, amount or None).
    pub refunds_asked: Mutex<Vec<(String, String, Option<i64>)>>,
    /// Orders whose creation the harness saw answered (the rest it may still meet).
    pub answered_orders: Mutex<std::collections::HashSet<String>>,
    pub started: Instant,
}

pub fn clip(s: &str, n: usize) -> String {
    if s.len() > n {
        format!("{}…", &s[..s.floor_char_boundary(n)])
    } else {
        s.to_string()
    }
}

impl World {
    pub fn note(&self, about: &str, line: impl AsRef<str>) {
        let t = self.started.elapsed().as_secs_f64();
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(about.to_string())
            .or_default()
            .push(format!("[{t:8.3}s] {}", line.as_ref()));
    }

    pub fn story(&self, about: &str) -> Vec<String> {
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(about)
            .cloned()
            .unwrap_or_default()
    }

    /// A trusted call of `body` on instance `i`; journaled under `about` when given.
    pub async fn call(&self, i: usize, about: Option<&str>, body: Value) -> Answer {
        let what = body["type"].as_str().unwrap_or("?").to_string();
        let req = self
            .client
            .post(format!("{}/pay", self.fleet.instances[i].url()))
            .header("Content-Type", "application/json")
            .header("X-Internal-Secret", SECRET)
            .body(body.to_string());
        // The healer runs with a scheduled job's deadline (fleet.rs).
        let limit = if i == self.fleet.healer() {
            HEALER_DEADLINE
        } else {
            CALL_DEADLINE
        };
        // Wait past the deadline, to see how late an answer comes, never less.
        let req = req.timeout(limit + Duration::from_secs(10));
        let answer = self.timed(i, &what, about, limit, req).await;
        if let Some(no) = about {
            self.note(
                no,
                format!(
                    "call {what} on instance {} {} -> {} {}",
                    i + 1,
                    body,
                    answer.status,
                    clip(&answer.body.to_string(), 300)
                ),
            );
        }
        answer
    }

    /// Posts a signed notification to instance `i`, exactly as WeChat Pay would.
    pub async fn notify(&self, i: usize, about: &str, n: &SignedNotification) -> Answer {
        let mut req = self
            .client
            .post(format!("{}/pay", self.fleet.instances[i].url()))
            .body(n.body.clone());
        for (k, v) in &n.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        self.counters.notifications.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .timed(i, "notification", Some(about), NOTIFY_DEADLINE, req)
            .await;
        self.note(
            about,
            format!(
                "harness-sent notification to instance {} -> {} {}",
                i + 1,
                answer.status,
                clip(&answer.body.to_string(), 200)
            ),
        );
        answer
    }

    async fn timed(
        &self,
        i: usize,
        what: &str,
        about: Option<&str>,
        limit: Duration,
        req: reqwest::RequestBuilder,
    ) -> Answer {
        let inst = &self.fleet.instances[i];
        let before = inst.interruptions.load(Ordering::SeqCst);
        let frozen_before = inst.is_stopped() || !inst.is_up();
        inst.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let result = req.send().await;
        let answer = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(json!(clip(&text, 300)));
                Answer { status, body }
            }
            Err(e) => {
                // A refusal from an instance the harness did not kill: say whether the
                // process is still there, so a crash is not mistaken for a slow answer.
                let exited = match inst.exit_status() {
                    Some(s) => format!(" (the process had exited by itself: {s})"),
                    None => String::new(),
                };
                Answer {
                    status: 0,
                    body: json!(format!("no answer: {e}{exited}")),
                }
            }
        };
        let elapsed = started.elapsed();
        inst.in_flight.fetch_sub(1, Ordering::SeqCst);
        let interrupted = frozen_before
            || inst.is_stopped()
            || inst.interruptions.load(Ordering::SeqCst) != before;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(CallRecord {
                what: what.to_string(),
                about: about.map(str::to_string),
                instance: i,
                elapsed,
                limit,
                interrupted,
                status: answer.status,
                failure: (answer.status == 0).then(|| answer.body.to_string()),
            });
        answer
    }
}

/// The client the harness calls with: no proxy, and long enough to see a late answer.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())
}

pub type Shared = Arc<World>;
