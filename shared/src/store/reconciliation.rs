//! What a daily reconciliation against WeChat Pay's trade bill leaves behind: one
//! `reconciliations` row per bill date and one `reconciliation_items` row per discrepancy.

use async_trait::async_trait;
use once_cell::sync::Lazy;
use serde::Serialize;
use time::OffsetDateTime;

use super::rows::Fields;
use super::sql::{ORDER_COLS, REFUND_COLS};
use super::{Order, Refund, StoreError};

/// A row of `reconciliations`. Amounts in fen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    /// `yyyy-MM-dd`, Beijing time.
    pub bill_date: String,
    /// `matched` (nothing to report) or `discrepancies` (see the items).
    pub status: String,
    /// Transaction lines in the bill.
    pub bill_rows: i64,
    pub payments: i64,
    /// 应结订单总金额.
    pub payment_total: i64,
    pub refunds: i64,
    /// 退款总金额.
    pub refund_total: i64,
    /// Orders and refunds brought in line with the bill, over every run for this date.
    pub repaired: i64,
    /// Discrepancies recorded for this date (rows of `reconciliation_items`).
    pub flagged: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A row of `reconciliation_items`: one discrepancy, recorded once.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationItem {
    pub bill_date: String,
    pub out_trade_no: String,
    /// Empty for payment discrepancies.
    pub out_refund_no: String,
    /// `repaired_payment`, `synced_refund`, `missing_from_bill`, `amount_mismatch`,
    /// `mchid_mismatch`, `unknown_order`, `unknown_refund`, `unreadable_row`, …
    pub kind: String,
    /// For an operator: what the bill said and what the store says (never secrets).
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Where a page of a date's items ends: the key of its last item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemKey {
    pub kind: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub out_refund_no: String,
}

impl ItemKey {
    pub fn of(item: &ReconciliationItem) -> ItemKey {
        ItemKey {
            kind: item.kind.clone(),
            out_trade_no: item.out_trade_no.clone(),
            out_refund_no: item.out_refund_no.clone(),
        }
    }
}

/// Parameters: bill_date, then with `after` its kind twice, out_trade_no twice and
/// out_refund_no. The limit is ours, written into the statement.
pub(super) fn items_page_sql(after: bool, limit: usize) -> String {
    let after = if after {
        " AND (kind > ? OR (kind = ? AND (out_trade_no > ? OR (out_trade_no = ? \
          AND out_refund_no > ?))))"
    } else {
        ""
    };
    format!(
        "SELECT bill_date, out_trade_no, out_refund_no, kind, detail, created_at \
         FROM reconciliation_items WHERE bill_date = ?{after} \
         ORDER BY kind, out_trade_no, out_refund_no LIMIT {limit}"
    )
}

/// A row of `reconciliation_progress`: how far a day's reconciliation got, and what the
/// lines done so far counted. Amounts in fen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciliationProgress {
    pub bill_date: String,
    /// The bill's SHA1 as WeChat Pay announced it: another file starts again from line one.
    pub bill_hash: String,
    /// Data lines of the bill done, in file order.
    pub rows_done: i64,
    pub bill_rows: i64,
    pub payments: i64,
    pub refunds: i64,
    pub other_count: i64,
    pub other_amount: i64,
    pub repaired: i64,
    /// Findings recorded new, and found (new or known), by the lines done.
    pub flagged: i64,
    pub findings: i64,
}

#[async_trait]
pub trait ReconciliationStore: Send + Sync {
    /// Writes the date's row and answers it as stored. `repaired` adds to what earlier runs
    /// repaired; `flagged` becomes the number of items the date has now.
    async fn save_reconciliation(&self, run: &Reconciliation)
        -> Result<Reconciliation, StoreError>;

    async fn get_reconciliation(
        &self,
        bill_date: &str,
    ) -> Result<Option<Reconciliation>, StoreError>;

    /// Records a discrepancy unless the same one (date, kind, order, refund) already is.
    /// Returns whether a row was added.
    async fn add_reconciliation_item(&self, item: &ReconciliationItem) -> Result<bool, StoreError>;

    async fn reconciliation_items(
        &self,
        bill_date: &str,
    ) -> Result<Vec<ReconciliationItem>, StoreError>;

    /// Orders whose `paid_at` is in `[from, to)` and that count as paid (`paid`, `refunded`).
    async fn orders_paid_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError>;

