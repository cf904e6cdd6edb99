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
mod tls;

use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Params, Row, TxOpts, Value};
use once_cell::sync::Lazy;
use time::{OffsetDateTime, PrimitiveDateTime};

pub use conn::MySqlStore;
use conn::{server_code, Fail, ER_DUP_ENTRY};
pub use tls::{DatabaseCa, SslMode};

use super::outbox_sql;
use super::rows::{self, stored, Fields};
use super::rules::{self, existing_reservation};
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
mod tx;

use tx::{ended, finish_refund_in, mark_paid_in, reserve_refund_in, revive_failed_refund_in};

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
        let work = mark_paid_in(&mut tx, paid).await;
        if let Some(outbox) = ended(tx, work).await? {
            return Ok(PaidOutcome::Transitioned { outbox });
        }
        Ok(match select_order(&mut conn, &paid.out_trade_no).await? {
            Some(order) => PaidOutcome::AlreadyPaid(order),
            None => PaidOutcome::NotFound,
        })
    }

    async fn reserve_refund_once(&self, refund: &NewRefund) -> Result<RefundReservation, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = reserve_refund_in(&mut tx, refund).await;
        if let Some(reservation) = ended(tx, work).await? {
            return Ok(reservation);
        }
        // The same out_refund_no was reserved concurrently (possibly for another order,
        // which holds a different lock): report the row that won.
        match select_refund(&mut conn, &refund.out_refund_no).await? {
            Some(existing) => Ok(existing_reservation(existing, &refund.out_trade_no)),
            None => {
                Err(StoreError::Query("refund number taken, then gone; try again".into()).into())
            }
        }
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
        let work = revive_failed_refund_in(&mut tx, refund, out_refund_no).await;
        ended(tx, work).await
    }

    /// `None`: a concurrent caller inserted the same unknown refund first; run again.
    async fn finish_refund_once(
        &self,
        result: &RefundResult,
    ) -> Result<Option<RefundOutcome>, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = finish_refund_in(&mut tx, result).await;
        ended(tx, work).await
    }

    async fn claim_one(q: &mut Conn, id: i64, lease_secs: i64) -> Result<Option<OutboxRow>, Fail> {
        let lease = rules::new_lease_token();
        q.exec_drop(
            &outbox_sql::MYSQL.claim,
            params![outbox_sql::secs(lease_secs), lease, id],
        )
        .await?;
        if q.affected_rows() != 1 {
            return Ok(None);
        }
        one(q, &sql::SELECT_OUTBOX, params![id], rows::outbox).await
    }
}
