//! The reconciliation port over SQLite: the shared statements, each on a pooled connection.

use async_trait::async_trait;
use rusqlite::{params_from_iter, ErrorCode};

use super::*;
use crate::store::reconciliation::{
    item_row, run_row, INSERT_ITEM, INSERT_RUN, ORDERS_PAID_BETWEEN, SELECT_ITEMS, SELECT_RUN,
    UPDATE_RUN,
};
use crate::store::{Reconciliation, ReconciliationItem, ReconciliationStore};

#[async_trait]
impl ReconciliationStore for SqliteStore {
    async fn save_reconciliation(
        &self,
        run: &Reconciliation,
    ) -> Result<Reconciliation, StoreError> {
        let run = run.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let now = ts(run.updated_at)?;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![
                &run.status,
                &run.bill_rows,
                &run.payments,
                &run.payment_total,
                &run.refunds,
                &run.refund_total,
                &run.repaired,
                &now,
                &run.bill_date,
                &run.bill_date,
            ];
            if exec(&tx, UPDATE_RUN, params_from_iter(values.iter()))? == 0 {
                values.push(&now);
                exec(&tx, INSERT_RUN, params_from_iter(values.iter()))?;
            }
            let saved = one(&tx, &SELECT_RUN, [&run.bill_date], run_row)?
                .ok_or_else(|| StoreError::Query("reconciliation row not written".into()))?;
            tx.commit().map_err(map_err)?;
            Ok(saved)
        })
        .await
    }

    async fn get_reconciliation(
        &self,
        bill_date: &str,
    ) -> Result<Option<Reconciliation>, StoreError> {
        let date = bill_date.to_owned();
        self.run(move |c| one(c, &SELECT_RUN, [date], run_row))
            .await
    }

    async fn add_reconciliation_item(&self, item: &ReconciliationItem) -> Result<bool, StoreError> {
        let (item, created) = (item.clone(), ts(item.created_at)?);
        self.run(move |c| {
            let inserted = c.prepare_cached(INSERT_ITEM).and_then(|mut s| {
                s.execute(params![
                    item.bill_date,
                    item.kind,
                    item.out_trade_no,
                    item.out_refund_no,
                    item.detail,
                    created,
                ])
            });
            match inserted {
                Ok(_) => Ok(true),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == ErrorCode::ConstraintViolation =>
                {
                    Ok(false)
                }
                Err(e) => Err(map_err(e)),
            }
        })
        .await
    }

    async fn reconciliation_items(
        &self,
        bill_date: &str,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        let date = bill_date.to_owned();
        self.run(move |c| all(c, SELECT_ITEMS, [date], item_row))
            .await
    }

    async fn orders_paid_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError> {
        let (from, to) = (ts(from)?, ts(to)?);
        self.run(move |c| all(c, &ORDERS_PAID_BETWEEN, params![from, to], rows::order))
            .await
    }
}
