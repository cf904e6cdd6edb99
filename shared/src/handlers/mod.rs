//! Domain handlers, one module per function. They see a typed [`Call`] and the [`App`];
//! never which invocation shape or database they run on.

pub mod order;
pub mod query;
pub mod refund;
pub mod retry;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::AppError;
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

/// The types each function binary serves (SPEC §4).
pub const ORDER_TYPES: &[&str] = &[ORDER];
pub const CALLBACK_TYPES: &[&str] = &[ORDER_CALLBACK, REFUND_CALLBACK, NOTIFY_RETRY];
pub const QUERY_TYPES: &[&str] = &[QUERY_BY_OUT_TRADE_NO, QUERY_BY_TRANSACTION_ID, CLOSE_ORDER];
pub const REFUND_TYPES: &[&str] = &[REFUND, REFUND_QUERY];
pub const ALL_TYPES: &[&str] = &[
    ORDER,
    ORDER_CALLBACK,
    QUERY_BY_OUT_TRADE_NO,
    QUERY_BY_TRANSACTION_ID,
    CLOSE_ORDER,
    REFUND,
    REFUND_QUERY,
    REFUND_CALLBACK,
    NOTIFY_RETRY,
];

/// Who is calling, as the runtime adapter established it (SPEC §3).
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
    if !app.serves(&call.ty) {
        return Err(AppError::UnknownType(format!(
            "unknown type `{}`; this function serves: {}",
            call.ty,
            app.types.join(", ")
        )));
    }
    match call.ty.as_str() {
        ORDER => order::create(app, &call).await,
        QUERY_BY_OUT_TRADE_NO => query::by_out_trade_no(app, &call).await,
        QUERY_BY_TRANSACTION_ID => query::by_transaction_id(app, &call).await,
        CLOSE_ORDER => query::close(app, &call).await,
        REFUND => refund::create(app, &call).await,
        REFUND_QUERY => refund::query(app, &call).await,
        NOTIFY_RETRY => retry::retry(app, &call).await,
        ORDER_CALLBACK | REFUND_CALLBACK => Err(AppError::invalid(
            "notifications come from WeChat Pay as signed HTTP requests (Wechatpay-* headers and a resource object); they cannot be called by type",
        )),
        other => Err(AppError::UnknownType(format!("unknown type `{other}`"))),
    }
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
