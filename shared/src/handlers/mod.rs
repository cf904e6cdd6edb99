//! Domain handlers, one module per function. They see a typed [`Call`] and the [`App`];
//! never which invocation shape or database they run on.

pub mod history;
pub mod login;
pub mod order;
pub mod query;
pub mod reconcile;
pub mod refund;
pub mod retry;

use std::future::Future;
use std::pin::Pin;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::AppError;
use crate::notify::{self, NotifyAnswer};
use crate::state::App;

pub const ORDER: &str = "wxpay_order";
pub const ORDER_CALLBACK: &str = "wxpay_order_callback";
pub const QUERY_BY_OUT_TRADE_NO: &str = "wxpay_query_order_by_out_trade_no";
pub const QUERY_BY_TRANSACTION_ID: &str = "wxpay_query_order_by_transaction_id";
pub const CLOSE_ORDER: &str = "wxpay_close_order";
pub const REFUND: &str = "wxpay_refund";
pub const REFUND_QUERY: &str = "wxpay_refund_query";
pub const REFUND_CALLBACK: &str = "wxpay_refund_callback";
pub const NOTIFY_RETRY: &str = "wxpay_notify_retry";
pub const LOGIN: &str = "wxpay_login";
pub const ORDER_LIST: &str = "wxpay_order_list";
pub const STATS: &str = "wxpay_stats";
pub const RECONCILE: &str = "wxpay_reconcile";

/// A handler for calls by `type`. Boxed, so that a table of them can name each one: the
/// table a binary is started with is then the only reference to its handlers, and the
/// linker leaves out every handler the binary does not serve.
pub type CallHandler =
    for<'a> fn(
        &'a App,
        &'a Call,
    ) -> Pin<Box<dyn Future<Output = Result<Value, AppError>> + Send + 'a>>;

/// The handler for WeChat Pay's signed notifications.
pub type NotificationHandler =
    for<'a> fn(
        &'a App,
        &'a HeaderMap,
        &'a [u8],
    ) -> Pin<Box<dyn Future<Output = NotifyAnswer> + Send + 'a>>;

/// One `type` a binary answers, and its handler.
pub struct Route {
    pub ty: &'static str,
    pub handler: CallHandler,
}

/// What one function binary serves (contract §5): the types it answers and, for the binaries
/// that receive them, WeChat Pay's notifications.
pub struct Routes {
    /// In the order error messages list them.
    pub calls: &'static [Route],
    pub notifications: Option<NotificationHandler>,
}

impl Routes {
    pub fn types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.calls.iter().map(|r| r.ty)
    }

    fn handler(&self, ty: &str) -> Option<CallHandler> {
        self.calls.iter().find(|r| r.ty == ty).map(|r| r.handler)
    }
}

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
/// `wxpay_query`.
pub const QUERY_TYPES: &Routes = &Routes {
    calls: &[
        route!(QUERY_BY_OUT_TRADE_NO => query::by_out_trade_no),
        route!(QUERY_BY_TRANSACTION_ID => query::by_transaction_id),
        route!(CLOSE_ORDER => query::close),
        route!(ORDER_LIST => history::list),
        route!(STATS => history::stats),
        route!(RECONCILE => reconcile::reconcile),
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

/// Who is calling, as the runtime adapter established it (contract §2–3).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The mini-program user's openid, from the platform (`userInfo`, `X-WX-OPENID`) or,
    /// for trusted callers only, from an `openid` field.
    pub openid: Option<String>,
    /// Presented the internal secret.
    pub trusted: bool,
    /// The client's IP, when the shape carries it (H5 orders need it).
    pub client_ip: Option<String>,
    /// Invoked by a timer (EventBridge schedule, SCF timer trigger), not by a person.
    pub scheduled: bool,
}

/// One typed invocation: a `type`, its fields, and who asked.
#[derive(Debug, Clone)]
pub struct Call {
    pub ty: String,
    pub data: Map<String, Value>,
    pub caller: Caller,
}

impl Call {
    /// Decodes the call's fields into a request struct, naming the field that is wrong.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        let value = Value::Object(self.data.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                AppError::invalid(inner.to_string())
            } else {
                AppError::invalid(format!("field `{path}`: {inner}"))
            }
        })
    }

    pub fn require_trusted(&self, what: &str) -> Result<(), AppError> {
        if self.caller.trusted {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "{what} is for trusted callers only: send the internal secret (X-Internal-Secret header, or internalSecret in a direct invocation)"
            )))
        }
    }
}

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
