//! The bill file: a header line, one line per payment or refund (every field prefixed with
//! a backtick), a summary header and one summary line. Amounts are yuan.
//!
//! As WeChat Pay's "交易账单详细说明" describes the ALL bill
//! (https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html): fees
//! are rounded to the fen and printed with five decimals, a refund's fee is negative, a
//! REFUND row prints `0.00` as its 应结订单金额 and 订单金额 and carries the refund in 退款金额
//! (what settled) and 申请退款金额 (what was asked), and fields are not quoted or escaped.

use std::collections::BTreeMap;

use time::Date;

use crate::bill::desk::{BillTamper, OtherAppPayment};
use crate::crypto;
use crate::model::{SimOrder, SimRefund};
use crate::money::yuan;

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

/// The simulated rate: 0.6%, the common rate for mini-program merchants.
const FEE_PER_MILLE: i64 = 6;

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

/// Line breaks would end the row. Commas stay: fields are split at a comma followed by a
/// backtick, and WeChat Pay prints texts as given.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A fee as the bill prints it: yuan to the fen, then three zeros (`0.18000`).
fn fee_text(fen: i64) -> String {
    format!("{}000", yuan(fen))
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
        fee_text(f),
        "0.60%".into(),
        yuan(total),
        yuan(0),
        String::new(),
    ])
}

fn other_app_row(p: &OtherAppPayment, t: &mut Totals) -> String {
    let f = fee(p.fen);
    t.rows += 1;
    t.settlement += p.fen;
    t.order += p.fen;
    t.fee += f;
    line(&[
        bill_time(Some(&p.success_time)),
        p.appid.clone(),
        p.mchid.clone(),
        "0".into(),
        String::new(),
        p.transaction_id.clone(),
        p.out_trade_no.clone(),
        String::new(),
        "APP".into(),
        "SUCCESS".into(),
        "OTHERS".into(),
        "CNY".into(),
        yuan(p.fen),
        yuan(0),
        "0".into(),
        "0".into(),
        yuan(0),
        yuan(0),
        String::new(),
        String::new(),
        "other app".into(),
        String::new(),
        fee_text(f),
        "0.60%".into(),
        yuan(p.fen),
        yuan(0),
        String::new(),
    ])
}

/// A refund row repeats the original payment's identifiers, not its amounts: 应结订单金额
/// and 订单金额 are `0.00`. `settled` is 退款金额, `amount` 申请退款金额.
fn refund_row(
    r: &SimRefund,
    order: Option<&SimOrder>,
    amount: i64,
    settled: i64,
    t: &mut Totals,
) -> String {
    let f = -fee(settled);
    t.rows += 1;
    t.refund += settled;
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
        yuan(0),
        yuan(0),
        r.refund_id.clone(),
        r.out_refund_no.clone(),
        yuan(settled),
        yuan(0),
        "ORIGINAL".into(),
        r.status.clone(),
        clean(order.map(|o| o.description.as_str()).unwrap_or_default()),
        clean(order.and_then(|o| o.attach.as_deref()).unwrap_or_default()),
        fee_text(f),
        "0.60%".into(),
        yuan(0),
        yuan(amount),
        String::new(),
    ])
}

/// Day `date`'s ALL bill as WeChat Pay would write it now; `None` when nothing happened.
pub(crate) fn render(
    orders: &BTreeMap<String, SimOrder>,
    refunds: &BTreeMap<String, SimRefund>,
    tamper: &BillTamper,
    date: Date,
) -> Option<Vec<u8>> {
    let mut t = Totals::default();
    let mut body = String::new();
    let mut paid: Vec<&SimOrder> = orders
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
    for p in &tamper.other_apps {
        if cst_date(Some(&p.success_time)) == Some(date) {
            body.push_str(&other_app_row(p, &mut t));
        }
    }
    let mut day_refunds: Vec<&SimRefund> = refunds
        .values()
        .filter(|r| cst_date(Some(&r.create_time)) == Some(date))
        .collect();
    day_refunds.sort_by(|a, b| a.create_time.cmp(&b.create_time));
    for r in day_refunds {
        if tamper.dropped.contains(&r.out_refund_no) {
            continue;
        }
        let amount = tamper
            .amounts
            .get(&r.out_refund_no)
            .copied()
            .unwrap_or(r.amount_refund);
        let coupon = tamper.coupon_refunds.get(&r.out_refund_no).copied();
        let settled = amount - coupon.unwrap_or(0).clamp(0, amount);
        let order = orders.get(&r.out_trade_no);
        body.push_str(&refund_row(r, order, amount, settled, &mut t));
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
        fee_text(t.fee),
        yuan(t.order),
        yuan(t.refund_applied),
    ]));
    Some(file.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_half_up() {
        assert_eq!(fee(1), 0);
        assert_eq!(fee(84), 1); // 0.504 fen
        assert_eq!(fee(10_000), 60);
    }
}
