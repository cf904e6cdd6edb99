//! Refund outcomes: what a verified refund result does to the stored refund and order, and
//! the `refund` event the backend is told once per outcome recorded.

use std::time::Duration;

use super::{backend, PaymentMismatch, SettleError, Settlement};
use crate::api::RefundInfo;
use crate::outbox::LEASE_SECS;
use crate::store::{PaymentLog, RefundDelivery, RefundOutcome, RefundResult, RefundStatus};
use crate::util::{now_utc, parse_wechat_time};

impl Settlement<'_> {
    /// Records a refund's final state from a verified notification (`refund_callback`) or
    /// WeChat Pay answer (`refund`). `Ok(None)`: not final yet, nothing to record;
    /// `Ok(Some(changed))` otherwise. A result that does not match the refund and order we
    /// hold (see [`crate::store::rules::check_result`]) changes nothing, is logged
    /// `REFUND MISMATCH` and written to `payment_logs` as `MISMATCH`.
    ///
    /// An outcome recorded is told to the backend (a `refund` event, contract §8), queued
    /// with it so each outcome is delivered once, and tried within `budget`.
    pub async fn record_refund(
        &self,
        info: &RefundInfo,
        source: &str,
        event_type: Option<&str>,
        budget: Duration,
    ) -> Result<Option<bool>, SettleError> {
        let mismatch = match self.refund_result(info, source, event_type) {
            Ok(None) => return Ok(None),
            Ok(Some(result)) => {
                let finished = self.store.finish_refund_queued(&result).await?;
                match finished.outcome {
                    RefundOutcome::Applied => {
                        if result.status == RefundStatus::Success {
                            crate::metric::refund_succeeded();
                        }
                        if let Some(row) = finished.outbox {
                            self.outbox.deliver(row, budget).await;
                        }
                        return Ok(Some(true));
                    }
                    RefundOutcome::Unchanged => return Ok(Some(false)),
                    RefundOutcome::Mismatch(m) => PaymentMismatch::Refund(m),
                }
            }
            Err(m) => m,
        };
        tracing::error!(out_refund_no = ?info.out_refund_no, out_trade_no = ?info.out_trade_no, source, "REFUND MISMATCH, refund not applied: {mismatch}");
        let log = PaymentLog {
            log_type: source.into(),
            out_trade_no: info.out_trade_no.clone(),
            transaction_id: info.transaction_id.clone(),
            event_type: Some("MISMATCH".into()),
            amount_total: info.amount.as_ref().and_then(|a| a.refund),
            detail: Some(
                serde_json::json!({ "problem": mismatch.to_string(), "out_refund_no": info.out_refund_no })
                    .to_string(),
            ),
            ..Default::default()
        };
        if let Err(e) = self.store.insert_log(&log, now_utc()).await {
            tracing::error!("mismatch log not written: {e}");
        }
        Err(mismatch.into())
    }

    /// The result to record, once the fields every refund result needs are there and it is
    /// this merchant's.
    fn refund_result(
        &self,
        info: &RefundInfo,
        source: &str,
        event_type: Option<&str>,
    ) -> Result<Option<RefundResult>, PaymentMismatch> {
        if let Some(m) = info.mchid.as_deref() {
            if m != self.merchant.mchid {
                return Err(PaymentMismatch::Merchant(m.into()));
            }
        }
        let Some(status) = final_refund_status(info.state()) else {
            return Ok(None);
        };
        let missing = PaymentMismatch::Missing;
        let out_refund_no = info.out_refund_no.clone().ok_or(missing("out_refund_no"))?;
        let out_trade_no = info.out_trade_no.clone().ok_or(missing("out_trade_no"))?;
        let amount = info.amount.as_ref();
        let refund = amount
            .and_then(|a| a.refund)
            .ok_or(missing("amount.refund"))?;
        let total = amount
            .and_then(|a| a.total)
            .ok_or(missing("amount.total"))?;
        let now = now_utc();
        Ok(Some(RefundResult {
            out_refund_no: out_refund_no.clone(),
            out_trade_no: out_trade_no.clone(),
            transaction_id: info.transaction_id.clone(),
            refund_id: info.refund_id.clone(),
            amount: refund,
            order_total: total,
            status,
            success_at: info.success_time.as_deref().and_then(parse_wechat_time),
            log: PaymentLog {
                log_type: source.into(),
                out_trade_no: Some(out_trade_no),
                transaction_id: info.transaction_id.clone(),
                event_type: event_type
                    .map(str::to_string)
                    .or_else(|| Some(format!("REFUND.{}", status.as_str().to_ascii_uppercase()))),
                amount_total: Some(refund),
                detail: Some(
                    serde_json::json!({ "out_refund_no": out_refund_no, "refund_id": info.refund_id })
                        .to_string(),
                ),
                ..Default::default()
            },
            delivery: Some(RefundDelivery {
                payload: backend::refund,
                lease_secs: LEASE_SECS,
            }),
            now,
        }))
    }
}

/// WeChat Pay's final refund states; `PROCESSING` (or anything unknown) is not final.
fn final_refund_status(s: Option<&str>) -> Option<RefundStatus> {
    match s? {
        "SUCCESS" => Some(RefundStatus::Success),
        "CLOSED" => Some(RefundStatus::Closed),
        "ABNORMAL" => Some(RefundStatus::Abnormal),
        _ => None,
    }
}
