//! WeChat Pay notifications (`TRANSACTION.*`, `REFUND.*`): verify the raw body, decrypt the
//! resource, check it against the stored order, record it exactly once, tell the backend.
//!
//! Nothing here answers 2xx unless the notification was verified *and* stored; every other
//! outcome is a 4xx/5xx that WeChat Pay will retry.

use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::api::{NotificationBody, RefundInfo, Transaction};
use crate::certs::{SignatureHeaders, VerifyError};
use crate::formats::FormatError;
use crate::state::App;
use crate::store::{
    Order, PaidOutcome, PaidTransition, PaymentLog, RefundResult, RefundStatus, StoreError,
};
use crate::util::{now_utc, parse_wechat_time};

/// WeChat Pay waits 5 s for an answer; keep a margin for the answer itself.
const NOTIFY_BUDGET: Duration = Duration::from_millis(4500);

/// How a notification is answered: 204 with no body, or a status with a FAIL message.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyAnswer {
    pub status: u16,
    pub message: Option<String>,
}

impl NotifyAnswer {
    pub fn handled() -> Self {
        NotifyAnswer {
            status: 204,
            message: None,
        }
    }
    pub fn fail(status: u16, message: impl Into<String>) -> Self {
        NotifyAnswer {
            status,
            message: Some(message.into()),
        }
    }
}

fn verify_failure(e: &VerifyError) -> NotifyAnswer {
    let status = match e {
        VerifyError::CertificatesUnavailable(_) => 503,
        VerifyError::Probe => 400,
        _ => 401,
    };
    NotifyAnswer::fail(status, format!("notification rejected: {e}"))
}

fn store_failure(e: &StoreError) -> NotifyAnswer {
    tracing::error!("notification not stored, WeChat Pay will retry: {e}");
    NotifyAnswer::fail(500, "could not record the notification; retry later")
}

pub async fn handle(app: &App, headers: &HeaderMap, body: &[u8]) -> NotifyAnswer {
    let started = Instant::now();
    let sig = match SignatureHeaders::from_headers(headers) {
        Ok(s) => s,
        Err(e) => return verify_failure(&e),
    };
    if let Err(e) = app
        .wechat
        .platform_keys()
        .verify(&sig, body, &app.wechat)
        .await
    {
        tracing::warn!(serial = %sig.serial, "notification failed verification: {e}");
        return verify_failure(&e);
    }
    let notification: NotificationBody = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => return NotifyAnswer::fail(400, format!("notification body not understood: {e}")),
    };
    let event_type = notification.event_type.clone();
    let answer = if event_type.starts_with("TRANSACTION.") {
        match decrypt::<Transaction>(app, &notification) {
            Ok(tx) => match tx.check_format() {
                Ok(()) => payment(app, &event_type, tx, started).await,
                Err(e) => {
                    let no = tx.out_trade_no.as_deref();
                    out_of_format(app, "PAYMENT MISMATCH", &event_type, no, e).await
                }
            },
            Err(a) => a,
        }
    } else if event_type.starts_with("REFUND.") {
        match decrypt::<RefundInfo>(app, &notification) {
            Ok(r) => match r.check_format() {
                Ok(()) => refund(app, &event_type, r).await,
                Err(e) => {
                    let no = r.out_trade_no.as_deref();
                    out_of_format(app, "REFUND MISMATCH", &event_type, no, e).await
                }
            },
            Err(a) => a,
        }
    } else {
        // Verified but not ours to act on: record it so nothing is silently dropped.
        let log = PaymentLog {
            log_type: "callback".into(),
            event_type: Some(event_type.clone()),
            detail: notification
                .id
                .map(|id| serde_json::json!({ "id": id }).to_string()),
            ..Default::default()
        };
        match app.store.insert_log(&log, now_utc()).await {
            Ok(()) => NotifyAnswer::handled(),
            Err(e) => store_failure(&e),
        }
    };
    // Spare time goes to deliveries earlier notifications could not finish.
    if answer.status < 300 {
        let remaining = NOTIFY_BUDGET.saturating_sub(started.elapsed());
        if remaining > Duration::from_millis(1500) && app.outbox_sweep_due() {
            crate::outbox::deliver_due(app, false, 5, remaining - Duration::from_millis(500)).await;
        }
    }
    answer
}

