//! Payments the bill lists, remembered between the two passes over it, and the orders paid
//! here that it does not list.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;

use time::Date;

use super::{day_bounds, rows, ReconcileError, Reconciler, Tally, BATCH};
use crate::tradebill::{BillError, BillLine, BillReader, BillSummary, RowKind};

/// A payment number as it is remembered between the passes: 8 bytes instead of the string.
/// Two numbers sharing a hash (odds about 1 in 10^7 for a million-row day) would hide one
/// `missing_from_bill`, never cause a repair.
fn key_hash(no: &str) -> u64 {
    let mut h = DefaultHasher::new();
    no.hash(&mut h);
    h.finish()
}

/// The first pass: the summary agrees with the rows, and the payment numbers the bill lists.
pub(super) fn check<R: Read>(src: R) -> Result<(BillSummary, Vec<u64>), BillError> {
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
    /// Paid here that day, absent from the bill: a page of orders at a time. `false` when
    /// `stop` said so first (the next call looks again; findings are recorded once).
    pub(super) async fn missing_from_bill(
        &self,
        date: Date,
        billed: &[u64],
        dry_run: bool,
        tally: &mut Tally,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<bool, ReconcileError> {
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
            if stop() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
