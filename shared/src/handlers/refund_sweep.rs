//! The refund sweep, run by the scheduled `wxpay_notify_retry` (and by a trusted one with
//! `all`): a refund still `processing` `REFUND_RESOLVE_AFTER_SECS` after its amount was
//! reserved had its call die (the instance was killed or frozen, the answer and the lookup
//! after it failed) or its outcome lost. No notification will come for a refund WeChat Pay
//! never heard of, and no bill shows it, so the sweep asks WeChat Pay by `out_refund_no`:
//!
//! - found: its state is recorded as any answer's is, and an outcome is told to the backend;
//!   still `PROCESSING` there, the reservation is right and stays;
//! - not found (a signed 404 `RESOURCE_NOT_EXISTS`): the refund never reached WeChat Pay;
//!   it becomes `failed` and its amount is free again, loudly. The write is guarded by
//!   "still reserved before the sweep looked", so a retry that revived it meanwhile keeps it;
//! - anything else: nothing is known, and the amount stays reserved (fail closed).
//!
//! A caller may still retry a failed refund with the same `outRefundNo`: it is revived.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::ClientError;
use crate::state::App;
use crate::store::Refund;
use crate::util::now_utc;

/// Refunds looked at per run; the next run takes the rest.
const LIMIT: i64 = 50;
/// What one lookup may take, at most, before the run stops starting new ones.
const PER_REFUND: Duration = Duration::from_secs(3);
/// The backend delivery of an outcome found, tried at once; what fails waits in the outbox.
const DELIVERY_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Refunds past `REFUND_RESOLVE_AFTER_SECS` that were looked up.
    pub looked_at: usize,
    /// Found at WeChat Pay with an outcome, now recorded (and told).
    pub synced: usize,
    /// Not at WeChat Pay: marked failed, their amounts free again.
    pub failed: usize,
    /// Still processing at WeChat Pay, or not known: left reserved.
    pub left: usize,
}

enum Resolved {
    Synced,
    Failed,
    Left,
}

/// Resolves what it can of the refunds processing too long, within `budget`.
pub async fn resolve_stale_refunds(app: &App, budget: Duration) -> SweepReport {
    let started = Instant::now();
    let mut report = SweepReport::default();
    let after = time::Duration::try_from(app.config.refund_resolve_after)
        .unwrap_or(time::Duration::seconds(600));
    let before = now_utc() - after;
    let stale = match app.store.stale_refunds(before, LIMIT).await {
        Ok(stale) => stale,
        Err(e) => {
            tracing::warn!("refunds processing too long not readable: {e}");
            return report;
        }
    };
    for refund in stale {
        if started.elapsed() + PER_REFUND > budget {
            break;
        }
        report.looked_at += 1;
        match resolve(app, &refund, before).await {
            Resolved::Synced => report.synced += 1,
            Resolved::Failed => report.failed += 1,
            Resolved::Left => report.left += 1,
        }
    }
    report
}

async fn resolve(app: &App, refund: &Refund, before: time::OffsetDateTime) -> Resolved {
    let no = refund.out_refund_no.as_str();
    let order = refund.out_trade_no.as_str();
    match app.wechat.query_refund(no).await {
        Ok(info) if info.out_refund_no.as_deref() == Some(no) => {
            if let Some(id) = &info.refund_id {
                if let Err(e) = app.store.set_refund_id(no, id).await {
                    tracing::warn!(out_refund_no = %no, "refund id not written: {e}");
                }
            }
            let courier = app.courier();
            let recorded = app
                .settlement(&courier)
                .record_refund(&info, "refund_sweep", None, DELIVERY_BUDGET)
                .await;
            match recorded {
                Ok(Some(true)) => {
                    tracing::info!(out_refund_no = %no, out_trade_no = %order, "refund processing too long: WeChat Pay had it, outcome recorded");
                    Resolved::Synced
                }
                Ok(_) => Resolved::Left,
                // A mismatch is logged loudly and recorded by settlement; the amount stays.
                Err(e) => {
                    tracing::warn!(out_refund_no = %no, "refund found at WeChat Pay but not recorded: {e}");
                    Resolved::Left
                }
            }
        }
        Ok(_) => {
            tracing::warn!(out_refund_no = %no, "WeChat Pay answered about another refund; left reserved");
            Resolved::Left
        }
        Err(ClientError::Api {
            status: 404,
            code,
            verified: true,
            ..
        }) if code == "RESOURCE_NOT_EXISTS" => {
            match app.store.fail_stale_refund(no, before).await {
                Ok(true) => {
                    tracing::warn!(
                        out_refund_no = %no,
                        out_trade_no = %order,
                        amount = refund.amount,
                        "refund {no} of order {order} never reached WeChat Pay: marked failed, its {} fen are free again (a retry with the same outRefundNo revives it)",
                        refund.amount
                    );
                    Resolved::Failed
                }
                Ok(false) => Resolved::Left,
                Err(e) => {
                    tracing::warn!(out_refund_no = %no, "refund not found at WeChat Pay, but not marked failed: {e}");
                    Resolved::Left
                }
            }
        }
        Err(e) => {
            tracing::warn!(out_refund_no = %no, "refund processing too long, its state unknown ({e}): left reserved");
            Resolved::Left
        }
    }
}
