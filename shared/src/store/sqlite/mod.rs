//! The embedded store for local runs and tests.
//!
//! A file database (`sqlite://PATH`) is used through a few connections in WAL mode (see
//! [`pool`]), so concurrent calls interleave as they would on MySQL and the guarded
//! updates below are what makes a state change happen once. Write transactions use
//! `BEGIN IMMEDIATE`: a deferred transaction would take the write lock only at its first
//! write, after its reads could already be stale, and could then fail without waiting
//! (`SQLITE_BUSY` on a read transaction that cannot be upgraded). Other processes (a second
//! local runner, an operator's `sqlite3` shell) take part in the same locking.
//!
//! `sqlite::memory:` is a private database on one connection, so its calls take turns.
//!
//! Timestamps are TEXT `YYYY-MM-DD HH:MM:SS.fff` in UTC: fixed width, so string comparison
//! (`next_try_at <= strftime(…, 'now')`, `ORDER BY created_at`) is chronological.

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, Params, Row, TransactionBehavior};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::outbox_sql;
use super::rows::{self, stored, Fields};
use super::rules::{self, after_refund, existing_reservation, result_applies};
use super::sql::{self, truncated_error};
use super::{
    Logs, NewOrder, NewRefund, Order, OrderStatus, Orders, OutboxRow, OutboxStore, PaidOutcome,
    PaidTransition, PaymentLog, Refund, RefundOutcome, RefundReservation, RefundResult,
    RefundStatus, Refunds, Store, StoreError, Transitions,
};

mod history;
mod pool;
mod ports;
mod reconcile;

use pool::{create_schema, Pool};

const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// The embedded SQLite store (`sqlite://PATH`, `sqlite::memory:`).
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        Ok(SqliteStore {
            pool: Pool::open_file(path)?,
        })
    }

    /// A private database that lives as long as this store (tests, throwaway local runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(SqliteStore {
            pool: Pool::open_in_memory()?,
        })
    }

    /// Runs `work` on one of the store's connections (see [`pool`]).
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.pool.run(work).await
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Query(e.to_string()),
    }
}

/// Both stores keep milliseconds (MySQL `DATETIME(3)`): a value read back equals the one
/// written.
fn ts(t: OffsetDateTime) -> Result<String, StoreError> {
    stored(t)
        .format(TS_FORMAT)
        .map_err(|e| StoreError::Query(format!("bad timestamp: {e}")))
}

fn ts_opt(t: Option<OffsetDateTime>) -> Result<Option<String>, StoreError> {
    t.map(ts).transpose()
}

impl Fields for &Row<'_> {
    fn text(&mut self, idx: usize) -> Result<Option<String>, StoreError> {
        get(self, idx)
    }
    fn int(&mut self, idx: usize) -> Result<Option<i64>, StoreError> {
        get(self, idx)
    }
    fn time(&mut self, idx: usize) -> Result<Option<OffsetDateTime>, StoreError> {
        match get::<String>(self, idx)? {
            None => Ok(None),
            Some(s) => PrimitiveDateTime::parse(&s, TS_FORMAT)
                .map(|t| Some(t.assume_utc()))
                .map_err(|_| StoreError::Query(format!("column {idx}: unparseable timestamp"))),
        }
    }
}

fn get<T: FromSql>(row: &Row<'_>, idx: usize) -> Result<Option<T>, StoreError> {
    row.get::<_, Option<T>>(idx).map_err(map_err)
}

/// Runs a query and maps its rows with a dialect-neutral mapper.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: fn(&mut dyn Fields) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(map(&mut &*row)?);
    }
    Ok(out)
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: fn(&mut dyn Fields) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    Ok(all(conn, sql, params, map)?.into_iter().next())
}

fn exec(conn: &Connection, sql: &str, params: impl Params) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(map_err)
}

fn select_order(conn: &Connection, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
    one(conn, &sql::SELECT_ORDER, [out_trade_no], rows::order)
}

fn select_refund(conn: &Connection, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
    one(conn, &sql::SELECT_REFUND, [out_refund_no], rows::refund)
}

fn write_log(conn: &Connection, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
    exec(
        conn,
        &sql::INSERT_LOG,
        params![
            log.log_type,
            log.out_trade_no,
            log.transaction_id,
            log.openid,
            log.package_type,
            log.generation_id,
            log.event_type,
            log.amount_total,
            log.detail,
            ts(now)?,
        ],
    )?;
    Ok(())
}

fn insert_refund(conn: &Connection, r: &Refund) -> Result<(), StoreError> {
    exec(
        conn,
        &sql::INSERT_REFUND,
        params![
            r.out_refund_no,
            r.out_trade_no,
            r.refund_id,
            r.amount,
            r.status.as_str(),
            r.reason,
            ts(r.created_at)?,
            ts_opt(r.success_at)?,
        ],
    )?;
    Ok(())
}

fn claim(conn: &Connection, id: i64, lease_secs: i64) -> Result<Option<OutboxRow>, StoreError> {
    let lease = rules::new_lease_token();
    let claim = &outbox_sql::SQLITE.claim;
    if exec(
        conn,
        claim,
        params![outbox_sql::secs(lease_secs), lease, id],
    )? == 1
    {
        one(conn, &sql::SELECT_OUTBOX, [id], rows::outbox)
    } else {
        Ok(None)
    }
}

