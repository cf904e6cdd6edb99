//! The embedded store for local runs and tests.
//!
//! One connection behind a `std::sync::Mutex`: SQLite serialises writers anyway, and a single
//! connection makes every method one critical section, so the guarded updates below cannot
//! interleave inside this process. Write transactions still use `BEGIN IMMEDIATE` because a
//! file database may be shared with another process (a second local runner, an operator's
//! `sqlite3` shell), and a deferred transaction would only take the write lock at its first
//! write, after its reads could already be stale.
//!
//! The methods do their work synchronously inside the `async fn`: a statement on a local file
//! takes microseconds, and the lock is never held across an `.await`.
//!
//! Timestamps are TEXT `YYYY-MM-DD HH:MM:SS.fff` in UTC: fixed width, so string comparison
//! (`next_try_at <= ?`, `ORDER BY created_at`) is chronological.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

mod reconcile;

use super::{
    NewOrder, NewRefund, Order, OrderStatus, OutboxRow, OutboxStatus, PaidOutcome, PaidTransition,
    PaymentLog, Refund, RefundReservation, RefundResult, RefundStatus, Store, StoreError,
};

const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `last_error` kept: enough to diagnose, small enough that a backend returning a
/// huge HTML error page does not bloat the table.
const MAX_ERROR_CHARS: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    out_trade_no    TEXT    NOT NULL PRIMARY KEY,
    transaction_id  TEXT,
    openid          TEXT,
    user_id         TEXT,
    generation_id   TEXT,
    package_type    TEXT,
    business_type   TEXT,
    business_id     TEXT,
    amount          INTEGER NOT NULL,
    paid_amount     INTEGER,
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    description     TEXT    NOT NULL DEFAULT '',
    trade_type      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    paid_at         TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_logs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    `type`         TEXT    NOT NULL,
    out_trade_no   TEXT,
    transaction_id TEXT,
    openid         TEXT,
    package_type   TEXT,
    generation_id  TEXT,
    event_type     TEXT,
    amount_total   INTEGER,
    detail         TEXT,
    created_at     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    out_refund_no TEXT    NOT NULL PRIMARY KEY,
    out_trade_no  TEXT    NOT NULL,
    refund_id     TEXT,
    amount        INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    reason        TEXT,
    created_at    TEXT    NOT NULL,
    success_at    TEXT
);
CREATE TABLE IF NOT EXISTS notify_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no  TEXT    NOT NULL,
    business_type TEXT,
    payload       TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    next_try_at   TEXT    NOT NULL,
    locked_until  TEXT,
    created_at    TEXT    NOT NULL,
    delivered_at  TEXT
);
CREATE TABLE IF NOT EXISTS reconciliations (
    bill_date     TEXT    NOT NULL PRIMARY KEY,
    status        TEXT    NOT NULL,
    bill_rows     INTEGER NOT NULL,
    payments      INTEGER NOT NULL,
    payment_total INTEGER NOT NULL,
    refunds       INTEGER NOT NULL,
    refund_total  INTEGER NOT NULL,
    repaired      INTEGER NOT NULL DEFAULT 0,
    flagged       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS reconciliation_items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    bill_date     TEXT    NOT NULL,
    out_trade_no  TEXT    NOT NULL,
    out_refund_no TEXT    NOT NULL DEFAULT '',
    kind          TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    UNIQUE (bill_date, kind, out_trade_no, out_refund_no)
);
";

/// Columns added after a table's first release. `CREATE TABLE IF NOT EXISTS` leaves an older
/// table as it is, so each of these is added when missing. New columns go here (nullable or
/// with a default: SQLite cannot add a NOT NULL column without one).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("orders", "paid_amount", "INTEGER"),
    ("orders", "refunded_amount", "INTEGER NOT NULL DEFAULT 0"),
    ("orders", "business_type", "TEXT"),
    ("orders", "business_id", "TEXT"),
    ("payment_logs", "detail", "TEXT"),
    ("notify_outbox", "locked_until", "TEXT"),
];

