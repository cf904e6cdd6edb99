//! The daily trade bill (交易账单), written from WeChat Pay's documentation:
//!
//! - `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd&bill_type=ALL` answers (signed, like every
//!   API answer) `download_url`, `hash_type: SHA1` and `hash_value`, the SHA1 of the file.
//! - The merchant GETs `download_url` with a signed request; the file comes back **unsigned**
//!   ("该接口响应的信息请求头中不包含微信接口响应的签名值"), so its hash is what proves it.
//! - The file: a header line, one line per payment or refund (every field prefixed with a
//!   backtick so Excel keeps long numbers), then a summary header and one summary line.
//!   Amounts are yuan. Payments are billed on the day they succeeded, refunds on the day
//!   they were accepted, with the status they had when the bill was generated.
//! - WeChat Pay starts generating day D's bill at 09:00 the next day and advises fetching it
//!   after 10:00 Beijing time. Before that (and for today or later) the simulator answers
//!   `400 STATEMENT_CREATING`; a day with no transaction answers `400 NO_STATEMENT_EXIST`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use serde_json::json;
use time::{Date, OffsetDateTime, Time};

use crate::api::Reply;
use crate::crypto;
use crate::state::{SimOrder, SimRefund, State};
use crate::{lock, Simulator};

/// The detail header of an ALL bill (所有订单).
pub const ALL_HEADER: &[&str] = &[
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The summary header (汇总数据表头).
pub const SUMMARY_HEADER: &[&str] = &[
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// How long a `download_url` stays valid ("URL有效期30s").
const DOWNLOAD_TTL: Duration = Duration::from_secs(30);

/// The simulated rate: 0.6%, the common rate for mini-program merchants.
const FEE_PER_MILLE: i64 = 6;

/// Differences between what the simulator knows and what its bill says, for tests.
#[derive(Debug, Clone, Default)]
pub(crate) struct BillTamper {
    /// `out_trade_no` (payment rows) or `out_refund_no` (refund rows) left out of the bill.
    pub dropped: HashSet<String>,
    /// The amount (fen) the bill shows instead, by `out_trade_no` or `out_refund_no`.
    pub amounts: HashMap<String, i64>,
    /// Answer a `hash_value` that does not match the file.
    pub wrong_hash: bool,
    /// Serve bills for any date up to today, without waiting for 10:00 the next day.
    pub early: bool,
}

/// A generated bill waiting to be downloaded.
#[derive(Debug, Clone)]
pub(crate) struct PendingDownload {
    pub file: Vec<u8>,
    pub issued: Instant,
}

/// `12.34` from fen, sign included (refund fees are negative).
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let f = fen.unsigned_abs();
    format!("{sign}{}.{:02}", f / 100, f % 100)
}

/// Fee in fen, rounded half up.
fn fee(fen: i64) -> i64 {
    (fen * FEE_PER_MILLE + 500) / 1000
}

fn cst_date(rfc3339: Option<&str>) -> Option<Date> {
    rfc3339
        .and_then(crypto::parse_time)
        .map(|t| t.to_offset(crypto::cst()).date())
}

/// `2024-01-02 03:04:05`, Beijing time, as the bill shows times.
fn bill_time(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(crypto::parse_time) else {
        return String::new();
    };
    let t = t.to_offset(crypto::cst());
    format!(
        "{} {:02}:{:02}:{:02}",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Commas and line breaks would split a field: WeChat Pay's bill has no quoting.
fn clean(s: &str) -> String {
    s.replace([',', '\r', '\n'], " ")
}

fn line(fields: &[String]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('`');
        out.push_str(f);
    }
    out.push_str("\r\n");
    out
}

#[derive(Default)]
struct Totals {
    rows: usize,
    settlement: i64,
    refund: i64,
    fee: i64,
    order: i64,
    refund_applied: i64,
}

fn payment_row(o: &SimOrder, total: i64, t: &mut Totals) -> String {
    let f = fee(total);
    t.rows += 1;
    t.settlement += total;
    t.order += total;
    t.fee += f;
    line(&[
        bill_time(o.success_time.as_deref()),
        o.appid.clone(),
        o.mchid.clone(),
        "0".into(),
        String::new(),
        o.transaction_id.clone().unwrap_or_default(),
        o.out_trade_no.clone(),
        o.payer_openid.clone().unwrap_or_default(),
        o.trade_type.clone(),
        "SUCCESS".into(),
        "OTHERS".into(),
        "CNY".into(),
        yuan(total),
        yuan(0),
        "0".into(),
        "0".into(),
        yuan(0),
        yuan(0),
        String::new(),
        String::new(),
        clean(&o.description),
        clean(o.attach.as_deref().unwrap_or_default()),
        yuan(f),
        "0.60%".into(),
        yuan(total),
        yuan(0),
        String::new(),
    ])
}

/// A refund row repeats the original payment's identifiers and amounts; only its refund
/// columns count towards the refund totals.
fn refund_row(r: &SimRefund, order: Option<&SimOrder>, amount: i64, t: &mut Totals) -> String {
    let f = -fee(amount);
    t.rows += 1;
    t.refund += amount;
    t.refund_applied += amount;
    t.fee += f;
    line(&[
        bill_time(Some(&r.create_time)),
        order.map(|o| o.appid.clone()).unwrap_or_default(),
        r.mchid.clone(),
        "0".into(),
        String::new(),
        r.transaction_id.clone(),
        r.out_trade_no.clone(),
        order
            .and_then(|o| o.payer_openid.clone())
            .unwrap_or_default(),
        order.map(|o| o.trade_type.clone()).unwrap_or_default(),
        "REFUND".into(),
        "OTHERS".into(),
        "CNY".into(),
        yuan(r.amount_total),
        yuan(0),
        r.refund_id.clone(),
        r.out_refund_no.clone(),
        yuan(amount),
        yuan(0),
        "ORIGINAL".into(),
        r.status.clone(),
        clean(order.map(|o| o.description.as_str()).unwrap_or_default()),
        clean(order.and_then(|o| o.attach.as_deref()).unwrap_or_default()),
        yuan(f),
        "0.60%".into(),
        yuan(r.amount_total),
        yuan(amount),
        String::new(),
    ])
}

/// Day `date`'s ALL bill as WeChat Pay would write it now; `None` when nothing happened.
pub(crate) fn render(st: &State, tamper: &BillTamper, date: Date) -> Option<Vec<u8>> {
    let mut t = Totals::default();
    let mut body = String::new();
    let mut paid: Vec<&SimOrder> = st
        .orders
        .values()
        .filter(|o| o.is_paid() && cst_date(o.success_time.as_deref()) == Some(date))
        .collect();
    paid.sort_by(|a, b| a.success_time.cmp(&b.success_time));
    for o in paid {
        if tamper.dropped.contains(&o.out_trade_no) {
            continue;
        }
        let total = tamper
            .amounts
            .get(&o.out_trade_no)
            .copied()
            .unwrap_or(o.amount_total);
        body.push_str(&payment_row(o, total, &mut t));
    }
    let mut refunds: Vec<&SimRefund> = st
        .refunds
        .values()
        .filter(|r| cst_date(Some(&r.create_time)) == Some(date))
        .collect();
    refunds.sort_by(|a, b| a.create_time.cmp(&b.create_time));
    for r in refunds {
        if tamper.dropped.contains(&r.out_refund_no) {
            continue;
        }
        let amount = tamper
            .amounts
            .get(&r.out_refund_no)
            .copied()
            .unwrap_or(r.amount_refund);
        body.push_str(&refund_row(
            r,
            st.orders.get(&r.out_trade_no),
            amount,
            &mut t,
        ));
    }
    if t.rows == 0 {
        return None;
    }
    let mut file = ALL_HEADER.join(",");
    file.push_str("\r\n");
    file.push_str(&body);
    file.push_str(&SUMMARY_HEADER.join(","));
    file.push_str("\r\n");
    file.push_str(&line(&[
        t.rows.to_string(),
        yuan(t.settlement),
        yuan(t.refund),
        yuan(0),
        yuan(t.fee),
        yuan(t.order),
        yuan(t.refund_applied),
    ]));
    Some(file.into_bytes())
}

pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// When day `date`'s bill can be fetched: 10:00 Beijing time the next day.
fn ready_at(date: Date) -> Option<OffsetDateTime> {
    let next = date.next_day()?;
    Some(
        next.with_time(Time::from_hms(10, 0, 0).ok()?)
            .assume_offset(crypto::cst()),
    )
}

/// `GET /v3/bill/tradebill`.
pub(crate) fn trade_bill(sim: &Simulator, query: &str) -> Reply {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let Some(date) = query_param(query, "bill_date").and_then(|d| Date::parse(d, format).ok())
    else {
        return Reply::error(400, "PARAM_ERROR", "bill_date 应为 yyyy-MM-dd 格式的日期");
    };
    match query_param(query, "bill_type").unwrap_or("ALL") {
        "ALL" => {}
        other => {
            return Reply::error(
                400,
                "PARAM_ERROR",
                format!("模拟器只提供 ALL 类型账单，不支持 {other}"),
            )
        }
    }
    if query_param(query, "tar_type").is_some() {
        return Reply::error(400, "PARAM_ERROR", "模拟器不提供压缩账单（tar_type）");
    }
    let now = crypto::now_cst();
    let mut st = lock(&sim.inner.state);
    let ready = if st.bill.early {
        date <= now.date()
    } else {
        ready_at(date).is_some_and(|t| t <= now)
    };
    if !ready {
        return Reply::error(400, "STATEMENT_CREATING", "账单生成中，请稍后再试");
    }
    let Some(file) = render(&st, &st.bill, date) else {
        return Reply::error(
            400,
            "NO_STATEMENT_EXIST",
            "账单文件不存在，请检查当前商户号在指定日期内是否有成功的交易",
        );
    };
    let mut hash = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &file));
    if st.bill.wrong_hash {
        hash = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, b"not the bill"));
    }
    let token = crypto::random_alnum(64);
    st.downloads
        .retain(|_, d| d.issued.elapsed() < DOWNLOAD_TTL);
    st.downloads.insert(
        token.clone(),
        PendingDownload {
            file,
            issued: Instant::now(),
        },
    );
    Reply::json(
        200,
        &json!({
            "hash_type": "SHA1",
            "hash_value": hash,
            "download_url": format!("{}/v3/billdownload/file?token={token}", sim.base_url()),
        }),
    )
}

