//! The bill's columns, found by header name, and how one field reads.

use super::BillError;

/// Yuan text (`29.90`, `-1.56000`, `0`) to fen, exactly: no floating point anywhere. WeChat
/// Pay prints fees with five decimals; digits past the fen must be zeros.
pub fn yuan_to_fen_signed(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    // Ten digits of yuan keep any sum of a million rows inside i64.
    if int_part.is_empty() || int_part.len() > 10 {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac_part.trim_end_matches('0');
    if frac.len() > 2 {
        return None;
    }
    let yuan: i64 = int_part.parse().ok()?;
    let fen: i64 = format!("{frac:0<2}").parse().ok()?;
    let total = yuan.checked_mul(100)?.checked_add(fen)?;
    Some(if negative { -total } else { total })
}

/// A data or summary line's fields. Every field starts with a backtick and fields are never
/// quoted, so WeChat Pay's separator is a comma followed by a backtick: a comma alone (JSON
/// in 商户数据包) stays inside its field.
pub(super) fn data_fields(text: &str) -> Vec<&str> {
    let body = text.trim_start().strip_prefix('`').unwrap_or(text);
    body.split(",`").collect()
}

/// A header line's names: no backticks there, so plain commas.
pub(super) fn header_fields(text: &str) -> Vec<&str> {
    text.split(',').collect()
}

/// A data field with surrounding spaces trimmed.
pub(super) fn field(raw: &str) -> &str {
    raw.trim()
}

pub(super) struct Columns {
    pub count: usize,
    pub trade_time: Option<usize>,
    pub payer_openid: Option<usize>,
    pub appid: usize,
    pub mchid: usize,
    pub transaction_id: usize,
    pub out_trade_no: usize,
    pub trade_state: usize,
    pub settlement_total: usize,
    pub total: usize,
    pub refund_id: usize,
    pub out_refund_no: usize,
    pub refund: usize,
    /// 申请退款金额: absent from older bills, where 退款金额 stands for it.
    pub refund_applied: Option<usize>,
    pub refund_status: usize,
    pub fee: usize,
}

fn find(header: &[&str], name: &'static str) -> Result<usize, BillError> {
    header
        .iter()
        .position(|h| h.trim() == name)
        .ok_or(BillError::MissingColumn(name))
}

impl Columns {
    pub fn from_header(header: &[&str]) -> Result<Columns, BillError> {
        Ok(Columns {
            count: header.len(),
            trade_time: find(header, "交易时间").ok(),
            payer_openid: find(header, "用户标识").ok(),
            appid: find(header, "公众账号ID")?,
            mchid: find(header, "商户号")?,
            transaction_id: find(header, "微信订单号")?,
            out_trade_no: find(header, "商户订单号")?,
            trade_state: find(header, "交易状态")?,
            settlement_total: find(header, "应结订单金额")?,
            total: find(header, "订单金额")?,
            refund_id: find(header, "微信退款单号")?,
            out_refund_no: find(header, "商户退款单号")?,
            refund: find(header, "退款金额")?,
            refund_applied: find(header, "申请退款金额").ok(),
            refund_status: find(header, "退款状态")?,
            fee: find(header, "手续费")?,
        })
    }
}

pub(super) struct SummaryColumns {
    pub count: usize,
    pub rows: usize,
    pub settlement_total: usize,
    pub refund_total: usize,
    pub fee_total: usize,
    pub order_total: usize,
    pub refund_applied_total: Option<usize>,
}

impl SummaryColumns {
    pub fn from_header(header: &[&str]) -> Result<SummaryColumns, BillError> {
        Ok(SummaryColumns {
            count: header.len(),
            rows: find(header, "总交易单数")?,
            settlement_total: find(header, "应结订单总金额")?,
            refund_total: find(header, "退款总金额")?,
            fee_total: find(header, "手续费总金额")?,
            order_total: find(header, "订单总金额")?,
            refund_applied_total: find(header, "申请退款总金额").ok(),
        })
    }
}
