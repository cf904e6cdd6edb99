//! The production store: MySQL (or MariaDB) through `mysql_async`.
//!
//! Serverless shape: constructing the store does no I/O (the pool connects on first use),
//! the schema is created on the first query of a process (and by `migrate`), the pool keeps
//! at most a handful of connections and lets idle ones go, and a pooled connection the
//! server dropped while the instance was frozen is replaced instead of failing the call.
//!
//! Locking discipline, which the money-safety of every "one transaction" method rests on:
//! a transaction either starts with a guarded `UPDATE … WHERE status IN (…)` (InnoDB
//! evaluates its condition on the latest committed row under the row lock, so of any number
//! of concurrent callers exactly one changes it), or first takes the order row with
//! `SELECT … FOR UPDATE` and only then does plain reads. Under REPEATABLE READ the read view
//! is created by the first plain read, so those reads see every transaction that held the
//! same order lock before us. Plain reads (instead of locking reads) on `refunds` avoid gap
//! locks, which would make two refunds of neighbouring orders deadlock each other on insert.

mod conn;
mod history;

use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Params, Row, TxOpts, Value};
use once_cell::sync::Lazy;
use time::{OffsetDateTime, PrimitiveDateTime};

pub use conn::MySqlStore;
use conn::{server_code, Fail, ER_DUP_ENTRY};

use super::rows::{self, stored, Fields};
use super::rules::{self, after_refund, existing_reservation, result_applies};
use super::sql::{self, truncated_error};
use super::{
    Logs, NewOrder, NewRefund, Order, OrderStatus, Orders, OutboxRow, OutboxStore, PaidOutcome,
    PaidTransition, PaymentLog, Refund, RefundOutcome, RefundReservation, RefundResult,
    RefundStatus, Refunds, Store, StoreError, Transitions,
};

/// Positional statement parameters from heterogeneous values.
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        Params::Positional(vec![$(Value::from($v)),*])
    };
}

mod ports;
mod reconcile;

static SELECT_ORDER_FOR_UPDATE: Lazy<String> =
    Lazy::new(|| format!("{} FOR UPDATE", *sql::SELECT_ORDER));

impl Fields for Row {
    fn text(&mut self, idx: usize) -> Result<Option<String>, StoreError> {
        take(self, idx)
    }
    fn int(&mut self, idx: usize) -> Result<Option<i64>, StoreError> {
        take(self, idx)
    }
    fn time(&mut self, idx: usize) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(take::<Option<PrimitiveDateTime>>(self, idx)?.map(PrimitiveDateTime::assume_utc))
    }
}

fn take<T: FromValue>(row: &mut Row, idx: usize) -> Result<T, StoreError> {
    match row.take_opt::<T, usize>(idx) {
        Some(Ok(v)) => Ok(v),
        // The value itself is left out: it may be an openid or a payload.
        Some(Err(_)) => Err(StoreError::Query(format!(
            "column {idx} has an unexpected type"
        ))),
        None => Err(StoreError::Query(format!("column {idx} missing"))),
    }
}

/// UTC milliseconds, as `DATETIME(3)` keeps them (the server would round, which could move
/// a value across a `<=` comparison).
fn dt(t: OffsetDateTime) -> Result<PrimitiveDateTime, StoreError> {
    let t = stored(t);
    Ok(PrimitiveDateTime::new(t.date(), t.time()))
}

fn last_id(id: Option<u64>) -> Result<i64, StoreError> {
    id.and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| StoreError::Query("no auto-increment id returned".into()))
}

async fn one<Q: Queryable, T>(
    q: &mut Q,
    sql: &str,
    params: Params,
    map: fn(&mut dyn Fields) -> Result<T, StoreError>,
) -> Result<Option<T>, Fail> {
    let row: Option<Row> = q.exec_first(sql, params).await?;
    Ok(row.map(|mut r| map(&mut r)).transpose()?)
}

async fn select_order<Q: Queryable>(q: &mut Q, out_trade_no: &str) -> Result<Option<Order>, Fail> {
    one(q, &sql::SELECT_ORDER, params![out_trade_no], rows::order).await
}

async fn lock_order<Q: Queryable>(q: &mut Q, out_trade_no: &str) -> Result<Option<Order>, Fail> {
    one(
        q,
        &SELECT_ORDER_FOR_UPDATE,
        params![out_trade_no],
        rows::order,
    )
    .await
}

async fn select_refund<Q: Queryable>(
    q: &mut Q,
    out_refund_no: &str,
) -> Result<Option<Refund>, Fail> {
    one(q, &sql::SELECT_REFUND, params![out_refund_no], rows::refund).await
}

