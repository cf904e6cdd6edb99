//! What a run counts as it goes, saved as a checkpoint and answered at the end.

use time::Date;

use super::{Finding, OtherApps, Outcome};
use crate::store::ReconciliationProgress;
use crate::tradebill::BillSummary;

/// What a run has counted so far (over every call, when it continues a checkpoint).
#[derive(Default)]
pub(super) struct Tally {
    pub payments: i64,
    pub refunds: i64,
    pub other_apps: OtherApps,
    pub repaired: i64,
    pub flagged: i64,
    pub total: i64,
    pub shown: Vec<Finding>,
}

impl Tally {
    pub fn resumed(p: &ReconciliationProgress) -> Tally {
        Tally {
            payments: p.payments,
            refunds: p.refunds,
            other_apps: OtherApps {
                count: p.other_count,
                amount: p.other_amount,
            },
            repaired: p.repaired,
            flagged: p.flagged,
            total: p.findings,
            shown: Vec::new(),
        }
    }

    pub fn progress(
        &self,
        date: Date,
        hash: &str,
        done: i64,
        bill_rows: i64,
    ) -> ReconciliationProgress {
        ReconciliationProgress {
            bill_date: date.to_string(),
            bill_hash: hash.to_string(),
            rows_done: done,
            bill_rows,
            payments: self.payments,
            refunds: self.refunds,
            other_count: self.other_apps.count,
            other_amount: self.other_apps.amount,
            repaired: self.repaired,
            flagged: self.flagged,
            findings: self.total,
        }
    }
}

/// The answer for what `tally` counted.
pub(super) fn outcome(date: Date, summary: &BillSummary, dry_run: bool, tally: Tally) -> Outcome {
    Outcome {
        bill_date: date.to_string(),
        dry_run,
        status: if tally.total == 0 {
            "matched"
        } else {
            "discrepancies"
        },
        bill_rows: summary.rows,
        rows_done: None,
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
    }
}