    /// Up to `limit` items of the date in key order (kind, order, refund), after `after`.
    async fn reconciliation_items_page(
        &self,
        bill_date: &str,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<ReconciliationItem>, StoreError>;

    async fn get_reconciliation_progress(
        &self,
        bill_date: &str,
    ) -> Result<Option<ReconciliationProgress>, StoreError>;

    /// Writes the date's progress (replacing what it had).
    async fn save_reconciliation_progress(
        &self,
        progress: &ReconciliationProgress,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Forgets the date's progress: the day is finished.
    async fn clear_reconciliation_progress(&self, bill_date: &str) -> Result<(), StoreError>;

    /// Up to `limit` of `orders_paid_between`, after `after` (`paid_at`, `out_trade_no`) in
    /// that order: a day of any size in pages.
    async fn orders_paid_page(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<(OffsetDateTime, String)>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError>;

    /// The orders among `out_trade_nos` that exist, in one query (at most [`MAX_KEYS`]).
    async fn orders_by_numbers(&self, out_trade_nos: &[String]) -> Result<Vec<Order>, StoreError>;

    /// The refunds among `out_refund_nos` that exist, in one query (at most [`MAX_KEYS`]).
    async fn refunds_by_numbers(
        &self,
        out_refund_nos: &[String],
    ) -> Result<Vec<Refund>, StoreError>;
}

/// Most keys one lookup takes: one statement, well under both dialects' parameter limits.
pub const MAX_KEYS: usize = 500;

/// `… WHERE column IN (?, …)` for `n` keys; refused past [`MAX_KEYS`].
fn in_list(select: &str, column: &str, n: usize) -> Result<String, StoreError> {
    if n == 0 || n > MAX_KEYS {
        return Err(StoreError::Query(format!(
            "{n} keys in one lookup; 1 to {MAX_KEYS} are allowed"
        )));
    }
    let marks = vec!["?"; n].join(", ");
    Ok(format!("{select} WHERE {column} IN ({marks})"))
}

pub(super) fn orders_by_numbers_sql(n: usize) -> Result<String, StoreError> {
    in_list(
        &format!("SELECT {ORDER_COLS} FROM orders"),
        "out_trade_no",
        n,
    )
}

pub(super) fn refunds_by_numbers_sql(n: usize) -> Result<String, StoreError> {
    in_list(
        &format!("SELECT {REFUND_COLS} FROM refunds"),
        "out_refund_no",
        n,
    )
}

// The statements, the same for both dialects.

const RUN_COLS: &str = "bill_date, status, bill_rows, payments, payment_total, refunds, \
     refund_total, repaired, flagged, updated_at";

pub(super) static SELECT_RUN: Lazy<String> =
    Lazy::new(|| format!("SELECT {RUN_COLS} FROM reconciliations WHERE bill_date = ?"));

/// Parameters: status, bill_rows, payments, payment_total, refunds, refund_total, repaired,
/// updated_at, bill_date (for the count), bill_date.
pub(super) const UPDATE_RUN: &str = "UPDATE reconciliations SET status = ?, bill_rows = ?, \
     payments = ?, payment_total = ?, refunds = ?, refund_total = ?, repaired = repaired + ?, \
     updated_at = ?, \
     flagged = (SELECT COUNT(*) FROM reconciliation_items WHERE bill_date = ?) \
     WHERE bill_date = ?";

/// The parameters of `UPDATE_RUN`, then `created_at`.
pub(super) const INSERT_RUN: &str = "INSERT INTO reconciliations (status, bill_rows, \
     payments, payment_total, refunds, refund_total, repaired, updated_at, flagged, \
     bill_date, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, \
     (SELECT COUNT(*) FROM reconciliation_items WHERE bill_date = ?), ?, ?)";

/// A duplicate (the same date, kind, order and refund) fails on the primary key.
pub(super) const INSERT_ITEM: &str = "INSERT INTO reconciliation_items \
     (bill_date, kind, out_trade_no, out_refund_no, detail, created_at) \
     VALUES (?, ?, ?, ?, ?, ?)";

pub(super) const SELECT_ITEMS: &str = "SELECT bill_date, out_trade_no, out_refund_no, kind, \
     detail, created_at FROM reconciliation_items WHERE bill_date = ? \
     ORDER BY created_at, kind, out_trade_no, out_refund_no";

pub(super) static ORDERS_PAID_BETWEEN: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT {ORDER_COLS} FROM orders WHERE paid_at >= ? AND paid_at < ? \
         AND status IN ('paid', 'refunded') ORDER BY paid_at, out_trade_no"
    )
});

