//! Payments: prepay (JSAPI, App, Native, H5), closing, and the payer paying or failing.

use serde_json::{json, Value};

use crate::crypto;
use crate::error::SimError;
use crate::fields::{
    check_currency, check_mchid, field, opt_string, req_positive, req_string, valid_notify_url,
    valid_out_trade_no, wrong_type,
};
use crate::model::SimOrder;
use crate::notify::NotifyOutcome;
use crate::reply::Reply;
use crate::sim::{lock, Simulator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TradeKind {
    Jsapi,
    App,
    Native,
    H5,
}

impl TradeKind {
    /// The `trade_type` the query API reports.
    fn trade_type(self) -> &'static str {
        match self {
            TradeKind::Jsapi => "JSAPI",
            TradeKind::App => "APP",
            TradeKind::Native => "NATIVE",
            TradeKind::H5 => "MWEB",
        }
    }
}

pub(crate) fn prepay(
    sim: &Simulator,
    auth_mchid: &str,
    kind: TradeKind,
    body: &Value,
) -> Result<Reply, Reply> {
    let config = &sim.inner.config;
    let appid = req_string(body, "/appid", "应用ID", 32)?;
    let mchid = check_mchid(body, auth_mchid)?;
    let description = req_string(body, "/description", "商品描述", 127)?;
    let out_trade_no = req_string(body, "/out_trade_no", "商户订单号", 32)?;
    if !valid_out_trade_no(&out_trade_no) {
        return Err(Reply::param(
            "商户订单号 out_trade_no 应为6-32位数字、大小写字母或_-|*",
        ));
    }
    let notify_url = req_string(body, "/notify_url", "通知地址", 255)?;
    if !valid_notify_url(&notify_url) {
        return Err(Reply::param(
            "通知地址 notify_url 格式错误，应为http://或https://开头的完整URL",
        ));
    }
    let attach = opt_string(body, "/attach", "附加数据", 128)?;
    let time_expire = opt_string(body, "/time_expire", "交易结束时间", 64)?;
    if let Some(t) = &time_expire {
        if crypto::parse_time(t).is_none() {
            return Err(Reply::param(
                "time_expire 格式错误，应为 yyyy-MM-DDTHH:mm:ss+TIMEZONE",
            ));
        }
    }
    if field(body, "/amount").is_some_and(|a| !a.is_object()) {
        return Err(wrong_type("/amount", "订单金额", "object"));
    }
    let total = req_positive(body, "/amount/total", "总金额")?;
    check_currency(body, "/amount/currency", "货币类型", false)?;
    let openid = if kind == TradeKind::Jsapi {
        Some(req_string(body, "/payer/openid", "用户标识", 128)?)
    } else {
        None
    };
    if kind == TradeKind::H5 {
        req_string(body, "/scene_info/payer_client_ip", "用户终端IP", 45)?;
        req_string(body, "/scene_info/h5_info/type", "场景类型", 32)?;
    }
    if appid != config.appid {
        return Err(Reply::error(
            400,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        ));
    }

    let mut st = lock(&sim.inner.state);
    let order = match st.orders.get(&out_trade_no) {
        Some(existing) => {
            if existing.is_paid() {
                return Err(Reply::error(400, "ORDERPAID", "该订单已支付"));
            }
            if existing.trade_state == "CLOSED" {
                return Err(Reply::error(
                    400,
                    "ORDERCLOSED",
                    "当前订单已关闭，请重新下单",
                ));
            }
            if existing.amount_total != total
                || existing.trade_type != kind.trade_type()
                || (kind == TradeKind::Jsapi && existing.payer_openid != openid)
            {
                return Err(Reply::error(400, "INVALID_REQUEST", "201 商户订单号重复"));
            }
            existing.clone()
        }
        None => {
            let now = crypto::now_cst();
            let prepay_id = format!(
                "wx{}{}0000",
                crypto::datetime_digits(now),
                crypto::random_lower_hex(16)
            );
            let order = SimOrder {
                appid,
                mchid,
                out_trade_no: out_trade_no.clone(),
                transaction_id: None,
                trade_type: kind.trade_type().to_string(),
                trade_state: "NOTPAY".to_string(),
                amount_total: total,
                payer_openid: openid,
                notify_url,
                attach,
                description,
                code_url: (kind == TradeKind::Native).then(|| {
                    format!("weixin://wxpay/bizpayurl?pr={}", crypto::random_alnum(9))
                }),
                payer_client_ip: opt_string(body, "/scene_info/payer_client_ip", "用户终端IP", 45)?,
                h5_url: (kind == TradeKind::H5).then(|| {
                    format!(
                        "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package={}",
                        crypto::random_digits(10)
                    )
                }),
                prepay_id,
                success_time: None,
                time_expire,
                create_time: crypto::format_time(now),
            };
            st.insert_order(order.clone());
            order
        }
    };
    drop(st);

    let body = match kind {
        TradeKind::Jsapi | TradeKind::App => json!({ "prepay_id": order.prepay_id }),
        TradeKind::Native => json!({ "code_url": order.code_url }),
        TradeKind::H5 => json!({ "h5_url": order.h5_url }),
    };
    Ok(Reply::json(200, &body))
}

