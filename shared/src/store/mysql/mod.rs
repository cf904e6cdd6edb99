//! The production store: MySQL (or MariaDB) through `mysql_async`.
//!
//! Serverless shape: constructing the store does no I/O (the pool connects on first use),
//! the first operation of a process checks the schema's version (or, with
//! `MIGRATE_ON_START`, applies what is missing; see [`migrate`]), the pool keeps at most a
//! handful of connections and lets idle ones go, and a pooled connection the server
//! dropped while the instance was frozen is replaced instead of failing the call.
//!
//! Guards are writes. Every decision about money is a write to the row it guards,
//! conditional on what the decision rested on: `UPDATE … WHERE status IN (…)` for order and
//! outbox transitions, the order's refund reservation as `UPDATE orders … WHERE paid −
//! refunded − reserved >= amount`, a refund's transition `… WHERE status = <as read>`. Two
//! writers of one row conflict on one server (the row lock: the condition is evaluated on
//! the latest committed row), on a Galera cluster (certification: the loser is rolled back
//! at COMMIT, 1213) and on TiDB (a write conflict), and a write that finds its condition
//! no longer true changes nothing; the operation then runs again, whole ([`conn`]).
//!
//! Locking discipline on one server, which keeps those conflicts rare: a transaction about
//! an order first takes its row with `SELECT … FOR UPDATE`, then does plain reads, then
//! writes the order row before the refund rows. Under REPEATABLE READ the read view is
//! created by the first plain read, so those reads see every transaction that held the
//! same order lock before us. Plain reads (instead of locking reads) on `refunds` avoid gap
//! locks, which would make two refunds of neighbouring orders deadlock each other on insert.
//! The locking read is only that: on a multi-primary cluster it holds on one node, and the
//! guarded writes are what keep the money right.

mod conn;
mod session;
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
use super::rules::{self, existing_reservation, OrderDelta};
use super::sql::{self, truncated_error};
use super::{
    FinishedRefund, Logs, NewOrder, NewRefund, Order, OrderStatus, Orders, OutboxRow, OutboxStore,
    PaidOutcome, PaidTransition, PaymentLog, Refund, RefundReservation, RefundResult, RefundStatus,
    Refunds, Store, StoreError, Transitions,
};

/// Positional statement parameters from heterogeneous values.
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        ::mysql_async::Params::Positional(vec![$(::mysql_async::Value::from($v)),*])
    };
}

/// One store operation on MySQL: `body` runs with `conn`, a connection to a database whose
/// schema this release serves (`schema_ready`). An attempt that lost a conflict runs again,
/// whole, while `settle_attempt` allows; if the caller stops waiting mid-way, the
/// connection is ended on the server before the invocation answers (`session::Session`).
/// A macro rather than a function taking a closure: the attempt borrows the connection
/// and the caller's arguments, which an `async_trait` method's `Send` future cannot prove
/// of a higher-ranked closure.
macro_rules! op {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store: &$crate::store::MySqlStore = $store;
        match store.schema_ready().await {
            Err(e) => Err(e),
            Ok(()) => {
                let mut tries = 0u32;
                loop {
                    tries += 1;
                    let attempt = async {
                        let mut session = store.session().await?;
                        // An inner block: a `?` in the body ends the body, not the
                        // attempt, so an error still gives the connection back.
                        let out: Result<_, $crate::store::mysql::conn::Fail> = async {
                            let $conn: &mut ::mysql_async::Conn = &mut session;
                            $body
                        }
                        .await;
                        session.release();
                        out
                    }
                    .await;
                    if let Some(done) = store.settle_attempt(attempt, tries).await {
                        break done;
                    }
                }
            }
        }
    }};
}

mod history;
mod migrate;
mod ports;
mod reconcile;
mod tx;

