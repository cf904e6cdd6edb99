//! `reconciliations` and `reconciliation_items` on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

use super::{get_ts, map_err, order_from_row, ts, SqliteStore, ORDER_COLS};
use crate::store::{Order, Reconciliation, ReconciliationItem, ReconciliationStore, StoreError};

const RUN_COLS: &str = "bill_date, status, bill_rows, payments, payment_total, refunds, \
     refund_total, repaired, flagged, updated_at";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Reconciliation> {
    Ok(Reconciliation {
        bill_date: r.get(0)?,
        status: r.get(1)?,
        bill_rows: r.get(2)?,
        payments: r.get(3)?,
        payment_total: r.get(4)?,
        refunds: r.get(5)?,
        refund_total: r.get(6)?,
        repaired: r.get(7)?,
        flagged: r.get(8)?,
        updated_at: get_ts(r, 9)?,
    })
}

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<ReconciliationItem> {
    Ok(ReconciliationItem {
        bill_date: r.get(0)?,
        out_trade_no: r.get(1)?,
        out_refund_no: r.get(2)?,
        kind: r.get(3)?,
        detail: r.get(4)?,
        created_at: get_ts(r, 5)?,
    })
}

#[async_trait]
impl ReconciliationStore for SqliteStore {
    async fn save_reconciliation(
        &self,
        run: &Reconciliation,
    ) -> Result<Reconciliation, StoreError> {
        let now = ts(run.updated_at)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO reconciliations (bill_date, status, bill_rows, payments, payment_total, \
                 refunds, refund_total, repaired, flagged, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                 (SELECT COUNT(*) FROM reconciliation_items WHERE bill_date = ?1), ?9, ?9) \
             ON CONFLICT (bill_date) DO UPDATE SET status = excluded.status, \
                 bill_rows = excluded.bill_rows, payments = excluded.payments, \
                 payment_total = excluded.payment_total, refunds = excluded.refunds, \
                 refund_total = excluded.refund_total, \
                 repaired = reconciliations.repaired + excluded.repaired, \
                 flagged = excluded.flagged, updated_at = excluded.updated_at",
            params![
                run.bill_date,
                run.status,
                run.bill_rows,
                run.payments,
                run.payment_total,
                run.refunds,
                run.refund_total,
                run.repaired,
                now
            ],
        )
        .map_err(map_err)?;
        conn.query_row(
            &format!("SELECT {RUN_COLS} FROM reconciliations WHERE bill_date = ?1"),
            [&run.bill_date],
            run_from_row,
        )
        .map_err(map_err)
    }

    async fn get_reconciliation(
        &self,
        bill_date: &str,
    ) -> Result<Option<Reconciliation>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {RUN_COLS} FROM reconciliations WHERE bill_date = ?1"),
                [bill_date],
                run_from_row,
            )
            .optional()
            .map_err(map_err)
    }

    async fn add_reconciliation_item(&self, item: &ReconciliationItem) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "INSERT INTO reconciliation_items \
                     (bill_date, out_trade_no, out_refund_no, kind, detail, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (bill_date, kind, out_trade_no, out_refund_no) DO NOTHING",
                params![
                    item.bill_date,
                    item.out_trade_no,
                    item.out_refund_no,
                    item.kind,
                    item.detail,
                    ts(item.created_at)?
                ],
            )
            .map_err(map_err)?;
        Ok(changed == 1)
    }

    async fn reconciliation_items(
        &self,
        bill_date: &str,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        self.query_list(
            "SELECT bill_date, out_trade_no, out_refund_no, kind, detail, created_at \
             FROM reconciliation_items WHERE bill_date = ?1 ORDER BY id",
            bill_date,
            item_from_row,
        )
    }

    async fn orders_paid_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ORDER_COLS} FROM orders WHERE paid_at >= ?1 AND paid_at < ?2 \
                 AND status IN ('paid', 'refunded') ORDER BY paid_at"
            ))
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![ts(from)?, ts(to)?], order_from_row)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }
}
