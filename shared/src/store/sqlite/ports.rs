//! The store's ports over SQLite: each method one critical section on the connection, or
//! one of the transactions in the parent module.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Orders for SqliteStore {
    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError> {
        let created = ts(order.created_at)?;
        exec(
            &self.lock(),
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
        )?;
        Ok(())
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
        select_order(&self.lock(), out_trade_no)
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        one(
            &self.lock(),
            &sql::SELECT_ORDER_BY_TRANSACTION,
            [transaction_id],
            rows::order,
        )
    }

    async fn mark_order_failed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.set_order_status(&sql::FAIL_ORDER, OrderStatus::Failed, out_trade_no, now)
    }

    async fn mark_closed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.set_order_status(&sql::CLOSE_ORDER, OrderStatus::Closed, out_trade_no, now)
    }
}

#[async_trait]
impl Logs for SqliteStore {
    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        write_log(&self.lock(), log, now)
    }
}

#[async_trait]
impl Transitions for SqliteStore {
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        self.mark_paid_sync(paid)
    }

    async fn finish_refund(&self, result: &RefundResult) -> Result<RefundOutcome, StoreError> {
        self.finish_refund_sync(result)
    }
}

#[async_trait]
impl Refunds for SqliteStore {
    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        self.reserve_refund_sync(refund)
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        select_refund(&self.lock(), out_refund_no)
    }

    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError> {
        exec(&self.lock(), sql::SET_REFUND_ID, [refund_id, out_refund_no])?;
        Ok(())
    }

    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        self.revive_failed_refund_sync(out_refund_no)
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        Ok(exec(&self.lock(), sql::FAIL_REFUND, [out_refund_no])? == 1)
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_notification(
        &self,
        id: i64,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        claim(&self.lock(), id, lease_secs)
    }

    async fn claim_due_notifications(
        &self,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.lock();
        let ids = all(
            &conn,
            &outbox_sql::SQLITE.due_ids,
            params![force, limit.max(0)],
            |r| r.int(0),
        )?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids.into_iter().flatten() {
            if let Some(row) = claim(&conn, id, lease_secs)? {
                claimed.push(row);
            }
        }
        Ok(claimed)
    }

    async fn mark_delivered(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let changed = exec(
            &self.lock(),
            &outbox_sql::SQLITE.mark_delivered,
            params![row.id, row.lease],
        )?;
        Ok(changed == 1)
    }

    async fn mark_delivery_failed(
        &self,
        row: &OutboxRow,
        error: &str,
        retry_in_secs: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec(
            &self.lock(),
            &outbox_sql::SQLITE.mark_delivery_failed,
            params![
                truncated_error(error),
                retry_in_secs.max(0),
                row.id,
                row.lease
            ],
        )?;
        Ok(changed == 1)
    }

    async fn release_unattempted(&self, row: &OutboxRow) -> Result<bool, StoreError> {
        let changed = exec(
            &self.lock(),
            sql::RELEASE_UNATTEMPTED,
            params![row.id, row.lease],
        )?;
        Ok(changed == 1)
    }
}

#[cfg(feature = "test-helpers")]
#[async_trait]
impl crate::store::Inspect for SqliteStore {
    async fn count_orders(&self) -> Result<i64, StoreError> {
        self.lock()
            .query_row(sql::COUNT_ORDERS, [], |r| r.get(0))
            .map_err(map_err)
    }

    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError> {
        all(
            &self.lock(),
            &sql::OUTBOX_FOR_ORDER,
            [out_trade_no],
            rows::outbox,
        )
    }

    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError> {
        all(
            &self.lock(),
            &sql::LOGS_FOR_ORDER,
            [out_trade_no],
            rows::log,
        )
    }

    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError> {
        all(
            &self.lock(),
            &sql::REFUNDS_FOR_ORDER,
            [out_trade_no],
            rows::refund,
        )
    }

    async fn rewind_outbox(&self, out_trade_no: &str, secs: i64) -> Result<(), StoreError> {
        let sql = outbox_sql::rewind(Dialect::Sqlite);
        exec(&self.lock(), &sql, params![secs, secs, secs, out_trade_no])?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        create_schema(&self.lock())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _one: i64 = self
            .lock()
            .query_row("SELECT 1", [], |r| r.get(0))
            .map_err(map_err)?;
        Ok(())
    }
}