/// After the columns exist, so an index over an added column can be created.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS idx_orders_transaction_id ON orders (transaction_id);
CREATE INDEX IF NOT EXISTS idx_orders_openid ON orders (openid);
CREATE INDEX IF NOT EXISTS idx_payment_logs_out_trade_no ON payment_logs (out_trade_no);
CREATE INDEX IF NOT EXISTS idx_refunds_out_trade_no ON refunds (out_trade_no);
CREATE INDEX IF NOT EXISTS idx_notify_outbox_due ON notify_outbox (status, next_try_at);
CREATE INDEX IF NOT EXISTS idx_notify_outbox_out_trade_no ON notify_outbox (out_trade_no);
";

const ORDER_COLS: &str = "out_trade_no, transaction_id, openid, user_id, generation_id, \
     package_type, business_type, business_id, amount, paid_amount, refunded_amount, \
     description, trade_type, status, paid_at, created_at, updated_at";

const REFUND_COLS: &str =
    "out_refund_no, out_trade_no, refund_id, amount, status, reason, created_at, success_at";

const OUTBOX_COLS: &str = "id, out_trade_no, business_type, payload, status, attempts, \
     last_error, next_try_at, created_at, delivered_at";

const LOG_COLS: &str = "`type`, out_trade_no, transaction_id, openid, package_type, \
     generation_id, event_type, amount_total, detail";

/// The embedded SQLite store (`sqlite://PATH`, `sqlite::memory:`).
pub struct SqliteStore {
    conn: Mutex<Connection>,
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
        let conn = Connection::open(path).map_err(map_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        // WAL lets readers (an operator's shell) proceed while a function writes.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(map_err)?;
        Self::with_connection(conn)
    }

    /// A private database that lives as long as this store (tests, throwaway local runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(map_err)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, StoreError> {
        create_schema(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done transaction behind
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA).map_err(map_err)?;
    for (table, column, decl) in ADDED_COLUMNS {
        let exists: bool = conn
            .query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(map_err)?;
        }
    }
    conn.execute_batch(INDEXES).map_err(map_err)
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

/// Both stores keep milliseconds (MySQL `DATETIME(3)`); truncating here keeps the two
/// identical and makes a value read back equal to the one written.
fn ts(t: OffsetDateTime) -> Result<String, StoreError> {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .map_err(|e| StoreError::Query(format!("bad timestamp: {e}")))?;
    t.format(TS_FORMAT)
        .map_err(|e| StoreError::Query(format!("bad timestamp: {e}")))
}

fn ts_opt(t: Option<OffsetDateTime>) -> Result<Option<String>, StoreError> {
    t.map(ts).transpose()
}

fn lease_end(now: OffsetDateTime, lease_secs: i64) -> Result<OffsetDateTime, StoreError> {
    now.checked_add(time::Duration::seconds(lease_secs.max(0)))
        .ok_or_else(|| StoreError::Query("lease end out of range".to_string()))
}

fn conversion(idx: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, what.to_string().into())
}

fn get_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    let s: String = row.get(idx)?;
    parse_ts(&s).ok_or_else(|| conversion(idx, "unparseable timestamp"))
}

fn get_ts_opt(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(s) => parse_ts(&s)
            .map(Some)
            .ok_or_else(|| conversion(idx, "unparseable timestamp")),
    }
}

fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, TS_FORMAT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn order_from_row(row: &Row<'_>) -> rusqlite::Result<Order> {
    let status: String = row.get(13)?;
    Ok(Order {
        out_trade_no: row.get(0)?,
        transaction_id: row.get(1)?,
        openid: row.get(2)?,
        user_id: row.get(3)?,
        generation_id: row.get(4)?,
        package_type: row.get(5)?,
        business_type: row.get(6)?,
        business_id: row.get(7)?,
        amount: row.get(8)?,
        paid_amount: row.get(9)?,
        refunded_amount: row.get(10)?,
        description: row.get(11)?,
        trade_type: row.get(12)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| conversion(13, "unknown order status"))?,
        paid_at: get_ts_opt(row, 14)?,
        created_at: get_ts(row, 15)?,
        updated_at: get_ts(row, 16)?,
    })
}