/// `GET /v3/billdownload/file?token=…`: the file, or a (signed) error.
pub(crate) fn download(sim: &Simulator, query: &str) -> Result<Vec<u8>, Reply> {
    let token = query_param(query, "token").unwrap_or_default();
    let st = lock(&sim.inner.state);
    match st.downloads.get(token) {
        Some(d) if d.issued.elapsed() < DOWNLOAD_TTL => Ok(d.file.clone()),
        Some(_) => Err(Reply::error(
            400,
            "PARAM_ERROR",
            "下载地址已过期，请重新申请",
        )),
        None => Err(Reply::error(404, "RESOURCE_NOT_EXISTS", "账单文件不存在")),
    }
}

impl Simulator {
    /// Day `date`'s ALL bill as the download would serve it now (tampering included).
    pub fn trade_bill_file(&self, date: Date) -> Option<Vec<u8>> {
        let st = lock(&self.inner.state);
        render(&st, &st.bill, date)
    }

    /// Leaves the payment (`out_trade_no`) or refund (`out_refund_no`) out of every bill.
    pub fn drop_from_bill(&self, number: &str) {
        lock(&self.inner.state)
            .bill
            .dropped
            .insert(number.to_string());
    }

    /// Bills show `fen` for this payment (`out_trade_no`) or refund (`out_refund_no`).
    pub fn alter_bill_amount(&self, number: &str, fen: i64) {
        lock(&self.inner.state)
            .bill
            .amounts
            .insert(number.to_string(), fen);
    }