use tx::{
    ended, fail_refund_in, finish_refund_in, mark_paid_in, reserve_refund_in,
    revive_failed_refund_in,
};

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
                dt(r.created_at)?,
            ],
        )
        .await;
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves an order's totals by a refund transition. `guarded`: the transition is this
/// store's decision, and the write holds only if the order is paid and what it takes still
/// fits; otherwise the row changed since it was read, and the attempt runs again.
async fn move_order(
    q: &mut mysql_async::Transaction<'_>,
    out_trade_no: &str,
    delta: OrderDelta,
    guarded: bool,
    now: OffsetDateTime,
) -> Result<(), Fail> {
    if delta.is_zero() {
        return Ok(());
    }
    let mut values = vec![
        Value::from(delta.refunded),
        Value::from(delta.refunded),
        Value::from(delta.reserved),
        Value::from(delta.reserved),
        Value::from(dt(now)?),
        Value::from(out_trade_no),
    ];
    let statement = if guarded {
        values.push(Value::from(delta.takes()));
        sql::GUARDED_ORDER_DELTA.as_str()
    } else {
        sql::ORDER_DELTA
    };
    q.exec_drop(statement, Params::Positional(values)).await?;
    if guarded && q.affected_rows() != 1 {
        return Err(Fail::Conflict("the order's refundable amount"));
    }
    Ok(())
}

impl MySqlStore {
    async fn exec(&self, sql: &str, params: Params) -> Result<u64, StoreError> {
        op!(self, |conn| {
            conn.exec_drop(sql, params.clone()).await?;
            Ok(conn.affected_rows())
        })
    }

    #[cfg(feature = "test-helpers")]
    async fn list<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&mut dyn Fields) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        op!(self, |conn| {
            let rows: Vec<Row> = conn.exec(sql, params![key]).await?;
            Ok(rows
                .into_iter()
                .map(|mut r| map(&mut r))
                .collect::<Result<_, _>>()?)
        })
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
    /// The outbox row is handed back only once COMMIT succeeded.
    async fn mark_paid_once(conn: &mut Conn, paid: &PaidTransition) -> Result<PaidOutcome, Fail> {
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = mark_paid_in(&mut tx, paid).await;
        if let Some(outbox) = ended(tx, work).await? {
            return Ok(PaidOutcome::Transitioned { outbox });
        }
        Ok(match select_order(conn, &paid.out_trade_no).await? {
            Some(order) => PaidOutcome::AlreadyPaid(order),
            None => PaidOutcome::NotFound,
        })
    }

    async fn reserve_refund_once(
        conn: &mut Conn,
        refund: &NewRefund,
    ) -> Result<RefundReservation, Fail> {
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = reserve_refund_in(&mut tx, refund).await;
        if let Some(reservation) = ended(tx, work).await? {
            return Ok(reservation);
        }
        // The same out_refund_no was reserved concurrently (possibly for another order,
        // which holds a different lock): report the row that won.
        match select_refund(conn, &refund.out_refund_no).await? {
            Some(existing) => Ok(existing_reservation(existing, &refund.out_trade_no)),
            None => Err(Fail::Conflict("the refund number")),
        }
    }

    async fn revive_failed_refund_once(
        conn: &mut Conn,
        out_refund_no: &str,
    ) -> Result<RefundReservation, Fail> {
        let Some(refund) = select_refund(conn, out_refund_no).await? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if refund.status != RefundStatus::Failed {
            return Ok(RefundReservation::Existing(refund));
        }
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = revive_failed_refund_in(&mut tx, &refund.out_trade_no, out_refund_no).await;
        ended(tx, work).await
    }

    /// `before`: only if still reserved before then (the sweep).
    async fn fail_refund_once(
        conn: &mut Conn,
        out_refund_no: &str,
        before: Option<OffsetDateTime>,
    ) -> Result<bool, Fail> {
        let Some(refund) = select_refund(conn, out_refund_no).await? else {
            return Ok(false);
        };
        if refund.status != RefundStatus::Processing {
            return Ok(false);
        }
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let work = fail_refund_in(&mut tx, &refund.out_trade_no, out_refund_no, before).await;
        ended(tx, work).await
    }

    /// `None`: a concurrent caller inserted the same unknown refund first; run again.
    async fn finish_refund_once(
        conn: &mut Conn,
        result: &RefundResult,
    ) -> Result<Option<FinishedRefund>, Fail> {
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
