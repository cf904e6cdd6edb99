//! Deliveries to the business backend (SPEC §8). The order record never depends on them:
//! a paid order queues a row in `notify_outbox` in the same transaction, delivery is tried
//! right away within the notification's budget, and whatever fails waits with exponential
//! backoff for `wxpay_notify_retry` or a later notification.
//!
//! A row is leased before it is sent, so two instances never send it at the same time, and
//! a delivered row is never claimable again.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::http_client;
use crate::error::AppError;
use crate::handlers::Call;
use crate::state::App;
use crate::store::OutboxRow;
use crate::util::now_utc;

/// Longer than any delivery attempt (5 s), so a lease only expires if its holder died.
const LEASE_SECS: i64 = 30;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_BASE_SECS: i64 = 30;
const BACKOFF_CAP_SECS: i64 = 3600;

/// When to try again after `attempts` failed tries: 30 s, 1 min, 2 min … capped at 1 h.
pub fn backoff(attempts: i64) -> time::Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let secs = BACKOFF_BASE_SECS
        .saturating_mul(1i64 << exp)
        .min(BACKOFF_CAP_SECS);
    time::Duration::seconds(secs)
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DeliveryReport {
    pub attempted: usize,
    pub delivered: usize,
    pub failed: usize,
}

/// Posts one claimed row; records the outcome. Returns whether it was delivered.
async fn send(app: &App, row: &OutboxRow, timeout: Duration) -> bool {
    let result = async {
        let base = app
            .config
            .backend_url_for(row.business_type.as_deref())
            .ok_or_else(|| "API_BASE_URL is not configured".to_string())?;
        let mut req = http_client()
            .post(format!("{base}/api/payment/internal/notify"))
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .body(row.payload.clone());
        if let Some(secret) = &app.config.internal_secret {
            req = req.header("X-Internal-Secret", secret.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("backend unreachable: {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("backend answered HTTP {}", resp.status().as_u16()))
        }
    }
    .await;
    let now = now_utc();
    match result {
        Ok(()) => {
            if let Err(e) = app.store.mark_delivered(row.id, now).await {
                // The lease expires and the row is sent again later: at-least-once, never lost.
                tracing::error!(id = row.id, "delivered but not marked: {e}");
            }
            tracing::info!(id = row.id, out_trade_no = %row.out_trade_no, "backend notified");
            true
        }
        Err(error) => {
            let next = now + backoff(row.attempts);
            tracing::warn!(id = row.id, out_trade_no = %row.out_trade_no, attempts = row.attempts, "backend delivery failed, next try at {next}: {error}");
            if let Err(e) = app.store.mark_delivery_failed(row.id, &error, next).await {
                tracing::error!(id = row.id, "delivery failure not recorded: {e}");
            }
            false
        }
    }
}

/// Tries to deliver one freshly queued row within `budget`; on any failure it stays queued.
pub async fn deliver_now(app: &App, id: i64, budget: Duration) {
    if budget < Duration::from_millis(200) {
        return;
    }
    match app
        .store
        .claim_notification(id, now_utc(), LEASE_SECS)
        .await
    {
        Ok(Some(row)) => {
            send(app, &row, budget.min(DELIVERY_TIMEOUT)).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(id, "outbox row not claimed, left for retry: {e}"),
    }
}

/// Delivers up to `limit` due rows (`force`: every pending row) within `budget`.
pub async fn deliver_due(app: &App, force: bool, limit: i64, budget: Duration) -> DeliveryReport {
    let started = Instant::now();
    let mut report = DeliveryReport::default();
    let rows = match app
        .store
        .claim_due_notifications(now_utc(), LEASE_SECS, limit, force)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("outbox not readable: {e}");
            return report;
        }
    };
    for row in rows {
        let left = budget.saturating_sub(started.elapsed());
        if left < Duration::from_millis(200) {
            // Out of time: give the lease back so the row is not stuck for LEASE_SECS.
            let _ = app
                .store
                .mark_delivery_failed(row.id, "not attempted: out of time", now_utc())
                .await;
            continue;
        }
        report.attempted += 1;
        if send(app, &row, left.min(DELIVERY_TIMEOUT)).await {
            report.delivered += 1;
        } else {
            report.failed += 1;
        }
    }
    report
}

#[derive(Deserialize)]
struct RetryRequest {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<i64>,
}

/// `wxpay_notify_retry`: trusted callers and schedules deliver what is due;
/// `{"all":true}` (trusted only) sends every pending row now.
pub async fn retry(app: &App, call: &Call) -> Result<Value, AppError> {
    if !call.caller.scheduled {
        call.require_trusted("wxpay_notify_retry")?;
    }
    let req: RetryRequest = call.parse()?;
    if req.all {
        call.require_trusted("`all`")?;
    }
    let limit = req.limit.unwrap_or(100).clamp(1, 1000);
    let report = deliver_due(app, req.all, limit, Duration::from_secs(25)).await;
    Ok(serde_json::to_value(report).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), time::Duration::seconds(30));
        assert_eq!(backoff(2), time::Duration::seconds(60));
        assert_eq!(backoff(3), time::Duration::seconds(120));
        assert_eq!(backoff(8), time::Duration::seconds(3600));
        assert_eq!(backoff(1000), time::Duration::seconds(3600));
        assert_eq!(backoff(0), time::Duration::seconds(30));
    }
}
