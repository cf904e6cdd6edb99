//! An answer to the merchant before it is signed.

use serde_json::{json, Value};

/// A response before it is signed.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "code": code, "message": message.into() }))
    }

    pub fn param(message: impl Into<String>) -> Reply {
        Reply::error(400, "PARAM_ERROR", message)
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: Vec::new(),
        }
    }

    pub fn order_not_exist() -> Reply {
        Reply::error(404, "ORDER_NOT_EXIST", "订单不存在")
    }
}
