//! The store's ports over MySQL: each method one statement on a pooled connection, or one of
//! the transactions in the parent module.

use async_trait::async_trait;

use super::*;

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
        self.run(async {
            let mut conn = self.conn().await?;
            select_order(&mut conn, out_trade_no).await
        })
        .await
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            one(
                &mut conn,
                &sql::SELECT_ORDER_BY_TRANSACTION,
                params![transaction_id],
                rows::order,
            )
            .await
        })
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
impl Logs for MySqlStore {
    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            insert_log(&mut conn, log, now).await
        })
        .await
    }
}

#[async_trait]
impl Transitions for MySqlStore {
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        self.retrying(|| self.mark_paid_once(paid)).await
    }

    async fn finish_refund(&self, result: &RefundResult) -> Result<RefundOutcome, StoreError> {
        rules::require_final(result)?;
        // A lost insert race is retried once: the second pass finds the row and reports
        // "no change" instead of applying the amount again.
        for _ in 0..2 {
            if let Some(outcome) = self.retrying(|| self.finish_refund_once(result)).await? {
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
        self.retrying(|| self.reserve_refund_once(refund)).await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            select_refund(&mut conn, out_refund_no).await
        })
        .await
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
        self.retrying(|| self.revive_failed_refund_once(out_refund_no))
            .await
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        Ok(self.exec(sql::FAIL_REFUND, params![out_refund_no]).await? == 1)
    }
}

#[async_trait]
impl OutboxStore for MySqlStore {
    async fn claim_notification(
        &self,
        id: i64,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            Self::claim_one(&mut conn, id, lease_secs).await
        })
        .await
    }

    async fn claim_due_notifications(
        &self,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            let ids: Vec<i64> = conn
                .exec(&outbox_sql::MYSQL.due_ids, params![force, limit.max(0)])
                .await?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = Self::claim_one(&mut conn, id, lease_secs).await? {
                    claimed.push(row);
                }
            }
            Ok(claimed)
        })
        .await
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
}

#[cfg(feature = "test-helpers")]
#[async_trait]
impl crate::store::Inspect for MySqlStore {
    async fn count_orders(&self) -> Result<i64, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            let n: Option<i64> = conn.query_first(sql::COUNT_ORDERS).await?;
            Ok(n.unwrap_or(0))
        })
        .await
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
    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_now().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_now().await
    }
}