fn refund_from_row(row: &Row<'_>) -> rusqlite::Result<Refund> {
    let status: String = row.get(4)?;
    Ok(Refund {
        out_refund_no: row.get(0)?,
        out_trade_no: row.get(1)?,
        refund_id: row.get(2)?,
        amount: row.get(3)?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| conversion(4, "unknown refund status"))?,
        reason: row.get(5)?,
        created_at: get_ts(row, 6)?,
        success_at: get_ts_opt(row, 7)?,
    })
}

fn outbox_from_row(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let status: String = row.get(4)?;
    Ok(OutboxRow {
        id: row.get(0)?,
        out_trade_no: row.get(1)?,
        business_type: row.get(2)?,
        payload: row.get(3)?,
        status: match status.as_str() {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            _ => return Err(conversion(4, "unknown outbox status")),
        },
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        next_try_at: get_ts(row, 7)?,
        created_at: get_ts(row, 8)?,
        delivered_at: get_ts_opt(row, 9)?,
    })
}

fn log_from_row(row: &Row<'_>) -> rusqlite::Result<PaymentLog> {
    Ok(PaymentLog {
        log_type: row.get(0)?,
        out_trade_no: row.get(1)?,
        transaction_id: row.get(2)?,
        openid: row.get(3)?,
        package_type: row.get(4)?,
        generation_id: row.get(5)?,
        event_type: row.get(6)?,
        amount_total: row.get(7)?,
        detail: row.get(8)?,
    })
}

fn select_order(conn: &Connection, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
    conn.query_row(
        &format!("SELECT {ORDER_COLS} FROM orders WHERE out_trade_no = ?1"),
        [out_trade_no],
        order_from_row,
    )
    .optional()
    .map_err(map_err)
}

fn select_refund(conn: &Connection, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
    conn.query_row(
        &format!("SELECT {REFUND_COLS} FROM refunds WHERE out_refund_no = ?1"),
        [out_refund_no],
        refund_from_row,
    )
    .optional()
    .map_err(map_err)
}

fn select_outbox(conn: &Connection, id: i64) -> Result<Option<OutboxRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {OUTBOX_COLS} FROM notify_outbox WHERE id = ?1"),
        [id],
        outbox_from_row,
    )
    .optional()
    .map_err(map_err)
}

fn write_log(conn: &Connection, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO payment_logs ({LOG_COLS}, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
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
    )
    .map_err(map_err)?;
    Ok(())
}

/// The guarded lease: only a pending row whose lease has lapsed can be taken, so of any
/// number of concurrent claimers exactly one sees a changed row.
fn claim(
    conn: &Connection,
    id: i64,
    now: OffsetDateTime,
    lease_secs: i64,
) -> Result<Option<OutboxRow>, StoreError> {
    let now_s = ts(now)?;
    let changed = conn
        .execute(
            "UPDATE notify_outbox SET locked_until = ?1, attempts = attempts + 1 \
             WHERE id = ?2 AND status = 'pending' \
               AND (locked_until IS NULL OR locked_until <= ?3)",
            params![ts(lease_end(now, lease_secs)?)?, id, now_s],
        )
        .map_err(map_err)?;
    if changed == 1 {
        select_outbox(conn, id)
    } else {
        Ok(None)
    }
}