pub(crate) fn close(
    sim: &Simulator,
    auth_mchid: &str,
    out_trade_no: &str,
    body: &Value,
) -> Result<Reply, Reply> {
    check_mchid(body, auth_mchid)?;
    let mut st = lock(&sim.inner.state);
    let order = st
        .orders
        .get_mut(out_trade_no)
        .ok_or_else(Reply::order_not_exist)?;
    if order.is_paid() {
        return Err(Reply::error(400, "ORDERPAID", "订单已支付，不能关闭"));
    }
    order.trade_state = "CLOSED".to_string();
    Ok(Reply::no_content())
}

impl Simulator {
    pub(crate) fn mark_paid(&self, out_trade_no: &str) -> Result<SimOrder, SimError> {
        let mut st = lock(&self.inner.state);
        let order = st
            .orders
            .get_mut(out_trade_no)
            .ok_or_else(|| SimError::OrderNotFound(out_trade_no.to_string()))?;
        if order.trade_state != "NOTPAY" {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} is {}, only NOTPAY orders can be paid",
                order.trade_state
            )));
        }
        let now = crypto::now_cst();
        if order.is_expired(now) {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} expired at {}",
                order.time_expire.as_deref().unwrap_or_default()
            )));
        }
        order.trade_state = "SUCCESS".to_string();
        order.transaction_id = Some(format!(
            "4200000{}{}{}",
            crypto::random_digits(3),
            crypto::date_digits(now),
            crypto::random_digits(10)
        ));
        order.success_time = Some(crypto::format_time(now));
        if order.payer_openid.is_none() {
            order.payer_openid = Some(crypto::random_openid());
        }
        Ok(order.clone())
    }

    /// The user pays: the order becomes SUCCESS and `TRANSACTION.SUCCESS` goes to its
    /// notify_url. Returns what the receiver answered (the order stays paid even if the
    /// delivery fails).
    ///
    /// Until the merchant answers 200 or 204, the notification is sent again on WeChat
    /// Pay's schedule ([`Simulator::notification_deliveries_for`] lists the attempts).
    pub async fn pay(&self, out_trade_no: &str) -> Result<NotifyOutcome, SimError> {
        let order = self.mark_paid(out_trade_no)?;
        let n = self.transaction_notification(&order);
        self.send_with_retries(n, "TRANSACTION.SUCCESS", out_trade_no, &order.notify_url)
            .await
    }

    /// Paid at WeChat Pay, but the notification is lost.
    pub async fn mark_paid_silently(&self, out_trade_no: &str) -> Result<(), SimError> {
        self.mark_paid(out_trade_no).map(|_| ())
    }

    /// The payment fails (the bank refused it): the order is `PAYERROR`, as a query shows
    /// it. WeChat Pay sends no notification for a failed payment.
    pub fn fail_payment(&self, out_trade_no: &str) -> Result<SimOrder, SimError> {
        self.end_unpaid(out_trade_no, "PAYERROR")
    }

    /// The order is closed at WeChat Pay (as the close API or its expiry would): nobody can
    /// pay it any more.
    pub fn close_order(&self, out_trade_no: &str) -> Result<SimOrder, SimError> {
        self.end_unpaid(out_trade_no, "CLOSED")
    }

    fn end_unpaid(&self, out_trade_no: &str, state: &str) -> Result<SimOrder, SimError> {
        let mut st = lock(&self.inner.state);
        let order = st
            .orders
            .get_mut(out_trade_no)
            .ok_or_else(|| SimError::OrderNotFound(out_trade_no.to_string()))?;
        if !order.is_open() {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} is {}, only NOTPAY orders can become {state}",
                order.trade_state
            )));
        }
        order.trade_state = state.to_string();
        Ok(order.clone())
    }
}
