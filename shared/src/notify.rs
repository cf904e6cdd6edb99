//! WeChat Pay notifications (`TRANSACTION.*`, `REFUND.*`): verify the raw body, decrypt the
//! resource, hand it to [`crate::settlement`], and answer WeChat Pay.
//!
//! Nothing here answers 2xx unless the notification was verified *and* settled; every other
//! outcome is a 4xx/5xx that WeChat Pay will retry.

use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::api::{NotificationBody, RefundInfo, Transaction};
pub use crate::call::NotifyAnswer;
use crate::certs::{SignatureHeaders, VerifyError};
use crate::formats::FormatError;
use crate::invocation;
use crate::settlement::{PaymentMismatch, SettleError};
use crate::state::App;
use crate::store::{PaymentLog, RefundMismatch, StoreError};
use crate::util::now_utc;

/// WeChat Pay waits 5 s for an answer; keep a margin for the answer itself. The runtime
/// also holds the whole notification to [`crate::deadline::NOTIFICATION`].
const NOTIFY_BUDGET: Duration = Duration::from_millis(4500);

fn budget_left(started: Instant) -> Duration {
    crate::deadline::budget(NOTIFY_BUDGET.saturating_sub(started.elapsed()))
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
    let courier = app.courier();
    let settlement = app.settlement(&courier);
    let event_type = notification.event_type.clone();
    invocation::record_event_type(&event_type);
    let answer = if event_type.starts_with("TRANSACTION.") {
        match decrypt::<Transaction>(app, &notification) {
            Ok(tx) => match tx.check_format() {
                Err(e) => {
                    let no = tx.out_trade_no.as_deref();
                    out_of_format(app, "PAYMENT MISMATCH", &event_type, no, e).await
                }
                Ok(()) => {
                    let budget = budget_left(started);
                    let settled = settlement
                        .record_transaction(&tx, "callback", &event_type, budget)
                        .await;
                    payment_answer(settled.map(|_| ()))
                }
            },
            Err(a) => a,
        }
    } else if event_type.starts_with("REFUND.") {
        match decrypt::<RefundInfo>(app, &notification) {
            Ok(info) => match info.check_notification_format() {
                Err(e) => {
                    let no = info.out_trade_no.as_deref();
                    out_of_format(app, "REFUND MISMATCH", &event_type, no, e).await
                }
                Ok(()) => {
                    let budget = budget_left(started);
                    let settled = settlement
                        .record_refund(&info, "refund_callback", Some(&event_type), budget)
                        .await;
                    refund_answer(&info, &event_type, settled)
                }
            },
            Err(a) => a,
        }
    } else {
        match settlement
            .record_other_event(&event_type, notification.id.clone())
            .await
        {
            Ok(()) => NotifyAnswer::handled(),
            Err(e) => store_failure(&e),
        }
    };
    // Spare time goes to deliveries earlier notifications could not finish.
    if answer.status < 300 {
        let remaining = budget_left(started);
        if remaining > Duration::from_millis(1500) && app.outbox_sweep_due() {
            courier
                .deliver_due(false, 5, remaining - Duration::from_millis(500))
                .await;
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

fn decrypt<T: DeserializeOwned + AboutOrder>(
    app: &App,
    n: &NotificationBody,
) -> Result<T, NotifyAnswer> {
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
    let resource: T = serde_json::from_slice(&plain)
        .map_err(|e| NotifyAnswer::fail(400, format!("decrypted resource not understood: {e}")))?;
    if let Some(no) = resource.out_trade_no() {
        invocation::record_out_trade_no(no);
    }
    Ok(resource)
}

/// The order a decrypted resource is about, for the invocation's log fields.
trait AboutOrder {
    fn out_trade_no(&self) -> Option<&str>;
}

impl AboutOrder for Transaction {
    fn out_trade_no(&self) -> Option<&str> {
        self.out_trade_no.as_deref()
    }
}

impl AboutOrder for RefundInfo {
    fn out_trade_no(&self) -> Option<&str> {
        self.out_trade_no.as_deref()
    }
}

/// A mismatch is not acknowledged: WeChat Pay keeps retrying (visible in its merchant
/// portal) while an operator looks, and the order stays unpaid.
fn payment_answer(settled: Result<(), SettleError>) -> NotifyAnswer {
    match settled {
        Ok(()) => NotifyAnswer::handled(),
        Err(SettleError::Store(e)) => store_failure(&e),
        Err(SettleError::Mismatch(m)) => NotifyAnswer::fail(
            mismatch_status(&m),
            format!("payment does not match the order: {m}"),
        ),
    }
}

/// 404 when the order is not ours at all, 409 when it is but the notification disagrees.
fn mismatch_status(m: &PaymentMismatch) -> u16 {
    match m {
        PaymentMismatch::UnknownOrder(_)
        | PaymentMismatch::Refund(RefundMismatch::UnknownOrder(_)) => 404,
        _ => 409,
    }
}

fn refund_answer(
    info: &RefundInfo,
    event_type: &str,
    settled: Result<Option<bool>, SettleError>,
) -> NotifyAnswer {
    match settled {
        Ok(Some(changed)) => {
            tracing::info!(
                out_refund_no = info.out_refund_no.as_deref().unwrap_or_default(),
                event_type,
                changed,
                "refund notification recorded"
            );
            NotifyAnswer::handled()
        }
        Ok(None) => NotifyAnswer::fail(400, "refund notification carries no final refund_status"),
        Err(SettleError::Store(e)) => store_failure(&e),
        // Logged and recorded by settlement; not acknowledged, so WeChat Pay keeps it.
        Err(SettleError::Mismatch(m)) => {
            NotifyAnswer::fail(mismatch_status(&m), format!("refund does not match: {m}"))
        }
    }
}