impl SqliteStore {
    fn mark_paid_sync(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let now = ts(paid.now)?;
        let changed = tx
            .execute(
                "UPDATE orders SET status = 'paid', transaction_id = ?1, paid_amount = ?2, \
                     openid = COALESCE(openid, ?3), paid_at = ?4, updated_at = ?5 \
                 WHERE out_trade_no = ?6 AND status IN ('pending', 'failed', 'closed')",
                params![
                    paid.transaction_id,
                    paid.paid_amount,
                    paid.payer_openid,
                    ts(paid.paid_at)?,
                    now,
                    paid.out_trade_no,
                ],
            )
            .map_err(map_err)?;
        let Some(order) = select_order(&tx, &paid.out_trade_no)? else {
            return Ok(PaidOutcome::NotFound);
        };
        if changed != 1 {
            // Dropping `tx` rolls back; nothing was written anyway.
            return Ok(PaidOutcome::AlreadyPaid(order));
        }
        write_log(&tx, &paid.log, paid.now)?;
        tx.execute(
            "INSERT INTO notify_outbox (out_trade_no, business_type, payload, status, attempts, \
                 next_try_at, created_at) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
            params![
                order.out_trade_no,
                order.business_type,
                paid.outbox_payload,
                now
            ],
        )
        .map_err(map_err)?;
        let outbox_id = tx.last_insert_rowid();
        tx.commit().map_err(map_err)?;
        Ok(PaidOutcome::Transitioned { order, outbox_id })
    }

