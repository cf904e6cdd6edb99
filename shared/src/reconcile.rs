//! The daily reconciliation: WeChat Pay's trade bill for one day against `orders` and
//! `refunds`.
//!
//! What can be repaired safely is repaired through the same settlement a notification uses
//! (a payment WeChat Pay took but we never heard of; a refund that succeeded while we still
//! show `processing`). Everything else — amounts, merchant or app that differ, payments we
//! show that the bill lacks, refunds we never made — is flagged and changes nothing. Each
//! discrepancy is recorded once, so running a date again repairs, tells and records nothing
//! new.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::api::{Payer, RefundAmount, RefundInfo, Transaction, TransactionAmount};
use crate::settlement::{PaymentRecord, SettleError, Settlement};
use crate::store::{Reconciliation, ReconciliationItem, RefundStatus, Store};
use crate::tradebill::{BillRow, RowKind, TradeBill};

/// How long one repaired payment may wait for its backend delivery; the outbox retries the
/// rest.
const DELIVERY_BUDGET: Duration = Duration::from_secs(2);

/// WeChat Pay starts the bill at 09:00 the next day and advises fetching it after 10:00.
pub const BILL_READY_HOUR: u8 = 10;

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

/// The answer of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub bill_date: String,
    pub dry_run: bool,
    pub status: &'static str,
    pub bill_rows: i64,
    pub payments: i64,
    pub payment_total: i64,
    pub refunds: i64,
    pub refund_total: i64,
    /// Repaired by this run.
    pub repaired: i64,
    /// New discrepancies this run recorded (or would record).
    pub flagged: i64,
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

