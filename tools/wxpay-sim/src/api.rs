//! The merchant-facing WeChat Pay API v3 endpoints.

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::auth;
use crate::crypto;
use crate::state::{SimOrder, SimRefund};
use crate::{lock, Simulator};

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

    fn param(message: impl Into<String>) -> Reply {
        Reply::error(400, "PARAM_ERROR", message)
    }

    fn no_content() -> Reply {
        Reply {
            status: 204,
            body: Vec::new(),
        }
    }
}

/// A merchant request as received.
pub(crate) struct MerchantRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Exactly as sent: what the merchant signed.
    pub path_and_query: &'a str,
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TradeKind {
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

enum Route {
    Prepay(TradeKind),
    QueryByOutTradeNo(String),
    QueryByTransactionId(String),
    Close(String),
    CreateRefund,
    QueryRefund(String),
    Certificates,
    TradeBill,
}

fn decode_segment(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn route(method: &str, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match (method, segs.as_slice()) {
        ("POST", ["v3", "pay", "transactions", kind]) => Some(Route::Prepay(match *kind {
            "jsapi" => TradeKind::Jsapi,
            "app" => TradeKind::App,
            "native" => TradeKind::Native,
            "h5" => TradeKind::H5,
            _ => return None,
        })),
        ("GET", ["v3", "pay", "transactions", "out-trade-no", no]) if !no.is_empty() => {
            Some(Route::QueryByOutTradeNo(decode_segment(no)))
        }
        ("GET", ["v3", "pay", "transactions", "id", id]) if !id.is_empty() => {
            Some(Route::QueryByTransactionId(decode_segment(id)))
        }
        ("POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]) if !no.is_empty() => {
            Some(Route::Close(decode_segment(no)))
        }
        ("POST", ["v3", "refund", "domestic", "refunds"]) => Some(Route::CreateRefund),
        ("GET", ["v3", "refund", "domestic", "refunds", no]) if !no.is_empty() => {
            Some(Route::QueryRefund(decode_segment(no)))
        }
        ("GET", ["v3", "certificates"]) => Some(Route::Certificates),
        ("GET", ["v3", "bill", "tradebill"]) => Some(Route::TradeBill),
        _ => None,
    }
}

pub(crate) fn handle(sim: &Simulator, req: &MerchantRequest<'_>) -> Reply {
    let Some(route) = route(req.method, req.path) else {
        return Reply::error(404, "NOT_FOUND", "请求的资源不存在");
    };

    let inner = &sim.inner;
    let auth = match authenticate(sim, req) {
        Ok(a) => a,
        Err(reply) => return reply,
    };

    let result = match route {
        Route::Prepay(kind) => {
            parse_body(req.body).and_then(|b| prepay(sim, &auth.mchid, kind, &b))
        }
        Route::QueryByOutTradeNo(no) => query_mchid(req.query, &auth.mchid).and_then(|()| {
            let st = lock(&inner.state);
            st.orders
                .get(&no)
                .map(|o| Reply::json(200, &o.transaction_json(None)))
                .ok_or_else(order_not_exist)
        }),
        Route::QueryByTransactionId(id) => query_mchid(req.query, &auth.mchid).and_then(|()| {
            let st = lock(&inner.state);
            st.order_by_transaction_id(&id)
                .map(|o| Reply::json(200, &o.transaction_json(None)))
                .ok_or_else(order_not_exist)
        }),
        Route::Close(no) => parse_body(req.body).and_then(|b| close(sim, &auth.mchid, &no, &b)),
        Route::CreateRefund => parse_body(req.body).and_then(|b| create_refund(sim, &b)),
        Route::QueryRefund(no) => {
            let st = lock(&inner.state);
            st.refunds
                .get(&no)
                .map(|r| Reply::json(200, &r.refund_json()))
                .ok_or_else(|| Reply::error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
        }
        Route::Certificates => Ok(certificates(sim)),
        Route::TradeBill => Ok(crate::bill::trade_bill(sim, req.query)),
    };
    result.unwrap_or_else(|e| e)
}

/// Checks the merchant's request signature; the error is the signed 401 to answer.
pub(crate) fn authenticate(
    sim: &Simulator,
    req: &MerchantRequest<'_>,
) -> Result<auth::AuthParams, Reply> {
    let inner = &sim.inner;
    let expected = auth::Expected {
        mchid: &inner.config.mchid,
        serial_no: &inner.config.merchant_serial_no,
        key: &inner.merchant_key,
    };
    auth::verify(
        &expected,
        req.authorization,
        req.method,
        req.path_and_query,
        req.body,
        crypto::unix_now(),
    )
    .map_err(|message| Reply::error(401, "SIGN_ERROR", message))
}

fn order_not_exist() -> Reply {
    Reply::error(404, "ORDER_NOT_EXIST", "订单不存在")
}

fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Reply::param("请求体为空，应为JSON对象"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::param(format!("请求体不是合法的JSON：{e}")))?;
    if !v.is_object() {
        return Err(Reply::param("请求体应为JSON对象"));
    }
    Ok(v)
}

fn query_mchid(query: &str, auth_mchid: &str) -> Result<(), Reply> {
    let mchid = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode_segment(k) == "mchid").then(|| decode_segment(&v.replace('+', " ")))
    });
    match mchid {
        None => Err(Reply::param(
            "输入源“/query/mchid”映射到值字段“商户号”必填性规则校验失败，此字段为必填项",
        )),
        Some(m) if m.is_empty() => Err(Reply::param(
            "输入源“/query/mchid”映射到值字段“商户号”必填性规则校验失败，此字段为必填项",
        )),
        Some(m) if m != auth_mchid => {
            Err(Reply::param(format!("商户号 {m} 与发起调用的商户号不一致")))
        }
        Some(_) => Ok(()),
    }
}