    fn reserve_refund_sync(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        if let Some(existing) = select_refund(&tx, &refund.out_refund_no)? {
            return Ok(if existing.out_trade_no == refund.out_trade_no {
                RefundReservation::Existing(existing)
            } else {
                RefundReservation::OtherOrder(existing)
            });
        }
        let Some(order) = select_order(&tx, &refund.out_trade_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if order.status != OrderStatus::Paid {
            return Ok(RefundReservation::NotRefundable(order.status));
        }
        let in_flight: i64 = tx
            .query_row(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds \
                 WHERE out_trade_no = ?1 AND status IN ('processing', 'abnormal')",
                [&refund.out_trade_no],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        let remaining =
            order.paid_amount.unwrap_or(order.amount) - order.refunded_amount - in_flight;
        let requested = refund.amount.unwrap_or(remaining);
        if requested < 1 || requested > remaining {
            return Ok(RefundReservation::Exceeds {
                requested,
                remaining,
            });
        }
        tx.execute(
            "INSERT INTO refunds (out_refund_no, out_trade_no, refund_id, amount, status, reason, \
                 created_at, success_at) VALUES (?1, ?2, NULL, ?3, 'processing', ?4, ?5, NULL)",
            params![
                refund.out_refund_no,
                refund.out_trade_no,
                requested,
                refund.reason,
                ts(refund.now)?,
            ],
        )
        .map_err(map_err)?;
        let created = select_refund(&tx, &refund.out_refund_no)?
            .ok_or_else(|| StoreError::Query("refund vanished right after insert".to_string()))?;
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Created(created))
    }

    fn revive_failed_refund_sync(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        let mut conn = self.lock();
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
        if order.status != OrderStatus::Paid {
            return Ok(RefundReservation::NotRefundable(order.status));
        }
        let in_flight: i64 = tx
            .query_row(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds \
                 WHERE out_trade_no = ?1 AND status IN ('processing', 'abnormal')",
                [&refund.out_trade_no],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        let remaining =
            order.paid_amount.unwrap_or(order.amount) - order.refunded_amount - in_flight;
        if refund.amount > remaining {
            return Ok(RefundReservation::Exceeds {
                requested: refund.amount,
                remaining,
            });
        }
        tx.execute(
            "UPDATE refunds SET status = 'processing' \
             WHERE out_refund_no = ?1 AND status = 'failed'",
            [out_refund_no],
        )
        .map_err(map_err)?;
        let revived = select_refund(&tx, out_refund_no)?
            .ok_or_else(|| StoreError::Query("refund vanished while revived".to_string()))?;
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Existing(revived))
    }

    fn finish_refund_sync(&self, result: &RefundResult) -> Result<bool, StoreError> {
        if !result.status.is_final() {
            return Err(StoreError::Query(format!(
                "finish_refund needs a final status, got {}",
                result.status.as_str()
            )));
        }
        let success = result.status == RefundStatus::Success;
        let success_at = if success {
            Some(result.success_at.unwrap_or(result.now))
        } else {
            None
        };
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        match select_refund(&tx, &result.out_refund_no)? {
            None => {
                // Made in the merchant portal (or our reservation was lost): record it as
                // WeChat Pay reports it.
                tx.execute(
                    "INSERT INTO refunds (out_refund_no, out_trade_no, refund_id, amount, status, \
                         reason, created_at, success_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
                    params![
                        result.out_refund_no,
                        result.out_trade_no,
                        result.refund_id,
                        result.amount,
                        result.status.as_str(),
                        ts(result.now)?,
                        ts_opt(success_at)?,
                    ],
                )
                .map_err(map_err)?;
            }
            Some(known) => {
                if known.out_trade_no != result.out_trade_no {
                    tracing::warn!(
                        out_refund_no = %result.out_refund_no,
                        "refund result names another order than the one recorded; ignored"
                    );
                    return Ok(false);
                }
                // `failed` is not final here: WeChat Pay may have created the refund after
                // all (a timeout we took for a refusal), and its word wins. Nor is
                // `abnormal`: the merchant can re-route it, and it then succeeds or closes.
                let open = matches!(
                    known.status,
                    RefundStatus::Processing | RefundStatus::Failed | RefundStatus::Abnormal
                );
                if !open || known.status == result.status {
                    return Ok(false);
                }
                let changed = tx
                    .execute(
                        "UPDATE refunds SET status = ?1, refund_id = COALESCE(?2, refund_id), \
                             success_at = ?3, amount = CASE WHEN ?4 THEN ?5 ELSE amount END \
                         WHERE out_refund_no = ?6 AND status IN ('processing', 'failed', 'abnormal')",
                        params![
                            result.status.as_str(),
                            result.refund_id,
                            ts_opt(success_at)?,
                            success,
                            result.amount,
                            result.out_refund_no,
                        ],
                    )
                    .map_err(map_err)?;
                if changed != 1 {
                    return Ok(false);
                }
            }
        }
        if success {
            // `status` is assigned before `refunded_amount` and both read the old value
            // (MySQL evaluates SET left to right with new values; keeping this order makes
            // the same statement mean the same thing on both databases).
            tx.execute(
                "UPDATE orders SET \
                     status = CASE WHEN refunded_amount + ?1 >= COALESCE(paid_amount, amount) \
                                   THEN 'refunded' ELSE status END, \
                     refunded_amount = refunded_amount + ?1, updated_at = ?2 \
                 WHERE out_trade_no = ?3",
                params![result.amount, ts(result.now)?, result.out_trade_no],
            )
            .map_err(map_err)?;
        }
        write_log(&tx, &result.log, result.now)?;
        tx.commit().map_err(map_err)?;
        Ok(true)
    }

    fn guarded_order_update(
        &self,
        out_trade_no: &str,
        new_status: OrderStatus,
        from: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let changed = conn
            .execute(
                &format!(
                    "UPDATE orders SET status = ?1, updated_at = ?2 \
                     WHERE out_trade_no = ?3 AND status IN ({from})"
                ),
                params![new_status.as_str(), ts(now)?, out_trade_no],
            )
            .map_err(map_err)?;
        Ok(changed == 1)
    }

    fn claim_due_sync(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.lock();
        let now_s = ts(now)?;
        let ids: Vec<i64> = {
            let mut stmt = conn
                .prepare(
                    "SELECT id FROM notify_outbox \
                     WHERE status = 'pending' AND (?1 OR next_try_at <= ?2) \
                       AND (locked_until IS NULL OR locked_until <= ?2) \
                     ORDER BY created_at, id LIMIT ?3",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![force, now_s, limit.max(0)], |r| r.get(0))
                .map_err(map_err)?;
            rows.collect::<Result<_, _>>().map_err(map_err)?
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = claim(&conn, id, now, lease_secs)? {
                claimed.push(row);
            }
        }
        Ok(claimed)
    }

    fn query_list<T>(
        &self,
        sql: &str,
        key: &str,
        f: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(sql).map_err(map_err)?;
        let rows = stmt.query_map([key], f).map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn reconciliations(&self) -> &dyn super::ReconciliationStore {
        self
    }

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

    async fn count_orders(&self) -> Result<i64, StoreError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
            .map_err(map_err)
    }

    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError> {
        let created = ts(order.created_at)?;
        self.lock()
            .execute(
                "INSERT INTO orders (out_trade_no, transaction_id, openid, user_id, generation_id, \
                     package_type, business_type, business_id, amount, paid_amount, \
                     refunded_amount, description, trade_type, status, paid_at, created_at, \
                     updated_at) \
                 VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, 0, ?9, ?10, 'pending', NULL, \
                     ?11, ?11)",
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
                ],
            )
            .map_err(map_err)?;
        Ok(())
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
        select_order(&self.lock(), out_trade_no)
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        self.lock()
            .query_row(
                &format!(
                    "SELECT {ORDER_COLS} FROM orders WHERE transaction_id = ?1 \
                     ORDER BY created_at LIMIT 1"
                ),
                [transaction_id],
                order_from_row,
            )
            .optional()
            .map_err(map_err)
    }

