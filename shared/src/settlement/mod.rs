//! Settlement: what a verified payment or refund result does to the stored order.
//!
//! One path for every source — a notification, a query that catches up a missed one, a
//! refund answer — so the checks and transitions cannot drift apart. It sees the store's
//! ports, the merchant's identity and an outbox port; it never knows whether it runs behind
//! HTTP, Lambda or a test, nor which database holds the rows.

mod backend;
mod refund;

use std::time::Duration;

use crate::api::Transaction;
use crate::outbox::{Dispatch, LEASE_SECS};
use crate::store::{
    OrderStatus, PaidOutcome, PaidTransition, PaymentLog, PaymentStore, RefundMismatch, StoreError,
};
use crate::util::{now_utc, parse_wechat_time};

/// Who we are to WeChat Pay: a transaction for another merchant or app is not ours.
#[derive(Debug, Clone, Copy)]
pub struct Merchant<'a> {
    pub mchid: &'a str,
    pub appid: &'a str,
}

/// Why a verified transaction does not match the order it names.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PaymentMismatch {
    #[error("transaction has no {0}")]
    Missing(&'static str),
    #[error("mchid {0} is not this merchant")]
    Merchant(String),
    #[error("appid {0} is not this app")]
    App(String),
    #[error("amount.total {got} does not match the order amount {expected}")]
    Amount { expected: i64, got: i64 },
    #[error("no order {0} in the store")]
    UnknownOrder(String),
    #[error(transparent)]
    Refund(#[from] RefundMismatch),
}

#[derive(Debug)]
pub enum PaymentRecord {
    /// This call made the `unpaid → paid` transition.
    Recorded,
    /// Someone already had.
    Duplicate,
    /// Not a successful payment (`trade_state` other than `SUCCESS`): logged, nothing changed.
    NotPaid,
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Mismatch(#[from] PaymentMismatch),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The settlement of one merchant's payments against one store.
pub struct Settlement<'a> {
    store: &'a dyn PaymentStore,
    merchant: Merchant<'a>,
    outbox: &'a dyn Dispatch,
}

impl<'a> Settlement<'a> {
    pub fn new(
        store: &'a dyn PaymentStore,
        merchant: Merchant<'a>,
        outbox: &'a dyn Dispatch,
    ) -> Self {
        Settlement {
            store,
            merchant,
            outbox,
        }
    }

    /// Records a verified transaction reported by `source` (`callback`, `query`).
    ///
    /// A payment (`trade_state` `SUCCESS`, or `REFUND` once refunded) is checked against
    /// the stored order and moves it to `paid` exactly once, with its log row and its outbox
    /// row in one transaction; the backend is then told within `budget`. A mismatch changes
    /// nothing, is logged loudly and written to `payment_logs` as `MISMATCH`. Any other
    /// `trade_state` is only logged.
    pub async fn record_transaction(
        &self,
        tx: &Transaction,
        source: &str,
        event_type: &str,
        budget: Duration,
    ) -> Result<PaymentRecord, SettleError> {
        if !money_moved(tx.trade_state.as_deref()) {
            let log = PaymentLog {
                log_type: source.into(),
                out_trade_no: tx.out_trade_no.clone(),
                transaction_id: tx.transaction_id.clone(),
                event_type: Some(event_type.into()),
                detail: Some(serde_json::json!({ "trade_state": tx.trade_state }).to_string()),
                ..Default::default()
            };
            self.store.insert_log(&log, now_utc()).await?;
            return Ok(PaymentRecord::NotPaid);
        }
        match self.record_payment(tx, source, budget).await {
            Err(SettleError::Mismatch(m)) => {
                self.log_mismatch(tx, source, &m).await;
                Err(m.into())
            }
            other => other,
        }
    }

    /// Loud and recorded: the order stays unpaid while an operator looks.
    async fn log_mismatch(&self, tx: &Transaction, source: &str, m: &PaymentMismatch) {
        tracing::error!(out_trade_no = ?tx.out_trade_no, transaction_id = ?tx.transaction_id, source, "PAYMENT MISMATCH, order not marked paid: {m}");
        let log = PaymentLog {
            log_type: source.into(),
            out_trade_no: tx.out_trade_no.clone(),
            transaction_id: tx.transaction_id.clone(),
            openid: tx.payer.as_ref().and_then(|p| p.openid.clone()),
            event_type: Some("MISMATCH".into()),
            amount_total: tx.amount.as_ref().and_then(|a| a.total),
            detail: Some(serde_json::json!({ "problem": m.to_string() }).to_string()),
            ..Default::default()
        };
        if let Err(e) = self.store.insert_log(&log, now_utc()).await {
            tracing::error!("mismatch log not written: {e}");
        }
    }

    fn check_identity(&self, tx: &Transaction) -> Result<(), PaymentMismatch> {
        let mchid = tx
            .mchid
            .as_deref()
            .ok_or(PaymentMismatch::Missing("mchid"))?;
        if mchid != self.merchant.mchid {
            return Err(PaymentMismatch::Merchant(mchid.into()));
        }
        let appid = tx
            .appid
            .as_deref()
            .ok_or(PaymentMismatch::Missing("appid"))?;
        if appid != self.merchant.appid {
            return Err(PaymentMismatch::App(appid.into()));
        }
        Ok(())
    }

    async fn record_payment(
        &self,
        tx: &Transaction,
        source: &str,
        budget: Duration,
    ) -> Result<PaymentRecord, SettleError> {
        let out_trade_no = tx
            .out_trade_no
            .as_deref()
            .ok_or(PaymentMismatch::Missing("out_trade_no"))?;
        let transaction_id = tx
            .transaction_id
            .as_deref()
            .ok_or(PaymentMismatch::Missing("transaction_id"))?;
        self.check_identity(tx)?;
        let total = tx
            .amount
            .as_ref()
            .and_then(|a| a.total)
            .ok_or(PaymentMismatch::Missing("amount.total"))?;
        let order = self
            .store
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| PaymentMismatch::UnknownOrder(out_trade_no.into()))?;
        if total != order.amount {
            return Err(PaymentMismatch::Amount {
                expected: order.amount,
                got: total,
            }
            .into());
        }
        let payer_openid = tx.payer.as_ref().and_then(|p| p.openid.clone());
        let refunded = already_refunded(tx, source, out_trade_no, transaction_id, total);
        let status = if refunded.is_some() {
            OrderStatus::Refunded
        } else {
            OrderStatus::Paid
        };
        let now = now_utc();
        let paid_at = tx
            .success_time
            .as_deref()
            .and_then(parse_wechat_time)
            .unwrap_or(now);
        let transition = PaidTransition {
            out_trade_no: out_trade_no.into(),
            transaction_id: transaction_id.into(),
            payer_openid: payer_openid.clone(),
            paid_amount: total,
            paid_at,
            log: PaymentLog {
                log_type: source.into(),
                out_trade_no: Some(out_trade_no.into()),
                transaction_id: Some(transaction_id.into()),
                openid: payer_openid.clone(),
                package_type: order.package_type.clone(),
                generation_id: order.generation_id.clone(),
                event_type: Some("TRANSACTION.SUCCESS".into()),
                amount_total: Some(total),
                detail: None,
            },
            business_type: order.business_type.clone(),
            outbox_payload: backend::payment(&order, transaction_id, payer_openid, total, status),
            lease_secs: LEASE_SECS,
            refunded,
            now,
        };
        match self.store.mark_paid(&transition).await? {
            PaidOutcome::Transitioned { outbox } => {
                if status == OrderStatus::Refunded {
                    tracing::warn!(%out_trade_no, %transaction_id, source, "order paid and already refunded at WeChat Pay: recorded refunded");
                } else {
                    tracing::info!(%out_trade_no, %transaction_id, source, "order paid");
                }
                crate::metric::payment_recorded(total);
                self.outbox.deliver(outbox, budget).await;
                Ok(PaymentRecord::Recorded)
            }
            PaidOutcome::AlreadyPaid(order) => {
                if order.transaction_id.as_deref() != Some(transaction_id) {
                    tracing::error!(
                        %out_trade_no,
                        stored = ?order.transaction_id,
                        %transaction_id,
                        "order already paid under another transaction: check for a double payment"
                    );
                }
                Ok(PaymentRecord::Duplicate)
            }
            PaidOutcome::NotFound => Err(PaymentMismatch::UnknownOrder(out_trade_no.into()).into()),
        }
    }

    /// A verified event that is neither a payment nor a refund: kept so nothing is silently
    /// dropped.
    pub async fn record_other_event(
        &self,
        event_type: &str,
        id: Option<String>,
    ) -> Result<(), StoreError> {
        let log = PaymentLog {
            log_type: "callback".into(),
            event_type: Some(event_type.into()),
            detail: id.map(|id| serde_json::json!({ "id": id }).to_string()),
            ..Default::default()
        };
        self.store.insert_log(&log, now_utc()).await
    }
}

/// The second log row of a payment WeChat Pay reports already refunded (`trade_state`
/// `REFUND`): it was paid, and money went back before we heard of it. `None` for a
/// payment that stands.
fn already_refunded(
    tx: &Transaction,
    source: &str,
    out_trade_no: &str,
    transaction_id: &str,
    total: i64,
) -> Option<PaymentLog> {
    (tx.trade_state.as_deref() == Some("REFUND")).then(|| PaymentLog {
        log_type: source.into(),
        out_trade_no: Some(out_trade_no.into()),
        transaction_id: Some(transaction_id.into()),
        event_type: Some("TRANSACTION.REFUND".into()),
        amount_total: Some(total),
        detail: Some(
            serde_json::json!({
                "trade_state": "REFUND",
                "note": "refunded at WeChat Pay before the payment was recorded"
            })
            .to_string(),
        ),
        ..Default::default()
    })
}

/// Whether a transaction in this `trade_state` was paid (a refunded one was paid first).
fn money_moved(trade_state: Option<&str>) -> bool {
    matches!(trade_state, Some("SUCCESS") | Some("REFUND"))
}
