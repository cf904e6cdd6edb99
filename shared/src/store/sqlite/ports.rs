//! The store's ports over SQLite: each method one statement on a pooled connection, or one
//! of the transactions in the parent module. The work moves to a blocking thread, so it
//! takes owned copies of its arguments.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Orders for SqliteStore {
    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError> {
        let created = ts(order.created_at)?;
        let order = order.clone();
        self.run(move |c| {
            exec(
                c,
                &sql::INSERT_ORDER,
                params![
                    order.out_trade_no,
                    order.openid,
                    order.user_id,
                    order.generation_id,
                    order.package_type,
                    order.business_type,
                    order.business_id,
                    order.amount,
                    order.description,
                    order.trade_type,
                    created,
                    created,
                ],
            )
        })
        .await?;
        Ok(())
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
        let no = out_trade_no.to_owned();
        self.run(move |c| select_order(c, &no)).await
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        let id = transaction_id.to_owned();
        self.run(move |c| one(c, &sql::SELECT_ORDER_BY_TRANSACTION, [id], rows::order))
            .await
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
impl Logs for SqliteStore {
    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        let log = log.clone();
        self.run(move |c| write_log(c, &log, now)).await
    }
}

#[async_trait]
impl Transitions for SqliteStore {
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        let paid = paid.clone();
        self.run(move |c| Self::mark_paid_sync(c, &paid)).await
    }

    async fn finish_refund_queued(
        &self,
        result: &RefundResult,
    ) -> Result<FinishedRefund, StoreError> {
        let result = result.clone();
        self.run(move |c| Self::finish_refund_sync(c, &result))
            .await
    }
}

#[async_trait]
impl Refunds for SqliteStore {
    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        let refund = refund.clone();
        self.run(move |c| Self::reserve_refund_sync(c, &refund))
            .await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        let no = out_refund_no.to_owned();
        self.run(move |c| select_refund(c, &no)).await
    }

    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError> {
        let (id, no) = (refund_id.to_owned(), out_refund_no.to_owned());
        self.run(move |c| exec(c, sql::SET_REFUND_ID, [id, no]))
            .await?;
        Ok(())
    }

    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        let no = out_refund_no.to_owned();
        self.run(move |c| Self::revive_failed_refund_sync(c, &no))
            .await
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        let no = out_refund_no.to_owned();
        self.run(move |c| Self::fail_refund_sync(c, &no, None))
            .await
    }

    async fn stale_refunds(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        let before = ts(before)?;
        self.run(move |c| {
            all(
                c,
                &sql::STALE_REFUNDS,
                params![before, before, limit],
                rows::refund,
            )
        })
        .await
    }

    async fn fail_stale_refund(
        &self,
        out_refund_no: &str,
        before: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let no = out_refund_no.to_owned();
        self.run(move |c| Self::fail_refund_sync(c, &no, Some(before)))
            .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_notification(
        &self,
        id: i64,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        self.run(move |c| claim(c, id, lease_secs)).await
    }

    async fn claim_due_notifications(
        &self,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // One write transaction for the batch: one wait for the write lock (bounded by the
        // busy timeout) instead of one per row, and either every claim lands or none does.
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let ids = all(
                &tx,
                &outbox_sql::SQLITE.due_ids,
                params![force, limit.max(0)],
                |r| r.int(0),
            )?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids.into_iter().flatten() {
                if let Some(row) = claim(&tx, id, lease_secs)? {
                    claimed.push(row);
                }
            }
            tx.commit().map_err(map_err)?;
            Ok(claimed)
        })
        .await
    }

    async fn mark_delivered(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let (id, lease) = (row.id, row.lease.clone());
        let changed = self
            .run(move |c| exec(c, &outbox_sql::SQLITE.mark_delivered, params![id, lease]))
            .await?;
        Ok(changed == 1)
    }

    async fn mark_delivery_failed(
        &self,
        row: &OutboxRow,
        error: &str,
        retry_in_secs: i64,
    ) -> Result<bool, StoreError> {
        let (error, retry_in) = (truncated_error(error), outbox_sql::secs(retry_in_secs));
        let (id, lease) = (row.id, row.lease.clone());
        let changed = self
            .run(move |c| {
                exec(
                    c,
                    &outbox_sql::SQLITE.mark_delivery_failed,
                    params![error, retry_in, id, lease],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn release_unattempted(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let (id, lease) = (row.id, row.lease.clone());
        let changed = self
            .run(move |c| exec(c, sql::RELEASE_UNATTEMPTED, params![id, lease]))
            .await?;
        Ok(changed == 1)
    }

    async fn oldest_pending_secs(&self) -> Result<Option<i64>, StoreError> {
        self.run(|c| {
            c.query_row(&outbox_sql::SQLITE.oldest_pending_secs, [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(map_err)
        })
        .await
    }
}

#[cfg(feature = "test-helpers")]
#[async_trait]
impl crate::store::Inspect for SqliteStore {
    async fn count_orders(&self) -> Result<i64, StoreError> {
        self.run(|c| {
            c.query_row(sql::COUNT_ORDERS, [], |r| r.get(0))
                .map_err(map_err)
        })
        .await
    }

    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let no = out_trade_no.to_owned();
        self.run(move |c| all(c, &sql::OUTBOX_FOR_ORDER, [no], rows::outbox))
            .await
    }

    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError> {
        let no = out_trade_no.to_owned();
        self.run(move |c| all(c, &sql::LOGS_FOR_ORDER, [no], rows::log))
            .await
    }

    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError> {
        let no = out_trade_no.to_owned();
        self.run(move |c| all(c, &sql::REFUNDS_FOR_ORDER, [no], rows::refund))
            .await
    }

    async fn rewind_outbox(&self, out_trade_no: &str, secs: i64) -> Result<(), StoreError> {
        let (sql, no) = (
            outbox_sql::rewind(crate::store::schema::Dialect::Sqlite),
            out_trade_no.to_owned(),
        );
        self.run(move |c| exec(c, &sql, params![secs, secs, secs, no]))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<crate::store::MigrationReport, StoreError> {
        self.migrate_now().await
    }

    async fn schema_version(&self) -> Result<crate::store::SchemaVersion, StoreError> {
        self.pool.run(migrate::version).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _one: i64 = self
            .run(|c| c.query_row("SELECT 1", [], |r| r.get(0)).map_err(map_err))
            .await?;
        Ok(())
    }
}
