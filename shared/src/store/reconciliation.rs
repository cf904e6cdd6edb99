//! What a daily reconciliation against WeChat Pay's trade bill leaves behind: one
//! `reconciliations` row per bill date and one `reconciliation_items` row per discrepancy.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Order, StoreError};

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
    /// `mchid_mismatch`, `appid_mismatch`, `unknown_order`, `unknown_refund`, …
    pub kind: String,
    /// For an operator: what the bill said and what the store says (never secrets).
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait ReconciliationStore: Send + Sync {
    /// Writes the date's row. `repaired` adds to what earlier runs repaired; `flagged` is
    /// set to the number of items the date has now.
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
}
