//! One typed invocation, as the runtime adapters hand it to the handlers, and what a
//! notification is answered: the words both sides share, below either of them.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::AppError;

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