/// A verified resource with a field outside WeChat Pay's documented format: logged,
/// recorded without the offending value (it may not fit a column), not applied, and
/// answered 400 so WeChat Pay keeps the notification while an operator looks.
async fn out_of_format(
    app: &App,
    alarm: &str,
    event_type: &str,
    out_trade_no: Option<&str>,
    e: FormatError,
) -> NotifyAnswer {
    tracing::error!(event_type, "{alarm}, notification not applied: {e}");
    let log = PaymentLog {
        log_type: "callback".into(),
        out_trade_no: out_trade_no
            .filter(|no| crate::util::is_valid_reference(no))
            .map(str::to_string),
        event_type: Some("MISMATCH".into()),
        detail: Some(
            serde_json::json!({ "event_type": event_type, "problem": e.to_string() }).to_string(),
        ),
        ..Default::default()
    };
    if let Err(se) = app.store.insert_log(&log, now_utc()).await {
        tracing::error!("mismatch log not written: {se}");
    }
    NotifyAnswer::fail(400, format!("notification resource out of format: {e}"))
}

fn decrypt<T: DeserializeOwned>(app: &App, n: &NotificationBody) -> Result<T, NotifyAnswer> {
    let r = &n.resource;
    if r.algorithm != "AEAD_AES_256_GCM" {
        return Err(NotifyAnswer::fail(
            400,
            format!("unsupported resource algorithm {}", r.algorithm),
        ));
    }
    let plain = app
        .config
        .apiv3_key
        .decrypt(
            &r.nonce,
            r.associated_data.as_deref().unwrap_or(""),
            &r.ciphertext,
        )
        .map_err(|e| {
            tracing::error!("notification resource not decryptable (check WECHAT_APIV3_KEY): {e}");
            NotifyAnswer::fail(400, "resource could not be decrypted")
        })?;
    serde_json::from_slice(&plain)
        .map_err(|e| NotifyAnswer::fail(400, format!("decrypted resource not understood: {e}")))
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
}

#[derive(Debug)]
pub enum PaymentRecord {
    /// This call made the `pending → paid` transition.
    Recorded(Order),
    /// Someone already had.
    Duplicate(Order),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Mismatch(#[from] PaymentMismatch),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a verified, successful transaction against the stored order and performs the
/// `pending → paid` transition once (with its log and outbox rows), then tries to deliver
/// to the backend within `budget`. Shared by the payment notification and the query sync.
pub async fn record_payment(
    app: &App,
    tx: &Transaction,
    source: &str,
    budget: Duration,
) -> Result<PaymentRecord, RecordError> {
    let out_trade_no = tx
        .out_trade_no
        .as_deref()
        .ok_or(PaymentMismatch::Missing("out_trade_no"))?;
    let transaction_id = tx
        .transaction_id
        .as_deref()
        .ok_or(PaymentMismatch::Missing("transaction_id"))?;
    let mchid = tx
        .mchid
        .as_deref()
        .ok_or(PaymentMismatch::Missing("mchid"))?;
    if mchid != app.config.mchid {
        return Err(PaymentMismatch::Merchant(mchid.into()).into());
    }
    let appid = tx
        .appid
        .as_deref()
        .ok_or(PaymentMismatch::Missing("appid"))?;
    if appid != app.config.appid {
        return Err(PaymentMismatch::App(appid.into()).into());
    }
    let total = tx
        .amount
        .as_ref()
        .and_then(|a| a.total)
        .ok_or(PaymentMismatch::Missing("amount.total"))?;
    let order = app
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
    let now = now_utc();
    let paid_at = tx
        .success_time
        .as_deref()
        .and_then(parse_wechat_time)
        .unwrap_or(now);
    let payload = serde_json::json!({
        "outTradeNo": order.out_trade_no,
        "transactionId": transaction_id,
        "status": "paid",
        "packageType": order.package_type,
        "generationId": order.generation_id,
        "openid": order.openid.clone().or(payer_openid.clone()),
        "userId": order.user_id,
        "businessType": order.business_type,
        "businessId": order.business_id,
        "amount": total,
    });
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
            openid: payer_openid,
            package_type: order.package_type.clone(),
            generation_id: order.generation_id.clone(),
            event_type: Some("TRANSACTION.SUCCESS".into()),
            amount_total: Some(total),
            detail: None,
        },
        outbox_payload: payload.to_string(),
        now,
    };
    match app.store.mark_paid(&transition).await? {
        PaidOutcome::Transitioned { order, outbox_id } => {
            tracing::info!(%out_trade_no, %transaction_id, source, "order paid");
            crate::outbox::deliver_now(app, outbox_id, budget).await;
            Ok(PaymentRecord::Recorded(order))
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
            Ok(PaymentRecord::Duplicate(order))
        }
        PaidOutcome::NotFound => Err(PaymentMismatch::UnknownOrder(out_trade_no.into()).into()),
    }
}

