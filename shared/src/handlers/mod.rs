//! Domain handlers, one module per function. They see a typed [`Call`] and the [`App`];
//! never which invocation shape or database they run on.

pub mod history;
pub mod login;
pub mod order;
pub mod query;
pub mod reconcile;
pub mod refund;
pub mod refund_sweep;
pub mod retry;

use http::HeaderMap;
use serde_json::Value;

pub use crate::call::{
    Call, Caller, CLOSE_ORDER, LOGIN, NOTIFY_RETRY, ORDER, ORDER_CALLBACK, ORDER_LIST,
    QUERY_BY_OUT_TRADE_NO, QUERY_BY_TRANSACTION_ID, RECONCILE, REFUND, REFUND_CALLBACK,
    REFUND_QUERY, STATS,
};
use crate::error::AppError;
use crate::notify::{self, NotifyAnswer};
// The table's shape belongs to the state it is kept in; this module fills it in.
use crate::state::App;
pub use crate::state::{CallHandler, NotificationHandler, Route, Routes};

macro_rules! route {
    ($ty:expr => $handler:path) => {
        Route {
            ty: $ty,
            handler: |app, call| Box::pin($handler(app, call)),
        }
    };
}

/// Notifications are typed by their signed body, never by a `type` field.
async fn by_signed_request_only(_: &App, _: &Call) -> Result<Value, AppError> {
    Err(AppError::invalid(
        "notifications come from WeChat Pay as signed HTTP requests (Wechatpay-* headers and a resource object); they cannot be called by type",
    ))
}

const NOTIFICATIONS: NotificationHandler =
    |app, headers, body| Box::pin(notify::handle(app, headers, body));

/// `wxpay_order`.
pub const ORDER_TYPES: &Routes = &Routes {
    calls: &[
        route!(ORDER => order::create),
        route!(LOGIN => login::login),
    ],
    notifications: None,
};
/// `wxpay_callback`: notifications, and what its schedules run: the outbox retry and the
/// daily reconciliation.
pub const CALLBACK_TYPES: &Routes = &Routes {
    calls: &[
        route!(ORDER_CALLBACK => by_signed_request_only),
        route!(REFUND_CALLBACK => by_signed_request_only),
        route!(NOTIFY_RETRY => retry::retry),
        route!(RECONCILE => reconcile::reconcile),
    ],
    notifications: Some(NOTIFICATIONS),
};
/// `wxpay_query`. Not the reconciliation: it runs up to a minute, longer than this
/// function's timeout, and belongs with the schedules (contract §1).
pub const QUERY_TYPES: &Routes = &Routes {
    calls: &[
        route!(QUERY_BY_OUT_TRADE_NO => query::by_out_trade_no),
        route!(QUERY_BY_TRANSACTION_ID => query::by_transaction_id),
        route!(CLOSE_ORDER => query::close),
        route!(ORDER_LIST => history::list),
        route!(STATS => history::stats),
    ],
    notifications: None,
};
/// `wxpay_refund`.
pub const REFUND_TYPES: &Routes = &Routes {
    calls: &[
        route!(REFUND => refund::create),
        route!(REFUND_QUERY => refund::query),
    ],
    notifications: None,
};
/// `wxpay_functions`, the router: every type.
pub const ALL_TYPES: &Routes = &Routes {
    calls: &[
        route!(ORDER => order::create),
        route!(ORDER_CALLBACK => by_signed_request_only),
        route!(QUERY_BY_OUT_TRADE_NO => query::by_out_trade_no),
        route!(QUERY_BY_TRANSACTION_ID => query::by_transaction_id),
        route!(CLOSE_ORDER => query::close),
        route!(REFUND => refund::create),
        route!(REFUND_QUERY => refund::query),
        route!(REFUND_CALLBACK => by_signed_request_only),
        route!(NOTIFY_RETRY => retry::retry),
        route!(LOGIN => login::login),
        route!(ORDER_LIST => history::list),
        route!(STATS => history::stats),
        route!(RECONCILE => reconcile::reconcile),
    ],
    notifications: Some(NOTIFICATIONS),
};

/// Routes a call to its handler. The type must be one this binary serves.
pub async fn handle_call(app: &App, call: Call) -> Result<Value, AppError> {
    crate::invocation::record_type(&call.ty);
    let Some(handler) = app.routes.handler(&call.ty) else {
        let served: Vec<&str> = app.routes.types().collect();
        return Err(AppError::UnknownType(format!(
            "unknown type `{}`; this function serves: {}",
            call.ty,
            served.join(", ")
        )));
    };
    handler(app, &call).await
}

/// Answers a signed notification, or 404 from a binary that does not receive them.
pub async fn handle_notification(app: &App, headers: &HeaderMap, body: &[u8]) -> NotifyAnswer {
    crate::invocation::record_type(crate::invocation::NOTIFICATION);
    match app.routes.notifications {
        Some(handler) => handler(app, headers, body).await,
        None => notifications_not_served(),
    }
}

pub fn notifications_not_served() -> NotifyAnswer {
    NotifyAnswer::fail(
        404,
        "this function does not receive WeChat Pay notifications",
    )
}

/// Optional short text field: trimmed, empty → None, at most `max_bytes` of UTF-8 (WeChat
/// Pay counts bytes: 127 bytes of `description` are 42 Chinese characters).
pub(crate) fn bounded(
    name: &str,
    value: Option<String>,
    max_bytes: usize,
) -> Result<Option<String>, AppError> {
    let Some(v) = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if v.len() > max_bytes {
        return Err(AppError::invalid(format!(
            "field `{name}` is longer than {max_bytes} bytes of UTF-8"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "field `{name}` contains control characters"
        )));
    }
    Ok(Some(v))
}

/// Accepts ids sent as JSON strings or numbers (mini-programs send both).
pub(crate) mod string_or_number {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(serde::de::Error::custom(format!(
                "expected a string or number, got {other}"
            ))),
        }
    }
}

/// A fen amount: a JSON integer from 1 to 1,000,000. Strings, fractions, zero, negatives
/// and huge numbers are refused with a message that says so.
pub(crate) fn parse_amount(name: &str, value: &Value) -> Result<i64, AppError> {
    let max = crate::prices::MAX_AMOUNT_FEN;
    let msg = || {
        AppError::invalid(format!(
            "field `{name}` must be a whole number of fen from 1 to {max} (got {value})"
        ))
    };
    let n = value.as_i64().ok_or_else(msg)?;
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(msg())
    }
}
