//! What the simulated WeChat Pay remembers: orders, refunds, traffic and pending faults.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::crypto;
use crate::Fault;

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

#[derive(Debug, Default)]
pub(crate) struct State {
    pub orders: BTreeMap<String, SimOrder>,
    pub refunds: BTreeMap<String, SimRefund>,
    /// Merchant requests per exact path (query excluded).
    pub hits: HashMap<String, usize>,
    pub faults: Vec<Fault>,
    /// When each order last had a refund request, for `FREQUENCY_LIMITED`.
    pub last_refund_request: HashMap<String, Instant>,
    /// Fen the merchant can refund from; `None`: unlimited.
    pub merchant_balance: Option<i64>,
    /// How the trade bill differs from the truth, for reconciliation tests.
    pub bill: crate::bill::BillTamper,
    /// Bill files by download token.
    pub downloads: HashMap<String, crate::bill::PendingDownload>,
}

impl State {
    pub fn order_by_transaction_id(&self, transaction_id: &str) -> Option<&SimOrder> {
        self.orders
            .values()
            .find(|o| o.transaction_id.as_deref() == Some(transaction_id))
    }

    /// Fen already committed to refunds of this order: every refund not CLOSED.
    pub fn refunded_total(&self, out_trade_no: &str) -> i64 {
        self.refunds
            .values()
            .filter(|r| r.out_trade_no == out_trade_no && r.status != "CLOSED")
            .map(|r| r.amount_refund)
            .sum()
    }

    /// A paid order shows REFUND while any refund of it is not closed.
    pub fn sync_refund_state(&mut self, out_trade_no: &str) {
        let refunding = self
            .refunds
            .values()
            .any(|r| r.out_trade_no == out_trade_no && r.status != "CLOSED");
        if let Some(o) = self.orders.get_mut(out_trade_no) {
            if o.is_paid() {
                o.trade_state = if refunding { "REFUND" } else { "SUCCESS" }.to_string();
            }
        }
    }

    /// Takes the fault for this path, if one is armed, counting one use.
    pub fn take_fault(&mut self, path: &str) -> Option<crate::FaultKind> {
        let idx = self
            .faults
            .iter()
            .position(|f| f.times > 0 && path.starts_with(&f.path_prefix))?;
        let fault = &mut self.faults[idx];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(idx);
        }
        Some(kind)
    }
}
