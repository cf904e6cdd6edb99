//! The reconciliation port over SQLite: the shared statements, each on a pooled connection.

use async_trait::async_trait;
use rusqlite::{params_from_iter, ErrorCode};

use super::*;
use crate::store::reconciliation::{
    item_row, items_page_sql, orders_by_numbers_sql, orders_paid_page_sql, progress_row,
    refunds_by_numbers_sql, run_row, DELETE_PROGRESS, INSERT_ITEM, INSERT_PROGRESS, INSERT_RUN,
    ORDERS_PAID_BETWEEN, SELECT_ITEMS, SELECT_PROGRESS, SELECT_RUN, UPDATE_PROGRESS, UPDATE_RUN,
};
use crate::store::{
    ItemKey, Reconciliation, ReconciliationItem, ReconciliationProgress, ReconciliationStore,
};

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

    async fn reconciliation_items_page(
        &self,
        bill_date: &str,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        let mut values = vec![bill_date.to_owned()];
        if let Some(k) = after {
            values.extend([
                k.kind.clone(),
                k.kind.clone(),
                k.out_trade_no.clone(),
                k.out_trade_no.clone(),
                k.out_refund_no.clone(),
            ]);
        }
        let sql = items_page_sql(after.is_some(), limit);
        self.run(move |c| all(c, &sql, params_from_iter(values), item_row))
            .await
    }

    async fn get_reconciliation_progress(
        &self,
        bill_date: &str,
    ) -> Result<Option<ReconciliationProgress>, StoreError> {
        let date = bill_date.to_owned();
        self.run(move |c| one(c, &SELECT_PROGRESS, [date], progress_row))
            .await
    }

    async fn save_reconciliation_progress(
        &self,
        p: &ReconciliationProgress,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (p, now) = (p.clone(), ts(now)?);
        self.run(move |c| {
            let values: Vec<&dyn rusqlite::ToSql> = vec![
                &p.bill_hash,
                &p.rows_done,
                &p.bill_rows,
                &p.payments,
                &p.refunds,
                &p.other_count,
                &p.other_amount,
                &p.repaired,
                &p.flagged,
                &p.findings,
                &now,
                &p.bill_date,
            ];
            if exec(c, UPDATE_PROGRESS, params_from_iter(values.iter()))? == 0 {
                exec(c, INSERT_PROGRESS, params_from_iter(values.iter()))?;
            }
            Ok(())
        })
        .await
    }

    async fn clear_reconciliation_progress(&self, bill_date: &str) -> Result<(), StoreError> {
        let date = bill_date.to_owned();
        self.run(move |c| exec(c, DELETE_PROGRESS, [date]).map(|_| ()))
            .await
    }

    async fn orders_paid_page(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<(OffsetDateTime, String)>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let mut values: Vec<rusqlite::types::Value> = vec![ts(from)?.into(), ts(to)?.into()];
        if let Some((at, no)) = &after {
            values.extend([ts(*at)?.into(), ts(*at)?.into(), no.clone().into()]);
        }
        let sql = orders_paid_page_sql(after.is_some(), limit);
        self.run(move |c| all(c, &sql, params_from_iter(values), rows::order))
            .await
    }

    async fn orders_by_numbers(&self, out_trade_nos: &[String]) -> Result<Vec<Order>, StoreError> {
        let sql = orders_by_numbers_sql(out_trade_nos.len())?;
        let keys = out_trade_nos.to_vec();
        self.run(move |c| all(c, &sql, params_from_iter(keys), rows::order))
            .await
    }

    async fn refunds_by_numbers(
        &self,
        out_refund_nos: &[String],
    ) -> Result<Vec<Refund>, StoreError> {
        let sql = refunds_by_numbers_sql(out_refund_nos.len())?;
        let keys = out_refund_nos.to_vec();
        self.run(move |c| all(c, &sql, params_from_iter(keys), rows::refund))
            .await
    }
}
