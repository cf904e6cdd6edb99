//! Deliveries to the business backend (contract §8). The order record never depends on them:
//! a paid order queues a row in `notify_outbox` in the same transaction, delivery is tried
//! right away within the notification's budget, and whatever fails waits with exponential
//! backoff for `wxpay_notify_retry` or a later notification.
//!
//! A row is leased before it is sent, so two instances never send it at the same time, and
//! a delivered row is never claimable again. The row a payment queues is written already
//! leased to the instance that recorded the payment, which hands it to [`Dispatch`] without
//! claiming it.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tracing::Instrument;

use crate::client::http_client;
use crate::config::Config;
use crate::store::{OutboxRow, OutboxStore, StoreError};

/// Longer than any delivery attempt (5 s), so a lease only expires if its holder died.
pub const LEASE_SECS: i64 = 30;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_BASE_SECS: i64 = 30;
const BACKOFF_CAP_SECS: i64 = 3600;

/// Logs a write that ends a delivery and did not land: the lease had passed to another
/// instance (whose result stands), or the store failed.
fn lease_write(row: &OutboxRow, what: &str, written: Result<bool, StoreError>) {
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            id = row.id,
            "{what} not recorded: the lease had passed to another instance"
        ),
        Err(e) => tracing::error!(id = row.id, "{what} not recorded: {e}"),
    }
}

/// When to try again after `attempts` failed tries: 30 s, 1 min, 2 min … capped at 1 h.
pub fn backoff(attempts: i64) -> time::Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let secs = BACKOFF_BASE_SECS
        .saturating_mul(1i64 << exp)
        .min(BACKOFF_CAP_SECS);
    time::Duration::seconds(secs)
}

/// The outbox port settlement sees: hand over a delivery queued leased to this instance.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Tries to deliver `row` within `budget`; on any failure it stays queued and its lease
    /// is released with the next try scheduled.
    async fn deliver(&self, row: OutboxRow, budget: Duration);
}

/// Delivers outbox rows to the business backend named by the configuration.
pub struct Courier<'a> {
    store: &'a dyn OutboxStore,
    config: &'a Config,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DeliveryReport {
    pub attempted: usize,
    pub delivered: usize,
    pub failed: usize,
}

impl<'a> Courier<'a> {
    pub fn new(store: &'a dyn OutboxStore, config: &'a Config) -> Self {
        Courier { store, config }
    }

    /// Posts one claimed row; records the outcome. Returns whether it was delivered. Its
    /// log lines name the row's order, whichever invocation sends it.
    async fn send(&self, row: &OutboxRow, timeout: Duration) -> bool {
        let span = crate::invocation::delivery_span(row.id, &row.out_trade_no);
        self.send_now(row, timeout).instrument(span).await
    }

    async fn send_now(&self, row: &OutboxRow, timeout: Duration) -> bool {
        if crate::planted::bug("delivered-before-answer") {
            lease_write(row, "delivery", self.store.mark_delivered(row).await);
        }
        let result = async {
            let base = self
                .config
                .backend_url_for(row.business_type.as_deref())
                .ok_or_else(|| "API_BASE_URL is not configured".to_string())?;
            let mut req = http_client()
                .post(format!("{base}/api/payment/internal/notify"))
                .timeout(crate::deadline::budget(timeout))
                .header("Content-Type", "application/json")
                .body(row.payload.clone());
            if let Some(secret) = &self.config.internal_secret {
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
        match result {
            Ok(()) => {
                // Not marked, the lease expires and the row is sent again later:
                // at-least-once, never lost.
                lease_write(row, "delivery", self.store.mark_delivered(row).await);
                tracing::info!("backend notified");
                true
            }
            Err(error) => {
                let retry_in = backoff(row.attempts).whole_seconds();
                tracing::warn!(
                    attempts = row.attempts,
                    retry_in_secs = retry_in,
                    "backend delivery failed, next try in {retry_in} s: {error}"
                );
                crate::metric::delivery_failed();
                let written = self.store.mark_delivery_failed(row, &error, retry_in).await;
                lease_write(row, "failure", written);
                false
            }
        }
    }

    /// Gives back the lease of a row claimed but not sent; its attempt is not counted.
    async fn release(&self, row: &OutboxRow) {
        if let Err(e) = self.store.release_unattempted(row).await {
            tracing::warn!(id = row.id, "outbox lease not released: {e}");
        }
    }

    /// Delivers up to `limit` due rows (`force`: every pending row) within `budget`.
    pub async fn deliver_due(&self, force: bool, limit: i64, budget: Duration) -> DeliveryReport {
        let started = Instant::now();
        let mut report = DeliveryReport::default();
        let rows = match self
            .store
            .claim_due_notifications(LEASE_SECS, limit, force)
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
                self.release(&row).await;
                continue;
            }
            report.attempted += 1;
            if self.send(&row, left.min(DELIVERY_TIMEOUT)).await {
                report.delivered += 1;
            } else {
                report.failed += 1;
            }
        }
        report
    }
}

#[async_trait]
impl Dispatch for Courier<'_> {
    async fn deliver(&self, row: OutboxRow, budget: Duration) {
        if budget < Duration::from_millis(200) {
            // Too late to try: give the lease back so the next sweep sends it, instead of
            // leaving it locked for LEASE_SECS.
            self.release(&row).await;
            return;
        }
        self.send(&row, budget.min(DELIVERY_TIMEOUT)).await;
    }
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
