//! Refunds: the refund API, and WeChat Pay finishing a refund.

use serde_json::Value;

use crate::crypto;
use crate::error::SimError;
use crate::fields::{
    check_currency, field, opt_string, req_positive, req_string, valid_notify_url,
    valid_out_refund_no, wrong_type,
};
use crate::model::{RefundOutcome, SimRefund};
use crate::notify::{NotificationEvent, NotifyOutcome};
use crate::reply::Reply;
use crate::sim::{lock, Simulator};

pub(crate) fn create_refund(sim: &Simulator, body: &Value) -> Result<Reply, Reply> {
    let out_refund_no = req_string(body, "/out_refund_no", "商户退款单号", 64)?;
    if !valid_out_refund_no(&out_refund_no) {
        return Err(Reply::param(
            "商户退款单号 out_refund_no 应为1-64位数字、大小写字母或_-|*@",
        ));
    }
    let transaction_id = opt_string(body, "/transaction_id", "微信支付订单号", 32)?;
    let out_trade_no = opt_string(body, "/out_trade_no", "商户订单号", 32)?;
    if transaction_id.is_none() && out_trade_no.is_none() {
        return Err(Reply::param(
            "transaction_id和out_trade_no必须二选一进行传参",
        ));
    }
    let reason = opt_string(body, "/reason", "退款原因", 80)?;
    let notify_url = opt_string(body, "/notify_url", "退款结果回调url", 256)?;
    if let Some(u) = &notify_url {
        if !valid_notify_url(u) {
            return Err(Reply::param(
                "退款结果回调url notify_url 格式错误，应为http://或https://开头的完整URL",
            ));
        }
    }
    if field(body, "/amount").is_some_and(|a| !a.is_object()) {
        return Err(wrong_type("/amount", "金额信息", "object"));
    }
    let refund = req_positive(body, "/amount/refund", "退款金额")?;
    let total = req_positive(body, "/amount/total", "原订单金额")?;
    check_currency(body, "/amount/currency", "退款币种", true)?;

    let mut st = lock(&sim.inner.state);

    // Which order the request is about, to apply the per-order frequency limit before
    // anything else: a retry of an accepted refund counts as a request too.
    let order_key = match (
        st.refunds.get(&out_refund_no),
        &transaction_id,
        &out_trade_no,
    ) {
        (Some(existing), _, _) => Some(existing.out_trade_no.clone()),
        (None, Some(t), _) => st
            .order_by_transaction_id(t)
            .map(|o| o.out_trade_no.clone()),
        (None, None, Some(n)) => Some(n.clone()),
        (None, None, None) => None,
    };
    if let Some(key) = &order_key {
        let window = sim.inner.config.refund_frequency_window;
        let now = std::time::Instant::now();
        if st
            .last_refund_request
            .get(key)
            .is_some_and(|t| now.duration_since(*t) < window)
        {
            return Err(Reply::error(
                429,
                "FREQUENCY_LIMITED",
                "频率限制，同一笔订单多次退款的请求需相隔1分钟，该笔退款未受理，请降低频率后重试",
            ));
        }
        st.last_refund_request.insert(key.clone(), now);
    }

    if let Some(existing) = st.refunds.get(&out_refund_no) {
        // A retry of the same refund answers the refund already made; reusing the number
        // for a different refund is the caller's bug and is refused.
        let same_order = out_trade_no
            .as_deref()
            .is_none_or(|n| n == existing.out_trade_no)
            && transaction_id
                .as_deref()
                .is_none_or(|t| t == existing.transaction_id);
        if same_order && existing.amount_refund == refund {
            return Ok(Reply::json(200, &existing.refund_json()));
        }
        return Err(Reply::error(
            400,
            "INVALID_REQUEST",
            "商户退款单号已存在，但订单或退款金额与原退款单不一致",
        ));
    }

    let order = match (&transaction_id, &out_trade_no) {
        (Some(t), _) => st.order_by_transaction_id(t),
        (None, Some(n)) => st.orders.get(n),
        (None, None) => None,
    }
    .cloned()
    .ok_or_else(|| Reply::error(404, "RESOURCE_NOT_EXISTS", "订单不存在"))?;
    if let (Some(_), Some(n)) = (&transaction_id, &out_trade_no) {
        if *n != order.out_trade_no {
            return Err(Reply::error(
                400,
                "INVALID_REQUEST",
                "out_trade_no与transaction_id不属于同一笔订单",
            ));
        }
    }
    if !order.is_paid() {
        return Err(Reply::error(
            400,
            "INVALID_REQUEST",
            "订单未支付成功，不能发起退款",
        ));
    }
    if total != order.amount_total {
        return Err(Reply::param(format!(
            "原订单金额 amount.total {total} 与订单实际金额 {} 不一致",
            order.amount_total
        )));
    }
    // What remains of the order is a business rule of the request; NOT_ENOUGH is about the
    // merchant's money, as documented ("余额不足").
    if st.refunded_total(&order.out_trade_no) + refund > order.amount_total {
        return Err(Reply::error(
            400,
            "INVALID_REQUEST",
            "申请退款金额超过订单可退金额",
        ));
    }
    if st.merchant_balance.is_some_and(|b| refund > b) {
        return Err(Reply::error(
            403,
            "NOT_ENOUGH",
            "基本账户余额不足，请充值后重新发起",
        ));
    }
    if let Some(b) = st.merchant_balance.as_mut() {
        *b -= refund;
    }

    let now = crypto::now_cst();
    let r = SimRefund {
        out_refund_no: out_refund_no.clone(),
        refund_id: refund_id(now),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: order.transaction_id.clone().unwrap_or_default(),
        status: "PROCESSING".to_string(),
        amount_refund: refund,
        amount_total: order.amount_total,
        reason,
        notify_url,
        create_time: crypto::format_time(now),
        success_time: None,
        mchid: order.mchid.clone(),
    };
    let reply = Reply::json(200, &r.refund_json());
    st.insert_refund(r);
    st.sync_refund_state(&order.out_trade_no);
    drop(st);

    if let Some(delay) = sim.inner.config.auto_refund_after {
        let sim = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let still_processing = sim
                .refund(&out_refund_no)
                .is_some_and(|r| r.status == "PROCESSING");
            if still_processing {
                if let Err(e) = sim
                    .complete_refund(&out_refund_no, RefundOutcome::Success)
                    .await
                {
                    tracing::warn!(%out_refund_no, error = %e, "automatic refund completion");
                }
            }
        });
    }
    Ok(reply)
}

