//! Orders and refunds as WeChat Pay sees them, and how they are written in its answers.

use serde::Serialize;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::crypto;

/// How long a prepay id can start a payment ("该值有效期为2小时").
pub(crate) const PREPAY_ID_LIFETIME: Duration = Duration::hours(2);

/// An order as WeChat Pay sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimOrder {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    /// Set once paid.
    pub transaction_id: Option<String>,
    /// `JSAPI`, `NATIVE`, `MWEB` (H5) or `APP`.
    pub trade_type: String,
    /// `NOTPAY`, `SUCCESS`, `CLOSED` or `REFUND`.
    pub trade_state: String,
    /// Fen.
    pub amount_total: i64,
    /// From the JSAPI prepay, or generated when paid for other trade types.
    pub payer_openid: Option<String>,
    pub notify_url: String,
    pub attach: Option<String>,
    pub description: String,
    /// `wx...`, kept so a repeated prepay answers the same.
    pub prepay_id: String,
    /// RFC 3339 at +08:00, set once paid.
    pub success_time: Option<String>,
    /// As given at prepay (RFC 3339).
    pub time_expire: Option<String>,
    pub create_time: String,
    /// NATIVE only.
    pub code_url: Option<String>,
    /// H5 only.
    pub h5_url: Option<String>,
    /// `scene_info.payer_client_ip` as the merchant sent it (H5).
    pub payer_client_ip: Option<String>,
}

impl SimOrder {
    pub(crate) fn is_paid(&self) -> bool {
        self.trade_state == "SUCCESS" || self.trade_state == "REFUND"
    }

    /// Neither paid, closed nor failed: the payer can still pay it.
    pub(crate) fn is_open(&self) -> bool {
        self.trade_state == "NOTPAY"
    }

    /// When its prepay id stops starting a payment: two hours after it was issued.
    pub(crate) fn prepay_expires(&self) -> Option<OffsetDateTime> {
        crypto::parse_time(&self.create_time).map(|t| t + PREPAY_ID_LIFETIME)
    }

    pub(crate) fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.time_expire
            .as_deref()
            .and_then(crypto::parse_time)
            .is_some_and(|t| t <= now)
    }

    /// The transaction object of the query APIs and of `TRANSACTION.SUCCESS`.
    /// `state_override` lets the notification say SUCCESS whatever happened since.
    pub(crate) fn transaction_json(&self, state_override: Option<&str>) -> Value {
        let state = state_override.unwrap_or(&self.trade_state);
        let mut v = json!({
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "trade_state": state,
            "trade_state_desc": trade_state_desc(state),
            "attach": self.attach.clone().unwrap_or_default(),
        });
        let paid = state == "SUCCESS" || state == "REFUND";
        if paid {
            v["transaction_id"] = json!(self.transaction_id);
            v["trade_type"] = json!(self.trade_type);
            v["bank_type"] = json!("OTHERS");
            v["success_time"] = json!(self.success_time);
            v["payer"] = json!({ "openid": self.payer_openid });
            v["amount"] = json!({
                "total": self.amount_total,
                "payer_total": self.amount_total,
                "currency": "CNY",
                "payer_currency": "CNY",
            });
        } else {
            // Unpaid orders carry no transaction id, payer, trade type or payer total on
            // the real API; a client that requires them breaks on NOTPAY/CLOSED.
            v["amount"] = json!({
                "total": self.amount_total,
                "currency": "CNY",
                "payer_currency": "CNY",
            });
        }
        v
    }
}

pub(crate) fn trade_state_desc(state: &str) -> &'static str {
    match state {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "NOTPAY" => "订单未支付",
        "CLOSED" => "订单已关闭",
        "REVOKED" => "已撤销",
        "USERPAYING" => "用户支付中",
        "PAYERROR" => "支付失败",
        _ => "",
    }
}

/// A refund as WeChat Pay sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    /// `PROCESSING`, `SUCCESS`, `CLOSED` or `ABNORMAL`.
    pub status: String,
    /// Fen.
    pub amount_refund: i64,
    /// The order total, fen.
    pub amount_total: i64,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
    pub create_time: String,
    pub success_time: Option<String>,
    pub mchid: String,
}

impl SimRefund {
    pub(crate) fn refund_json(&self) -> Value {
        let mut v = json!({
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self.create_time,
            "status": self.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": self.amount_total,
                "refund": self.amount_refund,
                "from": [],
                "payer_total": self.amount_total,
                "payer_refund": self.amount_refund,
                "settlement_total": self.amount_total,
                "settlement_refund": self.amount_refund,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0,
            },
            "promotion_detail": [],
        });
        if let Some(t) = &self.success_time {
            v["success_time"] = json!(t);
        }
        v
    }

    /// The plaintext of `REFUND.*` notifications.
    pub(crate) fn notification_json(&self) -> Value {
        let mut v = json!({
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": self.amount_total,
                "refund": self.amount_refund,
                "payer_total": self.amount_total,
                "payer_refund": self.amount_refund,
            },
        });
        if let Some(t) = &self.success_time {
            v["success_time"] = json!(t);
        }
        v
    }
}

/// How a refund ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    Success,
    Abnormal,
    Closed,
}

impl RefundOutcome {
    pub(crate) fn status(self) -> &'static str {
        match self {
            RefundOutcome::Success => "SUCCESS",
            RefundOutcome::Abnormal => "ABNORMAL",
            RefundOutcome::Closed => "CLOSED",
        }
    }

    /// `SUCCESS`, `ABNORMAL` or `CLOSED`, in any case.
    pub(crate) fn parse(s: &str) -> Result<RefundOutcome, String> {
        match s.to_ascii_uppercase().as_str() {
            "SUCCESS" => Ok(RefundOutcome::Success),
            "ABNORMAL" => Ok(RefundOutcome::Abnormal),
            "CLOSED" => Ok(RefundOutcome::Closed),
            other => Err(format!(
                "status must be SUCCESS, ABNORMAL or CLOSED, not {other}"
            )),
        }
    }
}