// ---- field validation, with the real API's wording ----

fn field<'a>(body: &'a Value, ptr: &str) -> Option<&'a Value> {
    body.pointer(ptr).filter(|v| !v.is_null())
}

fn missing(ptr: &str, name: &str) -> Reply {
    Reply::param(format!(
        "输入源“/body{ptr}”映射到值字段“{name}”必填性规则校验失败，此字段为必填项"
    ))
}

fn wrong_type(ptr: &str, name: &str, want: &str) -> Reply {
    Reply::param(format!(
        "输入源“/body{ptr}”映射到值字段“{name}”类型错误，应为{want}"
    ))
}

/// Lengths are UTF-8 bytes, as the real API counts them (a Chinese character is 3).
fn opt_string(body: &Value, ptr: &str, name: &str, max: usize) -> Result<Option<String>, Reply> {
    match field(body, ptr) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.len() > max {
                Err(Reply::param(format!(
                    "输入源“/body{ptr}”映射到值字段“{name}”字符串规则校验失败，字节数 {}，大于最大值 {max}",
                    s.len()
                )))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(wrong_type(ptr, name, "string")),
    }
}

fn req_string(body: &Value, ptr: &str, name: &str, max: usize) -> Result<String, Reply> {
    match opt_string(body, ptr, name, max)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”字符串规则校验失败，字节数 0，小于最小值 1"
        ))),
        None => Err(missing(ptr, name)),
    }
}

fn req_int(body: &Value, ptr: &str, name: &str) -> Result<i64, Reply> {
    match field(body, ptr) {
        None => Err(missing(ptr, name)),
        Some(v) => v.as_i64().ok_or_else(|| wrong_type(ptr, name, "integer")),
    }
}

fn req_positive(body: &Value, ptr: &str, name: &str) -> Result<i64, Reply> {
    let n = req_int(body, ptr, name)?;
    if n < 1 {
        return Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”数值规则校验失败，值 {n}，小于最小值 1"
        )));
    }
    Ok(n)
}

fn check_currency(body: &Value, ptr: &str, name: &str, required: bool) -> Result<(), Reply> {
    let c = if required {
        Some(req_string(body, ptr, name, 16)?)
    } else {
        opt_string(body, ptr, name, 16)?
    };
    match c {
        Some(c) if c != "CNY" => Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”取值错误，境内商户仅支持CNY"
        ))),
        _ => Ok(()),
    }
}

fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

fn valid_out_refund_no(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

fn valid_notify_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn check_mchid(body: &Value, auth_mchid: &str) -> Result<String, Reply> {
    let mchid = req_string(body, "/mchid", "直连商户号", 32)?;
    if mchid != auth_mchid {
        return Err(Reply::param(format!(
            "mchid {mchid} 与发起调用的商户号 {auth_mchid} 不一致"
        )));
    }
    Ok(mchid)
}

// ---- endpoints ----

fn prepay(
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
            st.orders.insert(out_trade_no, order.clone());
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

fn close(
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
        .ok_or_else(order_not_exist)?;
    if order.is_paid() {
        return Err(Reply::error(400, "ORDERPAID", "订单已支付，不能关闭"));
    }
    order.trade_state = "CLOSED".to_string();
    Ok(Reply::no_content())
}

fn create_refund(sim: &Simulator, body: &Value) -> Result<Reply, Reply> {
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
        refund_id: format!(
            "50{}{}{}",
            crypto::random_digits(5),
            crypto::date_digits(now),
            crypto::random_digits(14)
        ),
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
    st.refunds.insert(out_refund_no.clone(), r);
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
                    .complete_refund(&out_refund_no, crate::RefundOutcome::Success)
                    .await
                {
                    tracing::warn!(%out_refund_no, error = %e, "automatic refund completion");
                }
            }
        });
    }
    Ok(reply)
}

fn certificates(sim: &Simulator) -> Reply {
    let certs = lock(&sim.inner.platform).certs.clone();
    if certs.is_empty() {
        return Reply::error(404, "NOT_FOUND", "无可用的平台证书");
    }
    let key = sim.inner.config.apiv3_key.as_bytes();
    let mut data = Vec::new();
    for id in certs.iter().rev() {
        let Some(cert) = &id.cert else { continue };
        let nonce = crypto::nonce12();
        let ciphertext =
            match crypto::aes_gcm_encrypt(key, &nonce, "certificate", cert.pem.as_bytes()) {
                Ok(c) => c,
                Err(e) => return Reply::error(500, "SYSTEM_ERROR", e),
            };
        data.push(json!({
            "serial_no": id.serial,
            "effective_time": crypto::format_time(cert.not_before),
            "expire_time": crypto::format_time(cert.not_after),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": "certificate",
                "ciphertext": ciphertext,
            },
        }));
    }
    Reply::json(200, &json!({ "data": data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_identifiers() {
        assert!(valid_out_trade_no("ORDER_123-*|"));
        assert!(!valid_out_trade_no("short"));
        assert!(!valid_out_trade_no("has space 123"));
        assert!(!valid_out_trade_no(&"x".repeat(33)));
        assert!(valid_out_refund_no("R@1"));
        assert!(!valid_out_refund_no(""));
        assert!(valid_notify_url("https://example.com/notify"));
        assert!(valid_notify_url("http://127.0.0.1:9000/pay"));
        assert!(!valid_notify_url("ftp://example.com"));
        assert!(!valid_notify_url("https:///x"));
    }

    #[test]
    fn routes_by_method_and_path() {
        assert!(matches!(
            route("POST", "/v3/pay/transactions/jsapi"),
            Some(Route::Prepay(TradeKind::Jsapi))
        ));
        assert!(route("GET", "/v3/pay/transactions/jsapi").is_none());
        assert!(matches!(
            route("GET", "/v3/pay/transactions/out-trade-no/A%2AB"),
            Some(Route::QueryByOutTradeNo(n)) if n == "A*B"
        ));
        assert!(matches!(
            route("POST", "/v3/pay/transactions/out-trade-no/ABCDEF/close"),
            Some(Route::Close(n)) if n == "ABCDEF"
        ));
        assert!(route("GET", "/v3/pay/transactions/out-trade-no/").is_none());
        assert!(route("GET", "/v3/certificates/").is_none());
    }
}