async fn insert_log<Q: Queryable>(
    q: &mut Q,
    log: &PaymentLog,
    now: OffsetDateTime,
) -> Result<(), Fail> {
    q.exec_drop(
        &*sql::INSERT_LOG,
        params![
            &log.log_type,
            &log.out_trade_no,
            &log.transaction_id,
            &log.openid,
            &log.package_type,
            &log.generation_id,
            &log.event_type,
            log.amount_total,
            &log.detail,
            dt(now)?,
        ],
    )
    .await?;
    Ok(())
}

/// `Ok(false)`: the `out_refund_no` exists already (a concurrent caller inserted it).
async fn insert_refund<Q: Queryable>(q: &mut Q, r: &Refund) -> Result<bool, Fail> {
    let inserted = q
        .exec_drop(
            &*sql::INSERT_REFUND,
            params![
                &r.out_refund_no,
                &r.out_trade_no,
                &r.refund_id,
                r.amount,
                r.status.as_str(),
                &r.reason,
                dt(r.created_at)?,
                r.success_at.map(dt).transpose()?,
            ],
        )
        .await;
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl MySqlStore {
    async fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, StoreError> {
        f.await.map_err(|e| self.settle(e))
    }

    async fn exec(&self, sql: &str, params: Params) -> Result<u64, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(sql, params).await?;
            Ok(conn.affected_rows())
        })
        .await
    }

    #[cfg(feature = "test-helpers")]
    async fn list<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&mut dyn Fields) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.run(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn.exec(sql, params![key]).await?;
            Ok(rows
                .into_iter()
                .map(|mut r| map(&mut r))
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A guarded status change (`sql` names the states it may come from).
    async fn set_order_status(
        &self,
        sql: &str,
        to: OrderStatus,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let changed = self
            .exec(sql, params![to.as_str(), dt(now)?, out_trade_no])
            .await?;
        Ok(changed == 1)
    }

    /// BEGIN, the guarded update, the log and the leased outbox row, COMMIT: five
    /// statements, and the order is not read again (the caller read it to check the payment).
    async fn mark_paid_once(&self, paid: &PaidTransition) -> Result<PaidOutcome, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let now = dt(paid.now)?;
        tx.exec_drop(
            &*sql::MARK_PAID,
            params![
                &paid.transaction_id,
                paid.paid_amount,
                &paid.payer_openid,
                dt(paid.paid_at)?,
                now,
                &paid.out_trade_no,
            ],
        )
        .await?;
        if tx.affected_rows() != 1 {
            tx.rollback().await?;
            return Ok(match select_order(&mut conn, &paid.out_trade_no).await? {
                Some(order) => PaidOutcome::AlreadyPaid(order),
                None => PaidOutcome::NotFound,
            });
        }
        insert_log(&mut tx, &paid.log, paid.now).await?;
        tx.exec_drop(
            sql::INSERT_OUTBOX_LEASED,
            params![
                &paid.out_trade_no,
                &paid.business_type,
                &paid.outbox_payload,
                now,
                dt(paid.lease_until)?,
                now,
            ],
        )
        .await?;
        let id = last_id(tx.last_insert_id())?;
        tx.commit().await?;
        Ok(PaidOutcome::Transitioned {
            outbox: rules::leased_outbox_row(id, paid),
        })
    }

    async fn reserve_refund_once(&self, refund: &NewRefund) -> Result<RefundReservation, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // The lock comes first: see the module comment.
        let order = lock_order(&mut tx, &refund.out_trade_no).await?;
        if let Some(existing) = select_refund(&mut tx, &refund.out_refund_no).await? {
            tx.rollback().await?;
            return Ok(existing_reservation(existing, &refund.out_trade_no));
        }
        let Some(order) = order else {
            tx.rollback().await?;
            return Ok(RefundReservation::OrderNotFound);
        };
        let in_flight: Option<i64> = if order.status == OrderStatus::Paid {
            tx.exec_first(&*sql::IN_FLIGHT_SUM, params![&refund.out_trade_no])
                .await?
        } else {
            None
        };
        let amount = match rules::reserve(&order, in_flight.unwrap_or(0), refund.amount) {
            Ok(amount) => amount,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(refusal.into());
            }
        };
        let created = rules::reserved_refund(refund, amount);
        if !insert_refund(&mut tx, &created).await? {
            // The same out_refund_no was reserved concurrently (possibly for another
            // order, which holds a different lock): report the row that won.
            tx.rollback().await?;
            return match select_refund(&mut conn, &refund.out_refund_no).await? {
                Some(existing) => Ok(existing_reservation(existing, &refund.out_trade_no)),
                None => Err(
                    StoreError::Query("refund number taken, then gone; try again".into()).into(),
                ),
            };
        }
        tx.commit().await?;
        Ok(RefundReservation::Created(created))
    }

    async fn revive_failed_refund_once(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, Fail> {
        let mut conn = self.conn().await?;
        let Some(refund) = select_refund(&mut conn, out_refund_no).await? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if refund.status != RefundStatus::Failed {
            return Ok(RefundReservation::Existing(refund));
        }
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // The lock comes first: see the module comment.
        let order = lock_order(&mut tx, &refund.out_trade_no).await?;
        let Some(refund) = select_refund(&mut tx, out_refund_no).await? else {
            tx.rollback().await?;
            return Ok(RefundReservation::OrderNotFound);
        };
        let Some(order) = order.filter(|_| refund.status == RefundStatus::Failed) else {
            tx.rollback().await?;
            return Ok(RefundReservation::Existing(refund));
        };
        let in_flight: Option<i64> = tx
            .exec_first(&*sql::IN_FLIGHT_SUM, params![&refund.out_trade_no])
            .await?;
        if let Err(refusal) = rules::reserve(&order, in_flight.unwrap_or(0), Some(refund.amount)) {
            tx.rollback().await?;
            return Ok(refusal.into());
        }
        tx.exec_drop(sql::REVIVE_FAILED_REFUND, params![out_refund_no])
            .await?;
        tx.commit().await?;
        Ok(RefundReservation::Existing(Refund {
            status: RefundStatus::Processing,
            ..refund
        }))
    }

    /// `None`: a concurrent caller inserted the same unknown refund first; run again.
    async fn finish_refund_once(
        &self,
        result: &RefundResult,
    ) -> Result<Option<RefundOutcome>, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // Serialises with reserve_refund and with duplicates of this result; see the
        // module comment for why the lock precedes every read.
        let order = lock_order(&mut tx, &result.out_trade_no).await?;
        let known = select_refund(&mut tx, &result.out_refund_no).await?;
        let in_flight: Option<i64> = tx
            .exec_first(&*sql::IN_FLIGHT_SUM, params![&result.out_trade_no])
            .await?;
        let checked = rules::check_result(
            order.as_ref(),
            known.as_ref(),
            in_flight.unwrap_or(0),
            result,
        );
        if let Err(m) = checked {
            tx.rollback().await?;
            return Ok(Some(RefundOutcome::Mismatch(m)));
        }
        match known {
            None => {
                // Made in the merchant portal (or our reservation was lost): record it as
                // WeChat Pay reports it.
                if !insert_refund(&mut tx, &rules::reported_refund(result)).await? {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            Some(known) => {
                if !result_applies(&known, result) {
                    tx.rollback().await?;
                    return Ok(Some(RefundOutcome::Unchanged));
                }
                let r = rules::applied_result(&known, result);
                tx.exec_drop(
                    &*sql::APPLY_REFUND_RESULT,
                    params![
                        r.status.as_str(),
                        &r.refund_id,
                        r.success_at.map(dt).transpose()?,
                        r.amount,
                        &r.out_refund_no,
                    ],
                )
                .await?;
                if tx.affected_rows() != 1 {
                    tx.rollback().await?;
                    return Ok(Some(RefundOutcome::Unchanged));
                }
            }
        }
        if let (RefundStatus::Success, Some(order)) = (result.status, &order) {
            let (refunded, status) = after_refund(order, result.amount);
            tx.exec_drop(
                sql::SET_ORDER_REFUNDED,
                params![
                    refunded,
                    status.as_str(),
                    dt(result.now)?,
                    &result.out_trade_no
                ],
            )
            .await?;
        }
        insert_log(&mut tx, &result.log, result.now).await?;
        tx.commit().await?;
        Ok(Some(RefundOutcome::Applied))
    }

    async fn claim_one(
        q: &mut Conn,
        id: i64,
        now: OffsetDateTime,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, Fail> {
        let until = rules::lease_end(now, lease_secs)?;
        q.exec_drop(sql::CLAIM, params![dt(until)?, id, dt(now)?])
            .await?;
        if q.affected_rows() != 1 {
            return Ok(None);
        }
        one(q, &sql::SELECT_OUTBOX, params![id], rows::outbox).await
    }
}
