//! WeChat Pay's daily trade bill (交易账单, `bill_type=ALL`), parsed as it streams in.
//!
//! The file is a header line, one line per payment or refund with every field prefixed by a
//! backtick, then a summary header and one summary line. Columns are found by their header
//! name: WeChat Pay says their order is not fixed. A REFUND row prints `0.00` in 应结订单金额
//! and 订单金额; its refund is in 退款金额 (what settled) and 申请退款金额 (what was asked).
//! Fees carry five decimals (`0.18000`) and are negative on REFUND rows.
//!
//! [`BillParser::feed`] takes the file chunk by chunk and keeps only the unfinished line and
//! the lines read since the caller last took them ([`BillParser::take_lines`]), so memory
//! does not grow with the bill. A data line that cannot be read is handed on as
//! [`BillLine::Unreadable`] with its line number rather than refusing the whole bill: the
//! file's hash already vouches that WeChat Pay wrote it. [`BillParser::finish`] checks that
//! the summary agrees with the rows.

mod columns;
mod reader;

pub use columns::yuan_to_fen_signed;
use columns::{data_fields, field, header_fields, Columns, SummaryColumns};
pub use reader::BillReader;

/// A single line longer than this is not a bill line: refuse instead of buffering it.
const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the bill has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("the bill could not be read: {0}")]
    Io(String),
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
    /// 订单金额 (`0` on a REFUND row).
    pub total: i64,
    /// 应结订单金额 (`0` on a REFUND row).
    pub settlement_total: i64,
    /// 微信退款单号 / 商户退款单号: refund rows only.
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    /// 退款金额: what the refund settled (less than asked when a coupon paid part).
    pub refund: i64,
    /// 申请退款金额: what the merchant asked to refund.
    pub refund_applied: i64,
    /// 退款状态: SUCCESS, PROCESSING, CLOSED, ABNORMAL (refund rows).
    pub refund_status: Option<String>,
    /// 手续费; negative on refund rows (the fee given back).
    pub fee: i64,
}

/// What one data line of the file is. Nearly every line is a row, so rows are not boxed.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum BillLine {
    Row(BillRow),
    /// A line between the header and the summary that could not be read.
    Unreadable {
        line: usize,
        reason: String,
    },
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
    /// 手续费总金额 (all rows: payment fees less refunded fees).
    pub fee_total: i64,
    /// 订单总金额 (payment rows).
    pub order_total: i64,
}

/// A whole bill in memory: for tests and small files.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeBill {
    pub rows: Vec<BillRow>,
    /// Line numbers and reasons of lines that could not be read.
    pub unreadable: Vec<(usize, String)>,
    pub summary: BillSummary,
}

impl TradeBill {
    pub fn parse(bytes: &[u8]) -> Result<TradeBill, BillError> {
        let mut p = BillParser::new();
        p.feed(bytes)?;
        let lines = p.take_lines();
        let summary = p.finish()?;
        let mut bill = TradeBill {
            rows: Vec::new(),
            unreadable: Vec::new(),
            summary,
        };
        for l in lines {
            match l {
                BillLine::Row(r) => bill.rows.push(r),
                BillLine::Unreadable { line, reason } => bill.unreadable.push((line, reason)),
            }
        }
        Ok(bill)
    }
}

enum Stage {
    Header,
    Rows(Columns),
    Summary(SummaryColumns),
    Done,
}

#[derive(Default)]
struct Sums {
    summary: BillSummary,
    refund_applied: i64,
    unreadable: i64,
}

/// Feed it the file as it arrives; take the lines it read as often as you like.
pub struct BillParser {
    stage: Stage,
    partial: Vec<u8>,
    line: usize,
    ready: Vec<BillLine>,
    sums: Sums,
    summary: Option<(BillSummary, Option<i64>)>,
}

impl Default for BillParser {
    fn default() -> Self {
        Self::new()
    }
}

impl BillParser {
    pub fn new() -> BillParser {
        BillParser {
            stage: Stage::Header,
            partial: Vec::new(),
            line: 0,
            ready: Vec::new(),
            sums: Sums::default(),
            summary: None,
        }
    }

    /// Data lines read so far (rows and unreadable lines).
    pub fn lines_read(&self) -> i64 {
        self.sums.summary.rows + self.sums.unreadable
    }

