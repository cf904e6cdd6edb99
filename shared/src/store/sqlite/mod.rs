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
use super::rules::{self, OrderDelta};
use super::sql::{self, truncated_error};
use super::{
    FinishedRefund, Logs, NewOrder, NewRefund, OnStart, Order, OrderStatus, Orders, OutboxRow,
    OutboxStore, PaidOutcome, PaidTransition, PaymentLog, Refund, RefundReservation, RefundResult,
    Refunds, Store, StoreError, Transitions,
};

mod history;
mod migrate;
mod pool;
mod ports;
mod reconcile;
mod tx;

use pool::Pool;

const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// The embedded SQLite store (`sqlite://PATH`, `sqlite::memory:`).
pub struct SqliteStore {
    pool: Arc<Pool>,
    /// Whether the schema was checked (or brought up to date) for this store.
    schema: tokio::sync::OnceCell<()>,
    on_start: OnStart,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database file; the first operation applies the
    /// migrations it lacks (as `MIGRATE_ON_START=true` does).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, OnStart::Migrate)
    }

    /// [`SqliteStore::open`], saying what the first operation does about the schema.
    pub fn open_with(path: impl AsRef<Path>, on_start: OnStart) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        Ok(SqliteStore {
            pool: Pool::open_file(path)?,
            schema: tokio::sync::OnceCell::new(),
            on_start,
        })
    }

    /// A private database that lives as long as this store (tests, throwaway local runs);
    /// migrated on first use, since nobody else can reach it.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(SqliteStore {
            pool: Pool::open_in_memory()?,
            schema: tokio::sync::OnceCell::new(),
            on_start: OnStart::Migrate,
        })
    }

    /// Runs `work` on one of the store's connections (see [`pool`]), once the schema is
    /// one this release serves.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.schema_ready().await?;
        self.pool.run(work).await
    }

    /// The first operation's schema check: see [`OnStart`].
    async fn schema_ready(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| async {
                match self.on_start {
                    OnStart::Migrate => self.migrate_now().await.map(drop),
                    OnStart::Check => {
                        let state = self.pool.run(migrate::version).await?;
                        super::require_compatible(state).inspect_err(|e| tracing::error!("{e}"))
                    }
                }
            })
            .await
            .map(|_| ())
    }

    async fn migrate_now(&self) -> Result<super::MigrationReport, StoreError> {
        let wait = crate::deadline::budget(migrate::MIGRATION_WAIT);
        let report = self.pool.run(move |c| migrate::migrate(c, wait)).await?;
        let _ = self.schema.set(());
        Ok(report)
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
            ts(r.created_at)?,
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

/// Moves an order's totals by a refund transition ([`OrderDelta`]). `guarded`: the
/// transition is this store's decision, and the write holds only if the order is paid and
/// what it takes still fits. Inside `BEGIN IMMEDIATE` nothing can change the row between
/// the read and this write, so a guard that fails here is a fault, not a race.
fn move_order(
    conn: &Connection,
    out_trade_no: &str,
    delta: OrderDelta,
    guarded: bool,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if delta.is_zero() {
        return Ok(());
    }
    let (d, now) = (delta, ts(now)?);
    let changed = if guarded {
        exec(
            conn,
            &sql::GUARDED_ORDER_DELTA,
            params![
                d.refunded,
                d.refunded,
                d.reserved,
                d.reserved,
                now,
                out_trade_no,
                d.takes()
            ],
        )?
    } else {
        exec(
            conn,
            sql::ORDER_DELTA,
            params![
                d.refunded,
                d.refunded,
                d.reserved,
                d.reserved,
                now,
                out_trade_no
            ],
        )?
    };
    if guarded && changed != 1 {
        return Err(StoreError::Query(format!(
            "order {out_trade_no} no longer fits a refund it fitted a moment ago"
        )));
    }
    Ok(())
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
}
