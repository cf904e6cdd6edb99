//! WeChat Pay's daily trade bill (交易账单, `bill_type=ALL`), parsed as it streams in.
//!
//! The file is a header line, one line per payment or refund with every field prefixed by a
//! backtick, then a summary header and one summary line. Amounts are yuan with at most two
//! decimals. Columns are found by their header name: WeChat Pay says their order is not
//! fixed. Fields are never quoted (the backtick is the bill's only escape), so a line is
//! split on commas and must have exactly as many fields as the header.
//!
//! [`BillParser::feed`] takes the download chunk by chunk and keeps only the unfinished
//! line; [`BillParser::finish`] checks that the summary agrees with the rows.

/// A single line longer than this is not a bill line: refuse instead of buffering it.
const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the bill has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("the bill ends before its summary line")]
    Truncated,
    #[error("the summary says {what} is {summary}, the rows add up to {rows}")]
    SummaryMismatch {
        what: &'static str,
        summary: i64,
        rows: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// 交易状态 other than REFUND: a payment (SUCCESS, or REVOKED for one undone later).
    Payment,
    /// 交易状态 REFUND: a refund accepted that day, with its status when the bill was made.
    Refund,
}

/// One transaction line. Amounts in fen.
#[derive(Debug, Clone, PartialEq)]
pub struct BillRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub kind: RowKind,
    /// 交易时间, Beijing time, as written.
    pub trade_time: String,
    pub appid: String,
    pub mchid: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    /// 用户标识: the payer's openid, when the bill has the column.
    pub payer_openid: Option<String>,
    /// 交易状态: SUCCESS, REFUND, REVOKED.
    pub trade_state: String,
    /// 订单金额.
    pub total: i64,
    /// 应结订单金额.
    pub settlement_total: i64,
    /// 微信退款单号 / 商户退款单号: refund rows only.
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    /// 退款金额.
    pub refund: i64,
    /// 退款状态: SUCCESS, PROCESSING, CLOSED, ABNORMAL (refund rows).
    pub refund_status: Option<String>,
    /// 手续费; negative on refund rows (the fee given back).
    pub fee: i64,
}

/// The summary line, in fen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillSummary {
    /// 总交易单数.
    pub rows: i64,
    /// 应结订单总金额 (payment rows).
    pub settlement_total: i64,
    /// 退款总金额 (refund rows).
    pub refund_total: i64,
    /// 手续费总金额 (all rows).
    pub fee_total: i64,
    /// 订单总金额 (payment rows).
    pub order_total: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TradeBill {
    pub rows: Vec<BillRow>,
    pub summary: BillSummary,
}

/// Yuan text (`29.90`, `-0.06`, `0`) to fen, exactly: no floating point anywhere.
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

struct Columns {
    count: usize,
    trade_time: Option<usize>,
    payer_openid: Option<usize>,
    appid: usize,
    mchid: usize,
    transaction_id: usize,
    out_trade_no: usize,
    trade_state: usize,
    settlement_total: usize,
    total: usize,
    refund_id: usize,
    out_refund_no: usize,
    refund: usize,
    refund_status: usize,
    fee: usize,
}

fn find(header: &[&str], name: &'static str) -> Result<usize, BillError> {
    header
        .iter()
        .position(|h| h.trim() == name)
        .ok_or(BillError::MissingColumn(name))
}

impl Columns {
    fn from_header(header: &[&str]) -> Result<Columns, BillError> {
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
            refund_status: find(header, "退款状态")?,
            fee: find(header, "手续费")?,
        })
    }
}

struct SummaryColumns {
    count: usize,
    rows: usize,
    settlement_total: usize,
    refund_total: usize,
    fee_total: usize,
    order_total: usize,
}

impl SummaryColumns {
    fn from_header(header: &[&str]) -> Result<SummaryColumns, BillError> {
        Ok(SummaryColumns {
            count: header.len(),
            rows: find(header, "总交易单数")?,
            settlement_total: find(header, "应结订单总金额")?,
            refund_total: find(header, "退款总金额")?,
            fee_total: find(header, "手续费总金额")?,
            order_total: find(header, "订单总金额")?,
        })
    }
}

enum Stage {
    Header,
    Rows(Columns),
    Summary(SummaryColumns),
    Done,
}

/// Feed it the download as it arrives; it keeps the parsed rows, never the file.
pub struct BillParser {
    stage: Stage,
    partial: Vec<u8>,
    line: usize,
    rows: Vec<BillRow>,
    sums: BillSummary,
    summary: Option<BillSummary>,
}

impl Default for BillParser {
    fn default() -> Self {
        Self::new()
    }
}

/// A data field: the leading backtick removed, surrounding spaces trimmed.
fn field(raw: &str) -> &str {
    raw.trim().strip_prefix('`').unwrap_or(raw.trim()).trim()
}

impl BillParser {
    pub fn new() -> BillParser {
        BillParser {
            stage: Stage::Header,
            partial: Vec::new(),
            line: 0,
            rows: Vec::new(),
            sums: BillSummary::default(),
            summary: None,
        }
    }

