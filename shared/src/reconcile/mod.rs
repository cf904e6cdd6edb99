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

mod days;
mod missing;
mod rows;
mod tally;

pub use days::{beijing, day_bounds, ready_at, yesterday, BILL_READY_HOUR};
use missing::check;
use tally::{outcome, Tally};

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::Date;

use crate::settlement::{SettleError, Settlement};
use crate::store::{Reconciliation, ReconciliationItem, Store, MAX_KEYS};
use crate::tradebill::{BillError, BillLine, BillReader, BillRow, BillSummary, RowKind};

/// How long one repaired payment may wait for its backend delivery; the outbox retries the
/// rest.
const DELIVERY_BUDGET: Duration = Duration::from_secs(2);

/// Rows looked up together: one query for their orders, one for their refunds.
pub const BATCH: usize = MAX_KEYS;

/// Findings the answer lists; the rest are in `reconciliation_items`.
pub const FINDINGS_IN_ANSWER: usize = 20;

/// A progress line in the log every this many rows.
pub const PROGRESS_EVERY: i64 = 50_000;

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
    /// `in_progress` only: data lines done so far, over every call for this bill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_done: Option<i64>,
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

/// The bill a run reads: its SHA1 (which names it in a checkpoint) and how to read it from
/// its start.
pub struct BillFile<'a, F> {
    pub hash: &'a str,
    pub open: F,
}

impl Reconciler<'_> {
    /// Reconciles `date` against `bill`, continuing where an earlier call for the same file
    /// stopped. After each batch the progress is saved (unless a dry run); once `stop_at`
    /// has passed the call answers `in_progress` and the next one goes on from there. Every
    /// call does at least one batch, so each makes progress.
    pub async fn run<R: Read + Send>(
        &self,
        date: Date,
        bill: BillFile<'_, impl Fn() -> std::io::Result<R> + Send + Sync>,
        dry_run: bool,
        stop_at: Option<Instant>,
    ) -> Result<Outcome, ReconcileError> {
        let io = |e: std::io::Error| ReconcileError::Bill(BillError::Io(e.to_string()));
        let (summary, billed) = check((bill.open)().map_err(io)?)?;
        let resumed = match dry_run {
            true => None,
            false => self
                .store
                .get_reconciliation_progress(&date.to_string())
                .await?
                .filter(|p| p.bill_hash == bill.hash),
        };
        let mut tally = resumed.as_ref().map(Tally::resumed).unwrap_or_default();
        let skip = resumed.map_or(0, |p| p.rows_done);
        let mut reader = BillReader::new((bill.open)().map_err(io)?);
        let mut done = 0i64;
        while done < skip {
            let n = reader
                .next_lines((skip - done).min(BATCH as i64) as usize)?
                .len();
            if n == 0 {
                break;
            }
            done += n as i64;
        }
        let started = Instant::now();
        let stop = || stop_at.is_some_and(|t| Instant::now() >= t);
        loop {
            let lines = reader.next_lines(BATCH)?;
            if lines.is_empty() {
                break;
            }
            let before = done / PROGRESS_EVERY;
            done += lines.len() as i64;
            self.batch(date, lines, dry_run, &mut tally).await?;
            if !dry_run {
                let p = tally.progress(date, bill.hash, done, summary.rows);
                self.store
                    .save_reconciliation_progress(&p, crate::util::now_utc())
                    .await?;
            }
            if done / PROGRESS_EVERY > before {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                tracing::info!(
                    bill_date = %date,
                    rows_done = done,
                    bill_rows = summary.rows,
                    rows_per_s = ((done - skip) as f64 / secs) as i64,
                    "reconciliation progress"
                );
            }
            if stop() {
                return Ok(self.in_progress(date, &summary, dry_run, done, tally));
            }
        }
        if !self
            .missing_from_bill(date, &billed, dry_run, &mut tally, &stop)
            .await?
        {
            return Ok(self.in_progress(date, &summary, dry_run, done, tally));
        }
        let outcome = self.finish(date, &summary, dry_run, tally).await?;
        if !dry_run {
            self.store
                .clear_reconciliation_progress(&date.to_string())
                .await?;
        }
        Ok(outcome)
    }

    fn in_progress(
        &self,
        date: Date,
        summary: &BillSummary,
        dry_run: bool,
        done: i64,
        tally: Tally,
    ) -> Outcome {
        let mut o = outcome(date, summary, dry_run, tally);
        o.status = "in_progress";
        o.rows_done = Some(done);
        o
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
        // A payment the batch also shows refunded (a refund not closed) went back: it is
        // recorded refunded, so the backend is never told "paid" alone for it. A refund row
        // in a later batch is synced after the payment and told as a refund event.
        let refunded: HashSet<&str> = ours
            .iter()
            .filter(|r| r.kind == RowKind::Refund && r.refund_status.as_deref() != Some("CLOSED"))
            .map(|r| r.out_trade_no.as_str())
            .collect();
        for row in &ours {
            let order = orders.get(&row.out_trade_no);
            let finding = match row.kind {
                RowKind::Payment => {
                    tally.payments += 1;
                    let refunded = refunded.contains(row.out_trade_no.as_str());
                    self.payment(row, order, refunded, dry_run).await?
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
        let mut outcome = outcome(date, summary, dry_run, tally);
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
