//! The daily reconciliation: WeChat Pay's trade bill for one day against `orders` and
//! `refunds`.
//!
//! What can be repaired safely is repaired through the same settlement a notification uses
//! (a payment WeChat Pay took but we never heard of; a refund that succeeded while we still
//! show `processing`). Everything else — amounts, merchant or app that differ, payments we
//! show that the bill lacks, refunds we never made, lines that cannot be read — is flagged
//! and changes nothing. Each discrepancy is recorded once, so running a date again repairs,
//! tells and records nothing new.
//!
//! A merchant's day can be a million rows, so the bill is read from its file twice and never
//! held: once to check its summary (nothing is repaired from a bill whose totals disagree),
//! once in batches of [`BATCH`] rows, each looked up in one query per table. Findings are
//! written as they are found; the answer carries the first [`FINDINGS_IN_ANSWER`].

mod rows;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::settlement::{SettleError, Settlement};
use crate::store::{Reconciliation, ReconciliationItem, Store, MAX_KEYS};
use crate::tradebill::{BillError, BillLine, BillReader, BillRow, BillSummary, RowKind};

/// How long one repaired payment may wait for its backend delivery; the outbox retries the
/// rest.
const DELIVERY_BUDGET: Duration = Duration::from_secs(2);

/// WeChat Pay starts the bill at 09:00 the next day and advises fetching it after 10:00.
pub const BILL_READY_HOUR: u8 = 10;

/// Rows looked up together: one query for their orders, one for their refunds.
pub const BATCH: usize = MAX_KEYS;

/// Findings the answer lists; the rest are in `reconciliation_items`.
pub const FINDINGS_IN_ANSWER: usize = 20;

/// A progress line in the log every this many rows.
pub const PROGRESS_EVERY: i64 = 50_000;

pub fn beijing() -> UtcOffset {
    UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// Yesterday in Asia/Shanghai: the default bill date.
pub fn yesterday(now: OffsetDateTime) -> Date {
    let today = now.to_offset(beijing()).date();
    today.previous_day().unwrap_or(today)
}

/// `[00:00, 24:00)` of `date` in Beijing time: the bill's day.
pub fn day_bounds(date: Date) -> (OffsetDateTime, OffsetDateTime) {
    let start = date.midnight().assume_offset(beijing());
    (start, start + time::Duration::days(1))
}

/// When WeChat Pay advises fetching `date`'s bill: 10:00 Beijing time the next day.
pub fn ready_at(date: Date) -> OffsetDateTime {
    let at = Time::from_hms(BILL_READY_HOUR, 0, 0).unwrap_or(Time::MIDNIGHT);
    PrimitiveDateTime::new(date, at).assume_offset(beijing()) + time::Duration::days(1)
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error("the bill is not in WeChat Pay's format: {0}")]
    Bill(#[from] BillError),
}

impl From<crate::store::StoreError> for ReconcileError {
    fn from(e: crate::store::StoreError) -> Self {
        ReconcileError::Settle(SettleError::Store(e))
    }
}

/// One discrepancy as reported (and, unless a dry run, recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: &'static str,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub out_refund_no: String,
    pub detail: String,
    /// Whether this run repaired it (always false in a dry run).
    pub repaired: bool,
    /// Already recorded by an earlier run of this date.
    pub known: bool,
}

/// Rows of the merchant's other apps (公众账号ID ≠ ours): counted, not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OtherApps {
    pub count: i64,
    /// Their payments' 订单金额 less their refunds' 退款金额, in fen.
    pub amount: i64,
}

/// The answer of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub bill_date: String,
    pub dry_run: bool,
    pub status: &'static str,
    pub bill_rows: i64,
    /// Payment rows of this app.
    pub payments: i64,
    pub payment_total: i64,
    /// Refund rows of this app.
    pub refunds: i64,
    pub refund_total: i64,
    pub other_apps: OtherApps,
    /// Repaired by this run.
    pub repaired: i64,
    /// New discrepancies this run recorded (or would record).
    pub flagged: i64,
    /// Discrepancies this run found, recorded before or not.
    pub findings_total: i64,
    /// The first [`FINDINGS_IN_ANSWER`] of them.
    pub findings: Vec<Finding>,
    /// The stored row after this run (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<Reconciliation>,
}