    /// Rows parsed so far.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), BillError> {
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            let (head, rest) = chunk.split_at(pos);
            chunk = &rest[1..];
            if self.partial.is_empty() {
                self.line_bytes(head)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line_bytes(&line)?;
            }
        }
        if self.partial.len() + chunk.len() > MAX_LINE_BYTES {
            return Err(self.malformed(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// The bill, once its summary agrees with its rows.
    pub fn finish(mut self) -> Result<TradeBill, BillError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line_bytes(&last)?;
        }
        let summary = self.summary.ok_or(BillError::Truncated)?;
        let checks = [
            ("总交易单数", summary.rows, self.sums.rows),
            (
                "应结订单总金额",
                summary.settlement_total,
                self.sums.settlement_total,
            ),
            ("退款总金额", summary.refund_total, self.sums.refund_total),
            ("手续费总金额", summary.fee_total, self.sums.fee_total),
            ("订单总金额", summary.order_total, self.sums.order_total),
        ];
        for (what, summary, rows) in checks {
            if summary != rows {
                return Err(BillError::SummaryMismatch {
                    what,
                    summary,
                    rows,
                });
            }
        }
        Ok(TradeBill {
            rows: self.rows,
            summary,
        })
    }

    fn malformed(&self, reason: impl Into<String>) -> BillError {
        BillError::Malformed {
            line: self.line + 1,
            reason: reason.into(),
        }
    }

    fn line_bytes(&mut self, bytes: &[u8]) -> Result<(), BillError> {
        let text = std::str::from_utf8(bytes).map_err(|_| self.malformed("not UTF-8"))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        let text = if self.line == 0 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        let result = self.line_text(text);
        self.line += 1;
        result
    }

    fn line_text(&mut self, text: &str) -> Result<(), BillError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = text.split(',').collect();
        match &self.stage {
            Stage::Header => {
                self.stage = Stage::Rows(Columns::from_header(&fields)?);
            }
            // Data lines start with a backtick; the summary header does not.
            Stage::Rows(_) if !text.starts_with('`') => {
                self.stage = Stage::Summary(SummaryColumns::from_header(&fields)?);
            }
            Stage::Rows(cols) => {
                if fields.len() != cols.count {
                    return Err(self.malformed(format!(
                        "{} fields, the header has {}",
                        fields.len(),
                        cols.count
                    )));
                }
                let row = self.row(cols, &fields)?;
                self.add(row);
            }
            Stage::Summary(cols) => {
                if fields.len() != cols.count {
                    return Err(self.malformed(format!(
                        "summary has {} fields, its header has {}",
                        fields.len(),
                        cols.count
                    )));
                }
                let count = field(fields[cols.rows]);
                let rows = count
                    .parse::<i64>()
                    .map_err(|_| self.malformed(format!("总交易单数 `{count}` is not a count")))?;
                self.summary = Some(BillSummary {
                    rows,
                    settlement_total: self.amount(
                        &fields,
                        cols.settlement_total,
                        "应结订单总金额",
                    )?,
                    refund_total: self.amount(&fields, cols.refund_total, "退款总金额")?,
                    fee_total: self.amount(&fields, cols.fee_total, "手续费总金额")?,
                    order_total: self.amount(&fields, cols.order_total, "订单总金额")?,
                });
                self.stage = Stage::Done;
            }
            Stage::Done => return Err(self.malformed("text after the summary line")),
        }
        Ok(())
    }

    fn amount(&self, fields: &[&str], idx: usize, name: &str) -> Result<i64, BillError> {
        let text = field(fields[idx]);
        yuan_to_fen_signed(text)
            .ok_or_else(|| self.malformed(format!("{name} `{text}` is not an amount in yuan")))
    }

    fn row(&self, c: &Columns, f: &[&str]) -> Result<BillRow, BillError> {
        let text = |i: usize| field(f[i]).to_string();
        let optional = |i: usize| {
            let v = field(f[i]);
            (!v.is_empty() && v != "0").then(|| v.to_string())
        };
        let trade_state = text(c.trade_state);
        let kind = if trade_state == "REFUND" {
            RowKind::Refund
        } else {
            RowKind::Payment
        };
        let row = BillRow {
            line: self.line + 1,
            kind,
            trade_time: c.trade_time.map(text).unwrap_or_default(),
            appid: text(c.appid),
            mchid: text(c.mchid),
            transaction_id: text(c.transaction_id),
            out_trade_no: text(c.out_trade_no),
            payer_openid: c.payer_openid.and_then(optional),
            trade_state,
            total: self.amount(f, c.total, "订单金额")?,
            settlement_total: self.amount(f, c.settlement_total, "应结订单金额")?,
            refund_id: optional(c.refund_id),
            out_refund_no: optional(c.out_refund_no),
            refund: self.amount(f, c.refund, "退款金额")?,
            refund_status: optional(c.refund_status),
            fee: self.amount(f, c.fee, "手续费")?,
        };
        if row.out_trade_no.is_empty() {
            return Err(self.malformed("商户订单号 is empty"));
        }
        if kind == RowKind::Refund && row.out_refund_no.is_none() {
            return Err(self.malformed("a refund row without 商户退款单号"));
        }
        Ok(row)
    }

    fn add(&mut self, row: BillRow) {
        let s = &mut self.sums;
        s.rows += 1;
        s.fee_total = s.fee_total.saturating_add(row.fee);
        match row.kind {
            RowKind::Payment => {
                s.settlement_total = s.settlement_total.saturating_add(row.settlement_total);
                s.order_total = s.order_total.saturating_add(row.total);
            }
            RowKind::Refund => s.refund_total = s.refund_total.saturating_add(row.refund),
        }
        self.rows.push(row);
    }
}

#[cfg(test)]
#[path = "tradebill_tests.rs"]
mod tests;