/// Parameters: from, to and, with `after`, its paid_at twice and its out_trade_no. The
/// `paid_at >= ?` lets both dialects range-scan `idx_orders_paid_at` from the last page's
/// end. The limit is ours, not a caller's, so it is written into the statement.
pub(super) fn orders_paid_page_sql(after: bool, limit: usize) -> String {
    let after = if after {
        " AND paid_at >= ? AND (paid_at > ? OR out_trade_no > ?)"
    } else {
        ""
    };
    format!(
        "SELECT {ORDER_COLS} FROM orders WHERE paid_at >= ? AND paid_at < ?{after} \
         AND status IN ('paid', 'refunded') ORDER BY paid_at, out_trade_no LIMIT {limit}"
    )
}

const PROGRESS_COLS: &str = "bill_date, bill_hash, rows_done, bill_rows, payments, refunds, \
     other_count, other_amount, repaired, flagged, findings";

pub(super) static SELECT_PROGRESS: Lazy<String> = Lazy::new(|| {
    format!("SELECT {PROGRESS_COLS} FROM reconciliation_progress WHERE bill_date = ?")
});

/// Parameters: the columns after bill_date, updated_at, bill_date.
pub(super) const UPDATE_PROGRESS: &str = "UPDATE reconciliation_progress SET bill_hash = ?, \
     rows_done = ?, bill_rows = ?, payments = ?, refunds = ?, other_count = ?, \
     other_amount = ?, repaired = ?, flagged = ?, findings = ?, updated_at = ? \
     WHERE bill_date = ?";

/// The parameters of `UPDATE_PROGRESS`.
pub(super) const INSERT_PROGRESS: &str = "INSERT INTO reconciliation_progress (bill_hash, \
     rows_done, bill_rows, payments, refunds, other_count, other_amount, repaired, flagged, \
     findings, updated_at, bill_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const DELETE_PROGRESS: &str = "DELETE FROM reconciliation_progress WHERE bill_date = ?";

/// A row of `SELECT_PROGRESS`.
pub(super) fn progress_row(r: &mut dyn Fields) -> Result<ReconciliationProgress, StoreError> {
    Ok(ReconciliationProgress {
        bill_date: required(r.text(0)?, 0)?,
        bill_hash: required(r.text(1)?, 1)?,
        rows_done: required(r.int(2)?, 2)?,
        bill_rows: required(r.int(3)?, 3)?,
        payments: required(r.int(4)?, 4)?,
        refunds: required(r.int(5)?, 5)?,
        other_count: required(r.int(6)?, 6)?,
        other_amount: required(r.int(7)?, 7)?,
        repaired: required(r.int(8)?, 8)?,
        flagged: required(r.int(9)?, 9)?,
        findings: required(r.int(10)?, 10)?,
    })
}

fn required<T>(v: Option<T>, idx: usize) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Query(format!("column {idx} is NULL")))
}

/// A row of `SELECT_RUN`.
pub(super) fn run_row(r: &mut dyn Fields) -> Result<Reconciliation, StoreError> {
    Ok(Reconciliation {
        bill_date: required(r.text(0)?, 0)?,
        status: required(r.text(1)?, 1)?,
        bill_rows: required(r.int(2)?, 2)?,
        payments: required(r.int(3)?, 3)?,
        payment_total: required(r.int(4)?, 4)?,
        refunds: required(r.int(5)?, 5)?,
        refund_total: required(r.int(6)?, 6)?,
        repaired: required(r.int(7)?, 7)?,
        flagged: required(r.int(8)?, 8)?,
        updated_at: required(r.time(9)?, 9)?,
    })
}

/// A row of `SELECT_ITEMS`.
pub(super) fn item_row(r: &mut dyn Fields) -> Result<ReconciliationItem, StoreError> {
    Ok(ReconciliationItem {
        bill_date: required(r.text(0)?, 0)?,
        out_trade_no: required(r.text(1)?, 1)?,
        out_refund_no: required(r.text(2)?, 2)?,
        kind: required(r.text(3)?, 3)?,
        detail: required(r.text(4)?, 4)?,
        created_at: required(r.time(5)?, 5)?,
    })
}