    /// The lines read since the last call, in file order.
    pub fn take_lines(&mut self) -> Vec<BillLine> {
        std::mem::take(&mut self.ready)
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

    /// The summary, once it agrees with the rows. With unreadable lines only the count can
    /// be checked: their amounts are unknown, and the file's hash vouches for the rest.
    pub fn finish(mut self) -> Result<BillSummary, BillError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line_bytes(&last)?;
        }
        let (summary, applied) = self.summary.ok_or(BillError::Truncated)?;
        let rows = self.sums.summary;
        let mut checks = vec![("总交易单数", summary.rows, rows.rows + self.sums.unreadable)];
        if self.sums.unreadable == 0 {
            checks.extend([
                (
                    "应结订单总金额",
                    summary.settlement_total,
                    rows.settlement_total,
                ),
                ("退款总金额", summary.refund_total, rows.refund_total),
                ("手续费总金额", summary.fee_total, rows.fee_total),
                ("订单总金额", summary.order_total, rows.order_total),
            ]);
            if let Some(applied) = applied {
                checks.push(("申请退款总金额", applied, self.sums.refund_applied));
            }
        }
        for (what, summary, rows) in checks {
            if summary != rows {
                return Err(BillError::SummaryMismatch {
                    what,
                    summary,
                    rows,
                });
            }
        }
        Ok(summary)
    }

    fn malformed(&self, reason: impl Into<String>) -> BillError {
        BillError::Malformed {
            line: self.line + 1,
            reason: reason.into(),
        }
    }

    fn line_bytes(&mut self, bytes: &[u8]) -> Result<(), BillError> {
        let result = match std::str::from_utf8(bytes) {
            Ok(text) => {
                let text = text.strip_suffix('\r').unwrap_or(text);
                let text = if self.line == 0 {
                    text.strip_prefix('\u{feff}').unwrap_or(text)
                } else {
                    text
                };
                self.line_text(text)
            }
            Err(_) if matches!(self.stage, Stage::Rows(_)) && bytes.first() == Some(&b'`') => {
                self.unreadable("not UTF-8".into());
                Ok(())
            }
            Err(_) => Err(self.malformed("not UTF-8")),
        };
        self.line += 1;
        result
    }

    fn unreadable(&mut self, reason: String) {
        self.sums.unreadable += 1;
        self.ready.push(BillLine::Unreadable {
            line: self.line + 1,
            reason,
        });
    }

    fn line_text(&mut self, text: &str) -> Result<(), BillError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        match &self.stage {
            Stage::Header => {
                self.stage = Stage::Rows(Columns::from_header(&header_fields(text))?);
            }
            // Data lines start with a backtick; the summary header does not.
            Stage::Rows(_) if !text.starts_with('`') => {
                self.stage = Stage::Summary(SummaryColumns::from_header(&header_fields(text))?);
            }
            Stage::Rows(cols) => match self.row(cols, &data_fields(text)) {
                Ok(row) => self.add(row),
                Err(reason) => self.unreadable(reason),
            },
            Stage::Summary(cols) => {
                let fields = data_fields(text);
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
                let amount = |idx: usize, name: &str| {
                    amount(&fields, idx, name).map_err(|reason| self.malformed(reason))
                };
                let summary = BillSummary {
                    rows,
                    settlement_total: amount(cols.settlement_total, "应结订单总金额")?,
                    refund_total: amount(cols.refund_total, "退款总金额")?,
                    fee_total: amount(cols.fee_total, "手续费总金额")?,
                    order_total: amount(cols.order_total, "订单总金额")?,
                };
                let applied = match cols.refund_applied_total {
                    Some(i) => Some(amount(i, "申请退款总金额")?),
                    None => None,
                };
                self.summary = Some((summary, applied));
                self.stage = Stage::Done;
            }
            Stage::Done => return Err(self.malformed("text after the summary line")),
        }
        Ok(())
    }

    /// One data line, or why it cannot be read.
    fn row(&self, c: &Columns, f: &[&str]) -> Result<BillRow, String> {
        if f.len() != c.count {
            return Err(format!("{} fields, the header has {}", f.len(), c.count));
        }
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
        let refund = amount(f, c.refund, "退款金额")?;
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
            total: amount(f, c.total, "订单金额")?,
            settlement_total: amount(f, c.settlement_total, "应结订单金额")?,
            refund_id: optional(c.refund_id),
            out_refund_no: optional(c.out_refund_no),
            refund,
            refund_applied: match c.refund_applied {
                Some(i) => amount(f, i, "申请退款金额")?,
                None => refund,
            },
            refund_status: optional(c.refund_status),
            fee: amount(f, c.fee, "手续费")?,
        };
        if row.out_trade_no.is_empty() {
            return Err("商户订单号 is empty".into());
        }
        if kind == RowKind::Refund && row.out_refund_no.is_none() {
            return Err("a refund row without 商户退款单号".into());
        }
        Ok(row)
    }

    fn add(&mut self, row: BillRow) {
        let s = &mut self.sums.summary;
        s.rows += 1;
        s.fee_total = s.fee_total.saturating_add(row.fee);
        match row.kind {
            RowKind::Payment => {
                s.settlement_total = s.settlement_total.saturating_add(row.settlement_total);
                s.order_total = s.order_total.saturating_add(row.total);
            }
            RowKind::Refund => {
                s.refund_total = s.refund_total.saturating_add(row.refund);
                self.sums.refund_applied =
                    self.sums.refund_applied.saturating_add(row.refund_applied);
            }
        }
        self.ready.push(BillLine::Row(row));
    }
}

fn amount(fields: &[&str], idx: usize, name: &str) -> Result<i64, String> {
    let text = field(fields[idx]);
    yuan_to_fen_signed(text).ok_or_else(|| format!("{name} `{text}` is not an amount in yuan"))
}

#[cfg(test)]
mod tests;