async fn payment(app: &App, event_type: &str, tx: Transaction, started: Instant) -> NotifyAnswer {
    if tx.trade_state.as_deref() != Some("SUCCESS") {
        // Only successful payments change an order; anything else is kept for operators.
        let log = PaymentLog {
            log_type: "callback".into(),
            out_trade_no: tx.out_trade_no.clone(),
            transaction_id: tx.transaction_id.clone(),
            event_type: Some(event_type.into()),
            detail: Some(serde_json::json!({ "trade_state": tx.trade_state }).to_string()),
            ..Default::default()
        };
        return match app.store.insert_log(&log, now_utc()).await {
            Ok(()) => NotifyAnswer::handled(),
            Err(e) => store_failure(&e),
        };
    }
    let budget = NOTIFY_BUDGET.saturating_sub(started.elapsed());
    match record_payment(app, &tx, "callback", budget).await {
        Ok(_) => NotifyAnswer::handled(),
        Err(RecordError::Store(e)) => store_failure(&e),
        Err(RecordError::Mismatch(m)) => {
            // Loud, recorded, and not acknowledged: WeChat Pay keeps retrying (visible in
            // its merchant portal) while an operator looks, and the order stays unpaid.
            tracing::error!(out_trade_no = ?tx.out_trade_no, transaction_id = ?tx.transaction_id, "PAYMENT MISMATCH, order not marked paid: {m}");
            let log = PaymentLog {
                log_type: "callback".into(),
                out_trade_no: tx.out_trade_no.clone(),
                transaction_id: tx.transaction_id.clone(),
                openid: tx.payer.as_ref().and_then(|p| p.openid.clone()),
                event_type: Some("MISMATCH".into()),
                amount_total: tx.amount.as_ref().and_then(|a| a.total),
                detail: Some(serde_json::json!({ "problem": m.to_string() }).to_string()),
                ..Default::default()
            };
            if let Err(e) = app.store.insert_log(&log, now_utc()).await {
                tracing::error!("mismatch log not written: {e}");
            }
            let status = if matches!(m, PaymentMismatch::UnknownOrder(_)) {
                404
            } else {
                409
            };
            NotifyAnswer::fail(status, format!("payment does not match the order: {m}"))
        }
    }
}

fn refund_status(s: Option<&str>) -> Option<RefundStatus> {
    match s? {
        "SUCCESS" => Some(RefundStatus::Success),
        "CLOSED" => Some(RefundStatus::Closed),
        "ABNORMAL" => Some(RefundStatus::Abnormal),
        _ => None,
    }
}

/// Records a refund's final state from a verified notification or query.
pub async fn record_refund(
    app: &App,
    info: &RefundInfo,
    source: &str,
    event_type: Option<&str>,
) -> Result<Option<bool>, RecordError> {
    if let Some(m) = info.mchid.as_deref() {
        if m != app.config.mchid {
            return Err(PaymentMismatch::Merchant(m.into()).into());
        }
    }
    let Some(status) = refund_status(info.state()) else {
        // Still processing: nothing final to record.
        return Ok(None);
    };
    let out_refund_no = info
        .out_refund_no
        .clone()
        .ok_or(PaymentMismatch::Missing("out_refund_no"))?;
    let out_trade_no = info
        .out_trade_no
        .clone()
        .ok_or(PaymentMismatch::Missing("out_trade_no"))?;
    let amount = info
        .amount
        .as_ref()
        .and_then(|a| a.refund)
        .ok_or(PaymentMismatch::Missing("amount.refund"))?;
    let now = now_utc();
    let result = RefundResult {
        out_refund_no: out_refund_no.clone(),
        out_trade_no: out_trade_no.clone(),
        refund_id: info.refund_id.clone(),
        amount,
        status,
        success_at: info.success_time.as_deref().and_then(parse_wechat_time),
        log: PaymentLog {
            log_type: source.into(),
            out_trade_no: Some(out_trade_no),
            transaction_id: info.transaction_id.clone(),
            event_type: event_type
                .map(str::to_string)
                .or_else(|| Some(format!("REFUND.{}", status.as_str().to_ascii_uppercase()))),
            amount_total: Some(amount),
            detail: Some(
                serde_json::json!({ "out_refund_no": out_refund_no, "refund_id": info.refund_id })
                    .to_string(),
            ),
            ..Default::default()
        },
        now,
    };
    Ok(Some(app.store.finish_refund(&result).await?))
}

async fn refund(app: &App, event_type: &str, info: RefundInfo) -> NotifyAnswer {
    match record_refund(app, &info, "refund_callback", Some(event_type)).await {
        Ok(Some(changed)) => {
            tracing::info!(out_refund_no = ?info.out_refund_no, event_type, changed, "refund notification recorded");
            NotifyAnswer::handled()
        }
        Ok(None) => NotifyAnswer::fail(400, "refund notification carries no final refund_status"),
        Err(RecordError::Store(e)) => store_failure(&e),
        Err(RecordError::Mismatch(m)) => {
            tracing::error!(out_refund_no = ?info.out_refund_no, "REFUND NOTIFICATION MISMATCH: {m}");
            NotifyAnswer::fail(409, format!("refund does not match: {m}"))
        }
    }
}