pub struct Reconciler<'a> {
    pub store: &'a dyn Store,
    pub settlement: &'a Settlement<'a>,
    pub mchid: &'a str,
    pub appid: &'a str,
}

/// What a run has counted so far.
#[derive(Default)]
struct Tally {
    payments: i64,
    refunds: i64,
    other_apps: OtherApps,
    repaired: i64,
    flagged: i64,
    total: i64,
    shown: Vec<Finding>,
}

/// A payment number as it is remembered between the passes: 8 bytes instead of the string.
/// Two numbers sharing a hash (odds about 1 in 10^7 for a million-row day) would hide one
/// `missing_from_bill`, never cause a repair.
fn key_hash(no: &str) -> u64 {
    let mut h = DefaultHasher::new();
    no.hash(&mut h);
    h.finish()
}

/// The first pass: the summary agrees with the rows, and the payment numbers the bill lists.
fn check<R: Read>(src: R) -> Result<(BillSummary, Vec<u64>), BillError> {
    let mut reader = BillReader::new(src);
    let mut billed = Vec::new();
    loop {
        let lines = reader.next_lines(BATCH)?;
        if lines.is_empty() {
            break;
        }
        for l in lines {
            if let BillLine::Row(r) = l {
                if r.kind == RowKind::Payment {
                    billed.push(key_hash(&r.out_trade_no));
                }
            }
        }
    }
    billed.sort_unstable();
    Ok((reader.finish()?, billed))
}

