//! One bill row against what the store holds for it: repaired, flagged or fine.

use time::PrimitiveDateTime;

use super::{beijing, Finding, Reconciler, DELIVERY_BUDGET};
use crate::api::{Payer, RefundAmount, RefundInfo, Transaction, TransactionAmount};
use crate::settlement::{PaymentRecord, SettleError};
use crate::store::{Order, Refund, RefundStatus};
use crate::tradebill::BillRow;

impl Reconciler<'_> {
    /// A payment row of this app, with its order when we have one.
    pub(super) async fn payment(
        &self,
        row: &BillRow,
        order: Option<&Order>,
        refunded: bool,
        dry_run: bool,
    ) -> Result<Option<Finding>, SettleError> {
        if row.trade_state != "SUCCESS" {
            return Ok(None);
        }
        let no = row.out_trade_no.as_str();
        let Some(order) = order else {
            let detail = format!(
                "in the bill (transaction {}) but not in orders",
                row.transaction_id
            );
            return Ok(Some(flag("unknown_order", no, "", detail)));
        };
        if row.mchid != self.mchid {
            let detail = format!("bill mchid {} is not this merchant", row.mchid);
            return Ok(Some(flag("mchid_mismatch", no, "", detail)));
        }
        if row.total != order.amount {
            let detail = format!(
                "bill says {} fen, the order is {} fen; nothing changed",
                row.total, order.amount
            );
            return Ok(Some(flag("amount_mismatch", no, "", detail)));
        }
        if !order.status.is_unpaid() {
            if order.transaction_id.as_deref() != Some(row.transaction_id.as_str()) {
                let detail = format!(
                    "bill transaction {} but paid here as {}",
                    row.transaction_id,
                    order.transaction_id.as_deref().unwrap_or("-")
                );
                return Ok(Some(flag("transaction_mismatch", no, "", detail)));
            }
            return Ok(None);
        }
        let detail = format!(
            "paid at WeChat Pay ({}, transaction {}) but {} here",
            row.trade_time,
            row.transaction_id,
            order.status.as_str()
        );
        if dry_run {
            return Ok(Some(flag("repaired_payment", no, "", detail)));
        }
        let mut tx = transaction(row);
        if refunded {
            tx.trade_state = Some("REFUND".into());
        }
        let record = self
            .settlement
            .record_transaction(&tx, "reconcile", "TRANSACTION.SUCCESS", DELIVERY_BUDGET)
            .await;
        match record {
            Ok(record) => {
                let mut f = flag("repaired_payment", no, "", detail);
                f.repaired = matches!(record, PaymentRecord::Recorded);
                Ok(Some(f))
            }
            Err(SettleError::Mismatch(m)) => {
                Ok(Some(flag("payment_mismatch", no, "", m.to_string())))
            }
            Err(e) => Err(e),
        }
    }

    /// A REFUND row of this app. Its 订单金额 is `0.00`, so the order total comes from our
    /// order; 申请退款金额 is what we asked for and 退款金额 what settled (less with a coupon).
    pub(super) async fn refund(
        &self,
        row: &BillRow,
        refund: Option<&Refund>,
        order: Option<&Order>,
        dry_run: bool,
    ) -> Result<Option<Finding>, SettleError> {
        let Some(refund_no) = row.out_refund_no.as_deref() else {
            return Ok(None);
        };
        let no = row.out_trade_no.as_str();
        let Some(refund) = refund else {
            let detail = format!(
                "WeChat Pay refunded {} fen (asked {}, {}) that we never recorded",
                row.refund,
                row.refund_applied,
                row.refund_status.as_deref().unwrap_or("-")
            );
            return Ok(Some(flag("unknown_refund", no, refund_no, detail)));
        };
        let order = order.filter(|o| o.out_trade_no == refund.out_trade_no);
        let (Some(order), true) = (
            order,
            refund.out_trade_no == row.out_trade_no && refund.amount == row.refund_applied,
        ) else {
            let detail = format!(
                "bill: {} fen asked ({} settled) of {}; here: {} fen of {}; nothing changed",
                row.refund_applied,
                row.refund,
                row.out_trade_no,
                refund.amount,
                refund.out_trade_no
            );
            return Ok(Some(flag("refund_mismatch", no, refund_no, detail)));
        };
        // The bill is a snapshot taken when it was made: a refund it shows PROCESSING may
        // have finished since, so only SUCCESS is acted on.
        if row.refund_status.as_deref() != Some("SUCCESS") {
            return Ok(None);
        }
        match refund.status {
            RefundStatus::Success => Ok(None),
            RefundStatus::Processing | RefundStatus::Abnormal => {
                let detail = format!(
                    "SUCCESS at WeChat Pay ({} fen settled), {} here",
                    row.refund,
                    refund.status.as_str()
                );
                let mut f = flag("synced_refund", no, refund_no, detail);
                if !dry_run {
                    let info = refund_info(row, self.mchid, order);
                    match self
                        .settlement
                        .record_refund(&info, "reconcile", None, DELIVERY_BUDGET)
                        .await
                    {
                        Ok(changed) => f.repaired = changed == Some(true),
                        Err(SettleError::Mismatch(m)) => {
                            f = flag("refund_mismatch", no, refund_no, m.to_string());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some(f))
            }
            other => {
                let detail = format!("SUCCESS at WeChat Pay, {} here", other.as_str());
                Ok(Some(flag("refund_status_mismatch", no, refund_no, detail)))
            }
        }
    }
}

pub(super) fn flag(
    kind: &'static str,
    out_trade_no: &str,
    out_refund_no: &str,
    detail: String,
) -> Finding {
    Finding {
        kind,
        out_trade_no: out_trade_no.to_string(),
        out_refund_no: out_refund_no.to_string(),
        detail,
        repaired: false,
        known: false,
    }
}

/// `2024-05-01 10:00:00` (Beijing) as WeChat Pay's RFC 3339.
pub(super) fn bill_time_rfc3339(text: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = PrimitiveDateTime::parse(text, format).ok()?;
    t.assume_offset(beijing())
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The transaction the bill row vouches for, as a query would have answered it.
fn transaction(row: &BillRow) -> Transaction {
    Transaction {
        appid: Some(row.appid.clone()),
        mchid: Some(row.mchid.clone()),
        out_trade_no: Some(row.out_trade_no.clone()),
        transaction_id: Some(row.transaction_id.clone()),
        trade_state: Some("SUCCESS".into()),
        success_time: bill_time_rfc3339(&row.trade_time),
        payer: row.payer_openid.clone().map(|openid| Payer {
            openid: Some(openid),
        }),
        amount: Some(TransactionAmount {
            total: Some(row.total),
            currency: Some("CNY".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The refund result the bill row vouches for. `amount.refund` is what we asked for (the
/// refund's own amount, which settlement checks), `amount.total` our order's total: a REFUND
/// row prints `0.00` as its order amount.
fn refund_info(row: &BillRow, mchid: &str, order: &Order) -> RefundInfo {
    RefundInfo {
        mchid: Some(mchid.to_string()),
        refund_id: row.refund_id.clone(),
        out_refund_no: row.out_refund_no.clone(),
        transaction_id: Some(row.transaction_id.clone()),
        out_trade_no: Some(row.out_trade_no.clone()),
        status: Some("SUCCESS".into()),
        amount: Some(RefundAmount {
            refund: Some(row.refund_applied),
            total: Some(order.amount),
            ..Default::default()
        }),
        ..Default::default()
    }
}
