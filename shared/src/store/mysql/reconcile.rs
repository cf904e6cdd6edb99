//! The reconciliation port over MySQL: the shared statements.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;

use super::*;
use crate::store::reconciliation::{
    item_row, items_page_sql, orders_by_numbers_sql, orders_paid_page_sql, progress_row,
    refunds_by_numbers_sql, run_row, DELETE_PROGRESS, INSERT_ITEM, INSERT_PROGRESS, INSERT_RUN,
    ORDERS_PAID_BETWEEN, SELECT_ITEMS, SELECT_PROGRESS, SELECT_RUN, UPDATE_PROGRESS, UPDATE_RUN,
};
use crate::store::{
    ItemKey, Reconciliation, ReconciliationItem, ReconciliationProgress, ReconciliationStore,
};

impl MySqlStore {
    async fn save_reconciliation_once(
        conn: &mut Conn,
        run: &Reconciliation,
    ) -> Result<Reconciliation, Fail> {
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = save_reconciliation_in(&mut tx, run).await;
        ended(tx, work).await
    }
}

async fn save_reconciliation_in(
    tx: &mut mysql_async::Transaction<'_>,
    run: &Reconciliation,
) -> Result<tx::End<Reconciliation>, Fail> {
    let now = dt(run.updated_at)?;
    let mut values = vec![
        Value::from(&run.status),
        Value::from(run.bill_rows),
        Value::from(run.payments),
        Value::from(run.payment_total),
        Value::from(run.refunds),
        Value::from(run.refund_total),
        Value::from(run.repaired),
        Value::from(now),
        Value::from(&run.bill_date),
        Value::from(&run.bill_date),
    ];
    tx.exec_drop(UPDATE_RUN, Params::Positional(values.clone()))
        .await?;
    // updated_at always changes, so an existing row always counts as affected.
    if tx.affected_rows() == 0 {
        values.push(Value::from(now));
        match tx.exec_drop(INSERT_RUN, Params::Positional(values)).await {
            // Another run of the same date inserted it first: run again, as an update.
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                return Err(Fail::Conflict("the reconciliation row"))
            }
            other => other?,
        }
    }
    let saved = one(tx, &SELECT_RUN, params![&run.bill_date], run_row)
        .await?
        .ok_or_else(|| StoreError::Query("reconciliation row not written".into()))?;
    Ok(tx::End::Commit(saved))
}

#[async_trait]
impl ReconciliationStore for MySqlStore {
    async fn save_reconciliation(
        &self,
        run: &Reconciliation,
    ) -> Result<Reconciliation, StoreError> {
        op!(self, |conn| Self::save_reconciliation_once(conn, run).await)
    }

    async fn get_reconciliation(
        &self,
        bill_date: &str,
    ) -> Result<Option<Reconciliation>, StoreError> {
        op!(self, |conn| one(
            conn,
            &SELECT_RUN,
            params![bill_date],
            run_row
        )
        .await)
    }

    async fn add_reconciliation_item(&self, item: &ReconciliationItem) -> Result<bool, StoreError> {
        op!(self, |conn| {
            let inserted = conn
                .exec_drop(
                    INSERT_ITEM,
                    params![
                        &item.bill_date,
                        &item.kind,
                        &item.out_trade_no,
                        &item.out_refund_no,
                        &item.detail,
                        dt(item.created_at)?,
                    ],
                )
                .await;
            match inserted {
                Ok(()) => Ok(true),
                Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    async fn reconciliation_items(
        &self,
        bill_date: &str,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        self.all(SELECT_ITEMS, params![bill_date], item_row).await
    }

    async fn orders_paid_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError> {
        self.all(
            &ORDERS_PAID_BETWEEN,
            params![dt(from)?, dt(to)?],
            rows::order,
        )
        .await
    }

    async fn reconciliation_items_page(
        &self,
        bill_date: &str,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<ReconciliationItem>, StoreError> {
        let mut values = vec![Value::from(bill_date)];
        if let Some(k) = after {
            values.extend([
                Value::from(&k.kind),
                Value::from(&k.kind),
                Value::from(&k.out_trade_no),
                Value::from(&k.out_trade_no),
                Value::from(&k.out_refund_no),
            ]);
        }
        let sql = items_page_sql(after.is_some(), limit);
        self.all(&sql, Params::Positional(values), item_row).await
    }

    async fn get_reconciliation_progress(
        &self,
        bill_date: &str,
    ) -> Result<Option<ReconciliationProgress>, StoreError> {
        op!(self, |conn| one(
            conn,
            &SELECT_PROGRESS,
            params![bill_date],
            progress_row
        )
        .await)
    }

    async fn save_reconciliation_progress(
        &self,
        p: &ReconciliationProgress,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let values = Params::Positional(vec![
            Value::from(&p.bill_hash),
            Value::from(p.rows_done),
            Value::from(p.bill_rows),
            Value::from(p.payments),
            Value::from(p.refunds),
            Value::from(p.other_count),
            Value::from(p.other_amount),
            Value::from(p.repaired),
            Value::from(p.flagged),
            Value::from(p.findings),
            Value::from(dt(now)?),
            Value::from(&p.bill_date),
        ]);
        op!(self, |conn| {
            conn.exec_drop(UPDATE_PROGRESS, values.clone()).await?;
            // MySQL counts a row whose values did not change as not affected: the insert
            // then meets the row and there is nothing left to write.
            if conn.affected_rows() == 0 {
                match conn.exec_drop(INSERT_PROGRESS, values.clone()).await {
                    Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {}
                    other => other?,
                }
            }
            Ok(())
        })
    }

    async fn clear_reconciliation_progress(&self, bill_date: &str) -> Result<(), StoreError> {
        self.exec(DELETE_PROGRESS, params![bill_date]).await?;
        Ok(())
    }

    async fn orders_paid_page(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<(OffsetDateTime, String)>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let mut values = vec![Value::from(dt(from)?), Value::from(dt(to)?)];
        if let Some((at, no)) = &after {
            values.extend([
                Value::from(dt(*at)?),
                Value::from(dt(*at)?),
                Value::from(no),
            ]);
        }
        let sql = orders_paid_page_sql(after.is_some(), limit);
        self.all(&sql, Params::Positional(values), rows::order)
            .await
    }

    async fn orders_by_numbers(&self, out_trade_nos: &[String]) -> Result<Vec<Order>, StoreError> {
        let sql = orders_by_numbers_sql(out_trade_nos.len())?;
        let values = out_trade_nos.iter().map(Value::from).collect();
        self.all(&sql, Params::Positional(values), rows::order)
            .await
    }

    async fn refunds_by_numbers(
        &self,
        out_refund_nos: &[String],
    ) -> Result<Vec<Refund>, StoreError> {
        let sql = refunds_by_numbers_sql(out_refund_nos.len())?;
        let values = out_refund_nos.iter().map(Value::from).collect();
        self.all(&sql, Params::Positional(values), rows::refund)
            .await
    }
}

impl MySqlStore {
    async fn all<T>(
        &self,
        sql: &str,
        params: Params,
        map: fn(&mut dyn Fields) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        op!(self, |conn| {
            let rows: Vec<Row> = conn.exec(sql, params.clone()).await?;
            Ok(rows
                .into_iter()
                .map(|mut r| map(&mut r))
                .collect::<Result<_, _>>()?)
        })
    }
}
