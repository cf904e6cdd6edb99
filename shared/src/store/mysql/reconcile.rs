//! The reconciliation port over MySQL: the shared statements.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;

use super::*;
use crate::store::reconciliation::{
    item_row, run_row, INSERT_ITEM, INSERT_RUN, ORDERS_PAID_BETWEEN, SELECT_ITEMS, SELECT_RUN,
    UPDATE_RUN,
};
use crate::store::{Reconciliation, ReconciliationItem, ReconciliationStore};

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
