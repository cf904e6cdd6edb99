//! Runs N requests at concurrency C and measures each one.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Stats {
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Successful requests only, sorted.
    pub latencies: Vec<Duration>,
    pub first_error: Option<String>,
}

impl Stats {
    /// Successful requests per second of wall time.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of the successful requests' latencies.
    pub fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// Calls `op(i)` for every `i < n`, at most `concurrency` at a time, timing each call.
/// Returns the stats and each call's result (`None` where it failed).
///
/// Long runs print progress every few seconds so nobody mistakes them for a hang.
pub async fn run<T, F, Fut>(
    label: &str,
    n: usize,
    concurrency: usize,
    op: F,
) -> (Stats, Vec<Option<T>>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    struct Shared<T> {
        next: AtomicUsize,
        done: AtomicUsize,
        results: Mutex<Vec<Option<T>>>,
        latencies: Mutex<Vec<Duration>>,
        errors: Mutex<(usize, Option<String>)>,
    }
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        results: Mutex::new((0..n).map(|_| None).collect()),
        latencies: Mutex::new(Vec::with_capacity(n)),
        errors: Mutex::new((0, None)),
    });
    let op = Arc::new(op);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let shared = shared.clone();
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                let took = t.elapsed();
                match result {
                    Ok(v) => {
                        lock(&shared.latencies).push(took);
                        lock(&shared.results)[i] = Some(v);
                    }
                    Err(e) => {
                        let mut errs = lock(&shared.errors);
                        errs.0 += 1;
                        errs.1.get_or_insert(e);
                    }
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let shared = shared.clone();
        let label = label.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let done = shared.done.load(Ordering::Relaxed);
                if done >= n {
                    break;
                }
                eprintln!("    {label}: {done}/{n} done");
            }
        })
    };
    for w in workers {
        // A panicking worker would lose its remaining requests; count them as errors below.
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    progress.abort();
    let mut latencies = std::mem::take(&mut *lock(&shared.latencies));
    latencies.sort();
    let results = std::mem::take(&mut *lock(&shared.results));
    let (mut errors, first_error) = std::mem::take(&mut *lock(&shared.errors));
    errors += n.saturating_sub(latencies.len() + errors);
    let stats = Stats {
        ok: latencies.len(),
        errors,
        elapsed,
        latencies,
        first_error,
    };
    (stats, results)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
