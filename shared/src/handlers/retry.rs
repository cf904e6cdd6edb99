//! `wxpay_notify_retry`: trusted callers and schedules deliver what is due to the backend.
//! The scheduled run, and a trusted one with `all`, first resolves refunds processing too
//! long ([`super::refund_sweep`]), so the outcomes it finds go out in the same run.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::Call;
use crate::error::AppError;
use crate::state::App;

#[derive(Deserialize)]
struct RetryRequest {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<i64>,
}

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
    let refunds = if call.caller.scheduled || req.all {
        let budget = crate::deadline::budget(Duration::from_secs(10));
        Some(super::refund_sweep::resolve_stale_refunds(app, budget).await)
    } else {
        None
    };
    let report = app
        .courier()
        .deliver_due(
            req.all,
            limit,
            crate::deadline::budget(Duration::from_secs(25)),
        )
        .await;
    // What is left: an alarm watches it (contract §14).
    match app.store.oldest_pending_secs().await {
        Ok(age) => crate::metric::outbox_oldest_pending(age.unwrap_or(0)),
        Err(e) => tracing::warn!("outbox age not readable: {e}"),
    }
    let mut answer = serde_json::to_value(report).map_err(|e| AppError::Internal(e.to_string()))?;
    if let (Some(refunds), Some(map)) = (refunds, answer.as_object_mut()) {
        let refunds =
            serde_json::to_value(refunds).map_err(|e| AppError::Internal(e.to_string()))?;
        map.insert("refunds".into(), refunds);
    }
    Ok(answer)
}