impl Reconciler<'_> {
    pub async fn run(
        &self,
        date: Date,
        bill: &TradeBill,
        dry_run: bool,
    ) -> Result<Outcome, SettleError> {
        let mut findings = Vec::new();
        let mut billed = HashSet::new();
        // A payment the bill also shows refunded (a refund not closed) went back: it is
        // recorded refunded.
        let refunded: HashSet<&str> = bill
            .rows
            .iter()
            .filter(|r| r.kind == RowKind::Refund && r.refund_status.as_deref() != Some("CLOSED"))
            .map(|r| r.out_trade_no.as_str())
            .collect();
        for row in &bill.rows {
            match row.kind {
                RowKind::Payment => {
                    billed.insert(row.out_trade_no.clone());
                    let refunded = refunded.contains(row.out_trade_no.as_str());
                    self.payment(row, refunded, dry_run, &mut findings).await?;
                }
                RowKind::Refund => self.refund(row, dry_run, &mut findings).await?,
            }
        }
        let (from, to) = day_bounds(date);
        for order in self.store.orders_paid_between(from, to).await? {
            if !billed.contains(&order.out_trade_no) {
                findings.push(flag(
                    "missing_from_bill",
                    &order.out_trade_no,
                    "",
                    format!(
                        "paid here ({} fen, transaction {}) but not in WeChat Pay's bill",
                        order.paid_amount.unwrap_or(order.amount),
                        order.transaction_id.as_deref().unwrap_or("-")
                    ),
                ));
            }
        }
        self.finish(date, bill, dry_run, findings).await
    }

    async fn finish(
        &self,
        date: Date,
        bill: &TradeBill,
        dry_run: bool,
        mut findings: Vec<Finding>,
    ) -> Result<Outcome, SettleError> {
        let bill_date = date.to_string();
        let now = crate::util::now_utc();
        let mut flagged = 0;
        for f in &mut findings {
            if dry_run {
                flagged += 1;
                continue;
            }
            let added = self
                .store
                .add_reconciliation_item(&ReconciliationItem {
                    bill_date: bill_date.clone(),
                    out_trade_no: f.out_trade_no.clone(),
                    out_refund_no: f.out_refund_no.clone(),
                    kind: f.kind.to_string(),
                    detail: f.detail.clone(),
                    created_at: now,
                })
                .await?;
            f.known = !added;
            flagged += i64::from(added);
        }
        let repaired = findings.iter().filter(|f| f.repaired).count() as i64;
        let payments = bill.rows.iter().filter(|r| r.kind == RowKind::Payment);
        let mut outcome = Outcome {
            bill_date: bill_date.clone(),
            dry_run,
            status: if findings.is_empty() {
                "matched"
            } else {
                "discrepancies"
            },
            bill_rows: bill.summary.rows,
            payments: payments.count() as i64,
            payment_total: bill.summary.settlement_total,
            refunds: bill
                .rows
                .iter()
                .filter(|r| r.kind == RowKind::Refund)
                .count() as i64,
            refund_total: bill.summary.refund_total,
            repaired,
            flagged,
            findings,
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
                    repaired,
                    flagged: 0,
                    updated_at: now,
                })
                .await?;
            outcome.stored = Some(stored);
        }
        Ok(outcome)
    }

    async fn payment(
        &self,
        row: &BillRow,
        refunded: bool,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), SettleError> {
        if row.trade_state != "SUCCESS" {
            return Ok(());
        }
        let no = row.out_trade_no.as_str();
        let Some(order) = self.store.get_order(no).await? else {
            findings.push(flag(
                "unknown_order",
                no,
                "",
                format!(
                    "in the bill (transaction {}) but not in orders",
                    row.transaction_id
                ),
            ));
            return Ok(());
        };
        if row.mchid != self.mchid {
            let detail = format!("bill mchid {} is not this merchant", row.mchid);
            findings.push(flag("mchid_mismatch", no, "", detail));
            return Ok(());
        }
        if row.appid != self.appid {
            let detail = format!("bill appid {} is not this app ({})", row.appid, self.appid);
            findings.push(flag("appid_mismatch", no, "", detail));
            return Ok(());
        }
        if row.total != order.amount {
            let detail = format!(
                "bill says {} fen, the order is {} fen; nothing changed",
                row.total, order.amount
            );
            findings.push(flag("amount_mismatch", no, "", detail));
            return Ok(());
        }
        if !order.status.is_unpaid() {
            if order.transaction_id.as_deref() != Some(row.transaction_id.as_str()) {
                let detail = format!(
                    "bill transaction {} but paid here as {}",
                    row.transaction_id,
                    order.transaction_id.as_deref().unwrap_or("-")
                );
                findings.push(flag("transaction_mismatch", no, "", detail));
            }
            return Ok(());
        }
        let detail = format!(
            "paid at WeChat Pay ({}, transaction {}) but {} here",
            row.trade_time,
            row.transaction_id,
            order.status.as_str()
        );
        if dry_run {
            findings.push(flag("repaired_payment", no, "", detail));
            return Ok(());
        }
        let mut tx = transaction(row);
        if refunded {
            tx.trade_state = Some("REFUND".into());
        }
        let record = self
            .settlement
            .record_transaction(&tx, "reconcile", "TRANSACTION.SUCCESS", DELIVERY_BUDGET)
            .await;
        match record {
            Ok(record) => {
                let mut f = flag("repaired_payment", no, "", detail);
                f.repaired = matches!(record, PaymentRecord::Recorded);
                findings.push(f);
            }
            Err(SettleError::Mismatch(m)) => {
                findings.push(flag("payment_mismatch", no, "", m.to_string()));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn refund(
        &self,
        row: &BillRow,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), SettleError> {
        let Some(refund_no) = row.out_refund_no.as_deref() else {
            return Ok(());
        };
        let no = row.out_trade_no.as_str();
        let Some(refund) = self.store.get_refund(refund_no).await? else {
            let detail = format!(
                "WeChat Pay refunded {} fen ({}) that we never recorded",
                row.refund,
                row.refund_status.as_deref().unwrap_or("-")
            );
            findings.push(flag("unknown_refund", no, refund_no, detail));
            return Ok(());
        };
        if refund.out_trade_no != row.out_trade_no || refund.amount != row.refund {
            let detail = format!(
                "bill: {} fen of {}; here: {} fen of {}; nothing changed",
                row.refund, row.out_trade_no, refund.amount, refund.out_trade_no
            );
            findings.push(flag("refund_mismatch", no, refund_no, detail));
            return Ok(());
        }
        // The bill is a snapshot taken when it was made: a refund it shows PROCESSING may
        // have finished since, so only SUCCESS is acted on.
        if row.refund_status.as_deref() != Some("SUCCESS") {
            return Ok(());
        }
        match refund.status {
            RefundStatus::Success => Ok(()),
            RefundStatus::Processing | RefundStatus::Abnormal => {
                let detail = format!("SUCCESS at WeChat Pay, {} here", refund.status.as_str());
                let mut f = flag("synced_refund", no, refund_no, detail);
                if !dry_run {
                    match self
                        .settlement
                        .record_refund(
                            &refund_info(row, self.mchid),
                            "reconcile",
                            None,
                            DELIVERY_BUDGET,
                        )
                        .await
                    {
                        Ok(changed) => f.repaired = changed == Some(true),
                        Err(SettleError::Mismatch(m)) => {
                            f = flag("refund_mismatch", no, refund_no, m.to_string());
                        }
                        Err(e) => return Err(e),
                    }
                }
                findings.push(f);
                Ok(())
            }
            other => {
                let detail = format!("SUCCESS at WeChat Pay, {} here", other.as_str());
                findings.push(flag("refund_status_mismatch", no, refund_no, detail));
                Ok(())
            }
        }
    }
}

fn flag(kind: &'static str, out_trade_no: &str, out_refund_no: &str, detail: String) -> Finding {
    Finding {
        kind,
        out_trade_no: out_trade_no.to_string(),
        out_refund_no: out_refund_no.to_string(),
        detail,
        repaired: false,
        known: false,
    }
}

/// `2024-05-01 10:00:00` (Beijing) as WeChat Pay's RFC 3339.
fn bill_time_rfc3339(text: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = PrimitiveDateTime::parse(text, format).ok()?;
    t.assume_offset(beijing())
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The transaction the bill row vouches for, as a query would have answered it.
fn transaction(row: &BillRow) -> Transaction {
    Transaction {
        appid: Some(row.appid.clone()),
        mchid: Some(row.mchid.clone()),
        out_trade_no: Some(row.out_trade_no.clone()),
        transaction_id: Some(row.transaction_id.clone()),
        trade_state: Some("SUCCESS".into()),
        success_time: bill_time_rfc3339(&row.trade_time),
        payer: row.payer_openid.clone().map(|openid| Payer {
            openid: Some(openid),
        }),
        amount: Some(TransactionAmount {
            total: Some(row.total),
            currency: Some("CNY".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn refund_info(row: &BillRow, mchid: &str) -> RefundInfo {
    RefundInfo {
        mchid: Some(mchid.to_string()),
        refund_id: row.refund_id.clone(),
        out_refund_no: row.out_refund_no.clone(),
        transaction_id: Some(row.transaction_id.clone()),
        out_trade_no: Some(row.out_trade_no.clone()),
        status: Some("SUCCESS".into()),
        // A refund row carries its order's amount (订单金额), which settlement checks
        // against the paid amount as it does for a notification's `amount.total`.
        amount: Some(RefundAmount {
            refund: Some(row.refund),
            total: Some(row.total),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
