//! `wxpay_notify_retry`: trusted callers and schedules deliver what is due to the backend.

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
    let report = app
        .courier()
        .deliver_due(req.all, limit, Duration::from_secs(25))
        .await;
    serde_json::to_value(report).map_err(|e| AppError::Internal(e.to_string()))
}
