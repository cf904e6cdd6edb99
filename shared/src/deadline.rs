//! The deadline of the invocation being served, carried with the call (a task-local set by
//! the runtime adapter), so every WeChat Pay attempt, certificate download, backend call and
//! store call can be held to `min(its own limit, time remaining − MARGIN)` without every
//! port taking one more argument.
//!
//! Also carried with the call: the work that must be done before it answers when part of
//! it was cut off — a database session dropped mid-statement must be ended on the server,
//! or a frozen sandbox would keep its row locks ([`before_answering`], run by the runtime
//! adapter with [`finish_cleanups`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Kept back from every budget for writing the answer itself.
pub const MARGIN: Duration = Duration::from_millis(300);

/// WeChat Pay waits 5 s for a notification's answer.
pub const NOTIFICATION: Duration = Duration::from_secs(5);

tokio::task_local! {
    static DEADLINE: Instant;
    static CLEANUPS: Cleanups;
}

/// How long an invocation that was cut off waits for its cleanups before answering: within
/// the `MARGIN / 2` the runtime keeps between abandoning the work and the deadline.
pub const CLEANUP: Duration = Duration::from_millis(100);

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work to finish before the invocation answers.
#[derive(Clone, Default)]
struct Cleanups(Arc<Mutex<Vec<Job>>>);

impl Cleanups {
    fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs `fut` with a place for [`before_answering`] jobs, unless it already runs inside
/// one: an invocation has one list, however many scopes it nests.
pub async fn with_cleanups<F: Future>(fut: F) -> F::Output {
    if CLEANUPS.try_with(|_| ()).is_ok() {
        fut.await
    } else {
        CLEANUPS.scope(Cleanups::default(), fut).await
    }
}

/// Hands `job` to the invocation being served, to finish before it answers (see
/// [`finish_cleanups`]). Outside an invocation (a tool, a test) it runs in the background.
pub fn before_answering(job: impl Future<Output = ()> + Send + 'static) {
    let mut job: Option<Job> = Some(Box::pin(job));
    let _ = CLEANUPS.try_with(|c| {
        if let Some(job) = job.take() {
            c.0.lock().unwrap_or_else(|p| p.into_inner()).push(job);
        }
    });
    if let (Some(job), Ok(rt)) = (job, tokio::runtime::Handle::try_current()) {
        rt.spawn(job);
    }
}

/// Runs the jobs handed over so far, together, for at most `limit`; what has not finished
/// by then goes on in the background (logged by the job itself).
pub async fn finish_cleanups(limit: Duration) {
    let Ok(jobs) = CLEANUPS.try_with(Cleanups::take) else {
        return;
    };
    if jobs.is_empty() {
        return;
    }
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        set.spawn(job);
    }
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("cleanups of a cut-off call did not finish in {limit:?}; answering");
        set.detach_all();
    }
}

/// Runs `fut` with `deadline` as the invocation's deadline. An inner scope can only shorten
/// it: a notification's 5 s never outlasts the platform's own deadline.
pub async fn scope<F: Future>(deadline: Instant, fut: F) -> F::Output {
    let deadline = current().map_or(deadline, |outer| outer.min(deadline));
    DEADLINE.scope(deadline, fut).await
}

/// The deadline of the invocation being served, if one was set.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// When the answer must be ready: the deadline less [`MARGIN`].
pub fn answer_by() -> Option<Instant> {
    current().map(|d| d.checked_sub(MARGIN).unwrap_or(d))
}

/// Time left before the answer must be ready; `limit` outside an invocation.
pub fn budget(limit: Duration) -> Duration {
    match answer_by() {
        Some(by) => limit.min(by.saturating_duration_since(Instant::now())),
        None => limit,
    }
}

/// Whether `needed` still fits before the answer must be ready.
pub fn has(needed: Duration) -> bool {
    budget(needed) >= needed
}

/// Runs `fut` for at most `budget(limit)`; `None` if it did not finish.
pub async fn bounded<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(budget(limit), fut).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cleanups_run_before_answering_and_a_slow_one_does_not_hold_the_answer() {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = std::time::Instant::now();
        with_cleanups(async {
            let d = done.clone();
            before_answering(async move {
                d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            // Nested scopes share the invocation's list.
            with_cleanups(async {
                before_answering(async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
            })
            .await;
            finish_cleanups(Duration::from_millis(50)).await;
            assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 1);
            // Run once: nothing left.
            finish_cleanups(Duration::from_millis(50)).await;
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn budgets_shrink_to_the_deadline_and_scopes_only_shorten_it() {
        assert_eq!(budget(Duration::from_secs(4)), Duration::from_secs(4));
        let outer = Instant::now() + Duration::from_secs(2);
        scope(outer, async {
            let b = budget(Duration::from_secs(4));
            assert!(b <= Duration::from_millis(1700) && b > Duration::from_millis(1500));
            assert_eq!(budget(Duration::from_millis(10)), Duration::from_millis(10));
            scope(Instant::now() + Duration::from_secs(60), async {
                assert_eq!(current(), Some(outer));
            })
            .await;
            assert!(!has(Duration::from_secs(3)));
            assert!(has(Duration::from_secs(1)));
        })
        .await;
    }
}
