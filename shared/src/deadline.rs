//! The deadline of the invocation being served, carried with the call (a task-local set by
//! the runtime adapter), so every WeChat Pay attempt, certificate download, backend call and
//! store call can be held to `min(its own limit, time remaining − MARGIN)` without every
//! port taking one more argument.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Kept back from every budget for writing the answer itself.
pub const MARGIN: Duration = Duration::from_millis(300);

/// WeChat Pay waits 5 s for a notification's answer.
pub const NOTIFICATION: Duration = Duration::from_secs(5);

tokio::task_local! {
    static DEADLINE: Instant;
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
