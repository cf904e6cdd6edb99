//! The store's ports over MySQL: each method one statement on a pooled connection, or one of
//! the transactions in the parent module.

use async_trait::async_trait;

use super::*;
use crate::store::{MigrationReport, SchemaVersion};

#[async_trait]
impl Orders for MySqlStore {
    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError> {
        let created = dt(order.created_at)?;
        self.exec(
            &sql::INSERT_ORDER,
            params![
                &order.out_trade_no,
                &order.openid,
                &order.user_id,
                &order.generation_id,
                &order.package_type,
                &order.business_type,
                &order.business_id,
                order.amount,
                &order.description,
                &order.trade_type,
                created,
                created,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
        op!(self, |conn| select_order(conn, out_trade_no).await)
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        op!(self, |conn| {
            one(
                conn,
                &sql::SELECT_ORDER_BY_TRANSACTION,
                params![transaction_id],
                rows::order,
            )
            .await
        })
    }

    async fn mark_order_failed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.set_order_status(&sql::FAIL_ORDER, OrderStatus::Failed, out_trade_no, now)
            .await
    }

    async fn mark_closed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.set_order_status(&sql::CLOSE_ORDER, OrderStatus::Closed, out_trade_no, now)
            .await
    }
}

#[async_trait]
impl Logs for MySqlStore {
    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        op!(self, |conn| insert_log(conn, log, now).await)
    }
}

#[async_trait]
impl Transitions for MySqlStore {
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        op!(self, |conn| Self::mark_paid_once(conn, paid).await)
    }

    async fn finish_refund_queued(
        &self,
        result: &RefundResult,
    ) -> Result<FinishedRefund, StoreError> {
        rules::require_final(result)?;
        // A lost insert race is retried once: the second pass finds the row and reports
        // "no change" instead of applying the amount again.
        for _ in 0..2 {
            let once = op!(self, |conn| Self::finish_refund_once(conn, result).await)?;
            if let Some(outcome) = once {
                return Ok(outcome);
            }
        }
        Err(StoreError::Query(
            "refund row kept changing underneath; try again".to_string(),
        ))
    }
}

#[async_trait]
impl Refunds for MySqlStore {
    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        op!(self, |conn| Self::reserve_refund_once(conn, refund).await)
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        op!(self, |conn| select_refund(conn, out_refund_no).await)
    }

    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError> {
        self.exec(sql::SET_REFUND_ID, params![refund_id, out_refund_no])
            .await?;
        Ok(())
    }

    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        op!(self, |conn| Self::revive_failed_refund_once(
            conn,
            out_refund_no
        )
        .await)
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        op!(self, |conn| Self::fail_refund_once(
            conn,
            out_refund_no,
            None
        )
        .await)
    }

    async fn stale_refunds(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        let before = dt(before)?;
        op!(self, |conn| {
            let rows: Vec<Row> = conn
                .exec(&*sql::STALE_REFUNDS, params![before, before, limit])
                .await?;
            Ok(rows
                .into_iter()
                .map(|mut r| rows::refund(&mut r))
                .collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn fail_stale_refund(
        &self,
        out_refund_no: &str,
        before: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        op!(self, |conn| Self::fail_refund_once(
            conn,
            out_refund_no,
            Some(before)
        )
        .await)
    }
}

#[async_trait]
impl OutboxStore for MySqlStore {
    async fn claim_notification(
        &self,
        id: i64,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        op!(self, |conn| Self::claim_one(conn, id, lease_secs).await)
    }

    async fn claim_due_notifications(
        &self,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        op!(self, |conn| {
            let ids: Vec<i64> = conn
                .exec(&outbox_sql::MYSQL.due_ids, params![force, limit.max(0)])
                .await?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                // Each claim is its own guarded write: one lost to another node is simply
                // not ours, and the ones before it stay claimed.
                match Self::claim_one(conn, id, lease_secs).await {
                    Ok(Some(row)) => claimed.push(row),
                    Ok(None) => {}
                    Err(f) if f.is_conflict() => {}
                    Err(f) => return Err(f),
                }
            }
            Ok(claimed)
        })
    }

    async fn mark_delivered(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let changed = self
            .exec(
                &outbox_sql::MYSQL.mark_delivered,
                params![row.id, &row.lease],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn mark_delivery_failed(
        &self,
        row: &OutboxRow,
        error: &str,
        retry_in_secs: i64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .exec(
                &outbox_sql::MYSQL.mark_delivery_failed,
                params![
                    truncated_error(error),
                    outbox_sql::secs(retry_in_secs),
                    row.id,
                    &row.lease
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_unattempted(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let changed = self
            .exec(sql::RELEASE_UNATTEMPTED, params![row.id, &row.lease])
            .await?;
        Ok(changed == 1)
    }

    async fn oldest_pending_secs(&self) -> Result<Option<i64>, StoreError> {
        op!(self, |conn| {
            let age: Option<Option<i64>> = conn
                .exec_first(&outbox_sql::MYSQL.oldest_pending_secs, ())
                .await?;
            Ok(age.flatten())
        })
    }
}

#[cfg(feature = "test-helpers")]
#[async_trait]
impl crate::store::Inspect for MySqlStore {
    async fn count_orders(&self) -> Result<i64, StoreError> {
        op!(self, |conn| {
            let n: Option<i64> = conn.query_first(sql::COUNT_ORDERS).await?;
            Ok(n.unwrap_or(0))
        })
    }

    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.list(&sql::OUTBOX_FOR_ORDER, out_trade_no, rows::outbox)
            .await
    }

    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError> {
        self.list(&sql::LOGS_FOR_ORDER, out_trade_no, rows::log)
            .await
    }

    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError> {
        self.list(&sql::REFUNDS_FOR_ORDER, out_trade_no, rows::refund)
            .await
    }

    async fn rewind_outbox(&self, out_trade_no: &str, secs: i64) -> Result<(), StoreError> {
        let sql = outbox_sql::rewind(crate::store::schema::Dialect::MySql);
        self.exec(&sql, params![secs, secs, secs, out_trade_no])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for MySqlStore {
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.migrate_now().await
    }

    async fn schema_version(&self) -> Result<SchemaVersion, StoreError> {
        self.schema_version_now().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_now().await
    }
}