impl Reconciler<'_> {
    /// Reconciles `date` against the bill `open` reads (from its start on each call).
    pub async fn run<R: Read + Send>(
        &self,
        date: Date,
        open: impl Fn() -> std::io::Result<R> + Send + Sync,
        dry_run: bool,
    ) -> Result<Outcome, ReconcileError> {
        let io = |e: std::io::Error| ReconcileError::Bill(BillError::Io(e.to_string()));
        let (summary, billed) = check(open().map_err(io)?)?;
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut reader = BillReader::new(open().map_err(io)?);
        let mut done = 0i64;
        loop {
            let lines = reader.next_lines(BATCH)?;
            if lines.is_empty() {
                break;
            }
            let before = done / PROGRESS_EVERY;
            done += lines.len() as i64;
            self.batch(date, lines, dry_run, &mut tally).await?;
            if done / PROGRESS_EVERY > before {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                tracing::info!(
                    bill_date = %date,
                    rows_done = done,
                    bill_rows = summary.rows,
                    rows_per_s = (done as f64 / secs) as i64,
                    "reconciliation progress"
                );
            }
        }
        self.missing_from_bill(date, &billed, dry_run, &mut tally)
            .await?;
        self.finish(date, &summary, dry_run, tally).await
    }

    /// One batch of lines: their orders and refunds in one query each, then row by row.
    async fn batch(
        &self,
        date: Date,
        lines: Vec<BillLine>,
        dry_run: bool,
        tally: &mut Tally,
    ) -> Result<(), ReconcileError> {
        let mut ours: Vec<BillRow> = Vec::with_capacity(lines.len());
        for l in lines {
            match l {
                BillLine::Unreadable { line, reason } => {
                    let f = rows::flag("unreadable_row", &format!("line {line}"), "", reason);
                    self.found(date, f, dry_run, tally).await?;
                }
                // WeChat Pay bills a merchant id, so one bill lists every app it serves.
                BillLine::Row(r) if r.appid != self.appid => {
                    tally.other_apps.count += 1;
                    tally.other_apps.amount += match r.kind {
                        RowKind::Payment => r.total,
                        RowKind::Refund => -r.refund,
                    };
                }
                BillLine::Row(r) => ours.push(r),
            }
        }
        let mut order_keys: Vec<String> = ours.iter().map(|r| r.out_trade_no.clone()).collect();
        order_keys.sort_unstable();
        order_keys.dedup();
        let refund_keys: Vec<String> = ours
            .iter()
            .filter_map(|r| r.out_refund_no.clone())
            .collect();
        let orders: HashMap<String, _> = if order_keys.is_empty() {
            HashMap::new()
        } else {
            let found = self.store.orders_by_numbers(&order_keys).await?;
            found
                .into_iter()
                .map(|o| (o.out_trade_no.clone(), o))
                .collect()
        };
        let refunds: HashMap<String, _> = if refund_keys.is_empty() {
            HashMap::new()
        } else {
            let found = self.store.refunds_by_numbers(&refund_keys).await?;
            found
                .into_iter()
                .map(|r| (r.out_refund_no.clone(), r))
                .collect()
        };
        for row in &ours {
            let order = orders.get(&row.out_trade_no);
            let finding = match row.kind {
                RowKind::Payment => {
                    tally.payments += 1;
                    self.payment(row, order, dry_run).await?
                }
                RowKind::Refund => {
                    tally.refunds += 1;
                    let refund = row.out_refund_no.as_ref().and_then(|n| refunds.get(n));
                    self.refund(row, refund, order, dry_run).await?
                }
            };
            if let Some(f) = finding {
                self.found(date, f, dry_run, tally).await?;
            }
        }
        Ok(())
    }

    /// Paid here that day, absent from the bill: a page of orders at a time.
    async fn missing_from_bill(
        &self,
        date: Date,
        billed: &[u64],
        dry_run: bool,
        tally: &mut Tally,
    ) -> Result<(), ReconcileError> {
        let (from, to) = day_bounds(date);
        let mut after = None;
        loop {
            let page = self
                .store
                .orders_paid_page(from, to, after.clone(), BATCH)
                .await?;
            for order in &page {
                if billed
                    .binary_search(&key_hash(&order.out_trade_no))
                    .is_err()
                {
                    let detail = format!(
                        "paid here ({} fen, transaction {}) but not in WeChat Pay's bill",
                        order.paid_amount.unwrap_or(order.amount),
                        order.transaction_id.as_deref().unwrap_or("-")
                    );
                    let f = rows::flag("missing_from_bill", &order.out_trade_no, "", detail);
                    self.found(date, f, dry_run, tally).await?;
                }
            }
            match page.last() {
                Some(last) if page.len() == BATCH => {
                    after = last.paid_at.map(|at| (at, last.out_trade_no.clone()));
                    if after.is_none() {
                        break;
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Records a finding as it is found (unless a dry run) and counts it.
    async fn found(
        &self,
        date: Date,
        mut f: Finding,
        dry_run: bool,
        tally: &mut Tally,
    ) -> Result<(), ReconcileError> {
        if dry_run {
            tally.flagged += 1;
        } else {
            let added = self
                .store
                .add_reconciliation_item(&ReconciliationItem {
                    bill_date: date.to_string(),
                    out_trade_no: f.out_trade_no.clone(),
                    out_refund_no: f.out_refund_no.clone(),
                    kind: f.kind.to_string(),
                    detail: f.detail.clone(),
                    created_at: crate::util::now_utc(),
                })
                .await?;
            f.known = !added;
            tally.flagged += i64::from(added);
        }
        tally.repaired += i64::from(f.repaired);
        tally.total += 1;
        if tally.shown.len() < FINDINGS_IN_ANSWER {
            tally.shown.push(f);
        }
        Ok(())
    }

    async fn finish(
        &self,
        date: Date,
        summary: &BillSummary,
        dry_run: bool,
        tally: Tally,
    ) -> Result<Outcome, ReconcileError> {
        let bill_date = date.to_string();
        let mut outcome = Outcome {
            bill_date: bill_date.clone(),
            dry_run,
            status: if tally.total == 0 {
                "matched"
            } else {
                "discrepancies"
            },
            bill_rows: summary.rows,
            payments: tally.payments,
            payment_total: summary.settlement_total,
            refunds: tally.refunds,
            refund_total: summary.refund_total,
            other_apps: tally.other_apps,
            repaired: tally.repaired,
            flagged: tally.flagged,
            findings_total: tally.total,
            findings: tally.shown,
            stored: None,
        };
        if !dry_run {
            let stored = self
                .store
                .save_reconciliation(&Reconciliation {
                    bill_date,
                    status: outcome.status.to_string(),
                    bill_rows: outcome.bill_rows,
                    payments: outcome.payments,
                    payment_total: outcome.payment_total,
                    refunds: outcome.refunds,
                    refund_total: outcome.refund_total,
                    repaired: outcome.repaired,
                    flagged: 0,
                    updated_at: crate::util::now_utc(),
                })
                .await?;
            outcome.stored = Some(stored);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