impl SqliteStore {
    /// A guarded status change (`sql` names the states it may come from).
    async fn set_order_status(
        &self,
        sql: &'static str,
        to: OrderStatus,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (now, no) = (ts(now)?, out_trade_no.to_owned());
        let changed = self
            .run(move |c| exec(c, sql, params![to.as_str(), now, no]))
            .await?;
        Ok(changed == 1)
    }

    fn mark_paid_sync(
        conn: &mut Connection,
        paid: &PaidTransition,
    ) -> Result<PaidOutcome, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let now = ts(paid.now)?;
        let changed = exec(
            &tx,
            &sql::MARK_PAID,
            params![
                paid.transaction_id,
                paid.paid_amount,
                paid.payer_openid,
                ts(paid.paid_at)?,
                now,
                paid.out_trade_no,
            ],
        )?;
        if changed != 1 {
            // Dropping `tx` rolls back; nothing was written anyway.
            return Ok(match select_order(&tx, &paid.out_trade_no)? {
                Some(order) => PaidOutcome::AlreadyPaid(order),
                None => PaidOutcome::NotFound,
            });
        }
        write_log(&tx, &paid.log, paid.now)?;
        let lease = rules::new_lease_token();
        exec(
            &tx,
            &outbox_sql::SQLITE.insert_leased,
            params![
                paid.out_trade_no,
                paid.business_type,
                paid.outbox_payload,
                outbox_sql::secs(paid.lease_secs),
                lease,
                now,
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(map_err)?;
        Ok(PaidOutcome::Transitioned {
            outbox: rules::leased_outbox_row(id, paid, lease),
        })
    }

    fn reserve_refund_sync(
        conn: &mut Connection,
        refund: &NewRefund,
    ) -> Result<RefundReservation, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        if let Some(existing) = select_refund(&tx, &refund.out_refund_no)? {
            return Ok(existing_reservation(existing, &refund.out_trade_no));
        }
        let Some(order) = select_order(&tx, &refund.out_trade_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        let in_flight = if order.status == OrderStatus::Paid {
            one(&tx, &sql::IN_FLIGHT_SUM, [&refund.out_trade_no], |r| {
                r.int(0)
            })?
            .flatten()
            .unwrap_or(0)
        } else {
            0
        };
        let amount = match rules::reserve(&order, in_flight, refund.amount) {
            Ok(amount) => amount,
            Err(refusal) => return Ok(refusal.into()),
        };
        let created = rules::reserved_refund(refund, amount);
        insert_refund(&tx, &created)?;
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Created(created))
    }

    fn revive_failed_refund_sync(
        conn: &mut Connection,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let Some(refund) = select_refund(&tx, out_refund_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if refund.status != RefundStatus::Failed {
            return Ok(RefundReservation::Existing(refund));
        }
        let Some(order) = select_order(&tx, &refund.out_trade_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        let in_flight = one(&tx, &sql::IN_FLIGHT_SUM, [&refund.out_trade_no], |r| {
            r.int(0)
        })?
        .flatten()
        .unwrap_or(0);
        if let Err(refusal) = rules::reserve(&order, in_flight, Some(refund.amount)) {
            return Ok(refusal.into());
        }
        exec(&tx, sql::REVIVE_FAILED_REFUND, [out_refund_no])?;
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Existing(Refund {
            status: RefundStatus::Processing,
            ..refund
        }))
    }

    fn finish_refund_sync(
        conn: &mut Connection,
        result: &RefundResult,
    ) -> Result<RefundOutcome, StoreError> {
        rules::require_final(result)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let order = select_order(&tx, &result.out_trade_no)?;
        let known = select_refund(&tx, &result.out_refund_no)?;
        let in_flight = one(&tx, &sql::IN_FLIGHT_SUM, [&result.out_trade_no], |r| {
            r.int(0)
        })?
        .flatten()
        .unwrap_or(0);
        if let Err(m) = rules::check_result(order.as_ref(), known.as_ref(), in_flight, result) {
            return Ok(RefundOutcome::Mismatch(m));
        }
        match known {
            None => insert_refund(&tx, &rules::reported_refund(result))?,
            Some(known) => {
                if !result_applies(&known, result) {
                    return Ok(RefundOutcome::Unchanged);
                }
                let r = rules::applied_result(&known, result);
                let changed = exec(
                    &tx,
                    &sql::APPLY_REFUND_RESULT,
                    params![
                        r.status.as_str(),
                        r.refund_id,
                        ts_opt(r.success_at)?,
                        r.amount,
                        r.out_refund_no,
                    ],
                )?;
                if changed != 1 {
                    return Ok(RefundOutcome::Unchanged);
                }
            }
        }
        if let (RefundStatus::Success, Some(order)) = (result.status, &order) {
            let (refunded, status) = after_refund(order, result.amount);
            exec(
                &tx,
                sql::SET_ORDER_REFUNDED,
                params![
                    refunded,
                    status.as_str(),
                    ts(result.now)?,
                    result.out_trade_no
                ],
            )?;
        }
        write_log(&tx, &result.log, result.now)?;
        tx.commit().map_err(map_err)?;
        Ok(RefundOutcome::Applied)
    }
}