    async fn mark_order_failed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.guarded_order_update(out_trade_no, OrderStatus::Failed, "'pending'", now)
    }

    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        self.mark_paid_sync(paid)
    }

    async fn mark_closed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.guarded_order_update(
            out_trade_no,
            OrderStatus::Closed,
            "'pending', 'failed'",
            now,
        )
    }

    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        write_log(&self.lock(), log, now)
    }

    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        self.reserve_refund_sync(refund)
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        select_refund(&self.lock(), out_refund_no)
    }

    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE refunds SET refund_id = ?1 WHERE out_refund_no = ?2",
                params![refund_id, out_refund_no],
            )
            .map_err(map_err)?;
        Ok(())
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE refunds SET status = 'failed' \
                 WHERE out_refund_no = ?1 AND status = 'processing'",
                [out_refund_no],
            )
            .map_err(map_err)?;
        Ok(changed == 1)
    }

    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        self.revive_failed_refund_sync(out_refund_no)
    }

    async fn finish_refund(&self, result: &RefundResult) -> Result<bool, StoreError> {
        self.finish_refund_sync(result)
    }

    async fn claim_notification(
        &self,
        id: i64,
        now: OffsetDateTime,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        claim(&self.lock(), id, now, lease_secs)
    }

    async fn claim_due_notifications(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.claim_due_sync(now, lease_secs, limit, force)
    }

    async fn mark_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE notify_outbox SET status = 'delivered', delivered_at = ?1, \
                     locked_until = NULL \
                 WHERE id = ?2 AND status = 'pending'",
                params![ts(now)?, id],
            )
            .map_err(map_err)?;
        Ok(())
    }

    async fn mark_delivery_failed(
        &self,
        id: i64,
        error: &str,
        next_try_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        self.lock()
            .execute(
                "UPDATE notify_outbox SET last_error = ?1, next_try_at = ?2, locked_until = NULL \
                 WHERE id = ?3 AND status = 'pending'",
                params![error, ts(next_try_at)?, id],
            )
            .map_err(map_err)?;
        Ok(())
    }

    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.query_list(
            &format!(
                "SELECT {OUTBOX_COLS} FROM notify_outbox WHERE out_trade_no = ?1 \
                 ORDER BY created_at, id"
            ),
            out_trade_no,
            outbox_from_row,
        )
    }

    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError> {
        self.query_list(
            &format!(
                "SELECT {LOG_COLS} FROM payment_logs WHERE out_trade_no = ?1 \
                 ORDER BY created_at, id"
            ),
            out_trade_no,
            log_from_row,
        )
    }

    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError> {
        self.query_list(
            &format!(
                "SELECT {REFUND_COLS} FROM refunds WHERE out_trade_no = ?1 \
                 ORDER BY created_at, out_refund_no"
            ),
            out_trade_no,
            refund_from_row,
        )
    }
}
