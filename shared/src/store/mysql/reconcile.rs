//! `reconciliations` and `reconciliation_items` on MySQL.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{params, Row};
use time::OffsetDateTime;

use super::{col, col_ts, dt, order_from_row, Fail, MySqlStore, ORDER_COLS};
use crate::store::{Order, Reconciliation, ReconciliationItem, ReconciliationStore, StoreError};

const RUN_COLS: &str = "bill_date, status, bill_rows, payments, payment_total, refunds, \
     refund_total, repaired, flagged, updated_at";

fn run_from_row(mut r: Row) -> Result<Reconciliation, StoreError> {
    Ok(Reconciliation {
        bill_date: col(&mut r, 0)?,
        status: col(&mut r, 1)?,
        bill_rows: col(&mut r, 2)?,
        payments: col(&mut r, 3)?,
        payment_total: col(&mut r, 4)?,
        refunds: col(&mut r, 5)?,
        refund_total: col(&mut r, 6)?,
        repaired: col(&mut r, 7)?,
        flagged: col(&mut r, 8)?,
        updated_at: col_ts(&mut r, 9)?,
    })
}

fn item_from_row(mut r: Row) -> Result<ReconciliationItem, StoreError> {
    Ok(ReconciliationItem {
        bill_date: col(&mut r, 0)?,
        out_trade_no: col(&mut r, 1)?,
        out_refund_no: col(&mut r, 2)?,
        kind: col(&mut r, 3)?,
        detail: col(&mut r, 4)?,
        created_at: col_ts(&mut r, 5)?,
    })
}

#[async_trait]
impl ReconciliationStore for MySqlStore {
    async fn save_reconciliation(
        &self,
        run: &Reconciliation,
    ) -> Result<Reconciliation, StoreError> {
        let job = async {
            let mut conn = self.conn().await?;
            let flagged: Option<i64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM reconciliation_items WHERE bill_date = ?",
                    (&run.bill_date,),
                )
                .await?;
            conn.exec_drop(
                "INSERT INTO reconciliations (bill_date, status, bill_rows, payments, \
                     payment_total, refunds, refund_total, repaired, flagged, created_at, \
                     updated_at) \
                 VALUES (:d, :s, :rows, :p, :pt, :r, :rt, :rep, :f, :now, :now) \
                 ON DUPLICATE KEY UPDATE status = VALUES(status), bill_rows = VALUES(bill_rows), \
                     payments = VALUES(payments), payment_total = VALUES(payment_total), \
                     refunds = VALUES(refunds), refund_total = VALUES(refund_total), \
                     repaired = repaired + VALUES(repaired), flagged = VALUES(flagged), \
                     updated_at = VALUES(updated_at)",
                params! {
                    "d" => &run.bill_date,
                    "s" => &run.status,
                    "rows" => run.bill_rows,
                    "p" => run.payments,
                    "pt" => run.payment_total,
                    "r" => run.refunds,
                    "rt" => run.refund_total,
                    "rep" => run.repaired,
                    "f" => flagged.unwrap_or(0),
                    "now" => dt(run.updated_at)?,
                },
            )
            .await?;
            let row: Option<Row> = conn
                .exec_first(
                    format!("SELECT {RUN_COLS} FROM reconciliations WHERE bill_date = ?"),
                    (&run.bill_date,),
                )
                .await?;
            let row = row.ok_or_else(|| StoreError::Query("reconciliation row vanished".into()))?;
            Ok::<_, Fail>(run_from_row(row)?)
        };
        job.await.map_err(|e| self.settle(e))
    }

    async fn get_reconciliation(
        &self,
        bill_date: &str,
    ) -> Result<Option<Reconciliation>, StoreError> {
        let rows = self
            .list(
                format!("SELECT {RUN_COLS} FROM reconciliations WHERE bill_date = ?"),
                bill_date,
                run_from_row,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn add_reconciliation_item(&self, item: &ReconciliationItem) -> Result<bool, StoreError> {
        let changed = self
            .exec_simple(
                "INSERT IGNORE INTO reconciliation_items \
                     (bill_date, out_trade_no, out_refund_no, kind, detail, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (
                    &item.bill_date,
                    &item.out_trade_no,
                    &item.out_refund_no,
                    &item.kind,
                    &item.detail,
                    dt(item.created_at)?,
                )
                    .into(),
            )
            .await?;
        Ok(changed == 1)
    }

    async fn reconciliation_items(
        &self,
        bill_date: &str,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        self.list(
            "SELECT bill_date, out_trade_no, out_refund_no, kind, detail, created_at \
             FROM reconciliation_items WHERE bill_date = ? ORDER BY id"
                .to_string(),
            bill_date,
            item_from_row,
        )
        .await
    }

    async fn orders_paid_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError> {
        let job = async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT {ORDER_COLS} FROM orders WHERE paid_at >= ? AND paid_at < ? \
                         AND status IN ('paid', 'refunded') ORDER BY paid_at"
                    ),
                    (dt(from)?, dt(to)?),
                )
                .await?;
            Ok::<_, Fail>(
                rows.into_iter()
                    .map(order_from_row)
                    .collect::<Result<_, _>>()?,
            )
        };
        job.await.map_err(|e| self.settle(e))
    }
}