impl Simulator {
    /// Ends a refund with `outcome` and sends the matching `REFUND.*` notification to the
    /// refund's notify_url (and again on WeChat Pay's schedule until it is acknowledged).
    /// A PROCESSING or ABNORMAL refund can be completed.
    pub async fn complete_refund(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<NotifyOutcome, SimError> {
        let refund = self.finish_refund(out_refund_no, outcome)?;
        let Some(url) = refund.notify_url.clone() else {
            return Err(SimError::NoNotifyUrl(out_refund_no.to_string()));
        };
        let event_type = format!("REFUND.{}", outcome.status());
        let n = self.notification(NotificationEvent {
            event_type: event_type.clone(),
            original_type: "refund".to_string(),
            plaintext: refund.notification_json(),
        });
        self.send_with_retries(n, &event_type, out_refund_no, &url)
            .await
    }

    /// The merchant refunds `amount` fen of a paid order by hand in the merchant platform
    /// (商户平台), not through the refund API: WeChat Pay numbers the refund itself and it
    /// succeeds at once. Its result notification goes to the `notify_url` of a refund API
    /// request (申请退款API), and this refund had none, so nobody is told; a query of the
    /// order then shows `trade_state` `REFUND`.
    pub fn portal_refund(&self, out_trade_no: &str, amount: i64) -> Result<SimRefund, SimError> {
        let mut st = lock(&self.inner.state);
        let order = st
            .orders
            .get(out_trade_no)
            .cloned()
            .ok_or_else(|| SimError::OrderNotFound(out_trade_no.to_string()))?;
        if !order.is_paid() {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} is {}, not paid",
                order.trade_state
            )));
        }
        if amount < 1 || st.refunded_total(out_trade_no) + amount > order.amount_total {
            return Err(SimError::InvalidState(format!(
                "{amount} fen does not fit what remains of {out_trade_no}"
            )));
        }
        let now = crypto::now_cst();
        let r = SimRefund {
            out_refund_no: format!("PORTAL{}", crypto::random_digits(14)),
            refund_id: refund_id(now),
            out_trade_no: order.out_trade_no.clone(),
            transaction_id: order.transaction_id.clone().unwrap_or_default(),
            status: "SUCCESS".to_string(),
            amount_refund: amount,
            amount_total: order.amount_total,
            reason: None,
            notify_url: None,
            create_time: crypto::format_time(now),
            success_time: Some(crypto::format_time(now)),
            mchid: order.mchid.clone(),
        };
        st.insert_refund(r.clone());
        st.sync_refund_state(out_trade_no);
        Ok(r)
    }

    /// Ends a refund with `outcome`, but the `REFUND.*` notification is lost.
    pub fn complete_refund_silently(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<SimRefund, SimError> {
        self.finish_refund(out_refund_no, outcome)
    }

    fn finish_refund(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<SimRefund, SimError> {
        let mut st = lock(&self.inner.state);
        let r = st
            .refunds
            .get_mut(out_refund_no)
            .ok_or_else(|| SimError::RefundNotFound(out_refund_no.to_string()))?;
        if r.status != "PROCESSING" && r.status != "ABNORMAL" {
            return Err(SimError::InvalidState(format!(
                "refund {out_refund_no} is already {}",
                r.status
            )));
        }
        r.status = outcome.status().to_string();
        if outcome == RefundOutcome::Success {
            r.success_time = Some(crypto::format_time(crypto::now_cst()));
        }
        let r = r.clone();
        st.sync_refund_state(&r.out_trade_no);
        Ok(r)
    }
}

/// A WeChat Pay refund id as the simulator issues them, for API and portal refunds alike.
fn refund_id(now: time::OffsetDateTime) -> String {
    format!(
        "50{}{}{}",
        crypto::random_digits(5),
        crypto::date_digits(now),
        crypto::random_digits(14)
    )
}