    /// `hash_value` no longer matches the file (a corrupted download).
    pub fn break_bill_hash(&self, on: bool) {
        lock(&self.inner.state).bill.wrong_hash = on;
    }

    /// Serves bills up to and including today at once, instead of after 10:00 Beijing time
    /// the next day (local runs and tests).
    pub fn serve_bills_early(&self, on: bool) {
        lock(&self.inner.state).bill.early = on;
    }

    /// Forgets every drop, altered amount and broken hash.
    pub fn reset_bill(&self) {
        let mut st = lock(&self.inner.state);
        let early = st.bill.early;
        st.bill = BillTamper {
            early,
            ..BillTamper::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_is_exact_and_signed() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(1), "0.01");
        assert_eq!(yuan(2990), "29.90");
        assert_eq!(yuan(-6), "-0.06");
        assert_eq!(yuan(100_000_000), "1000000.00");
    }

    #[test]
    fn fee_rounds_half_up() {
        assert_eq!(fee(1), 0);
        assert_eq!(fee(84), 1); // 0.504 fen
        assert_eq!(fee(10_000), 60);
    }

    #[test]
    fn bills_are_ready_at_ten_beijing_time_the_next_day() {
        let d = Date::from_calendar_date(2024, time::Month::March, 31).unwrap();
        let at = ready_at(d).unwrap();
        assert_eq!(at.to_offset(time::UtcOffset::UTC).hour(), 2);
        assert_eq!(at.date().to_string(), "2024-04-01");
    }
}
