//! The production store: MySQL (or MariaDB) through `mysql_async`.
//!
//! Serverless shape: constructing the store does no I/O (the pool connects on first use),
//! the schema is created on the first query of a process (and by `migrate`), the pool keeps
//! at most a handful of connections and lets idle ones go, and a pooled connection the
//! server dropped while the instance was frozen is replaced instead of failing the call.
//!
//! Locking discipline, which the money-safety of every "one transaction" method rests on:
//! a transaction first takes the order row with `SELECT … FOR UPDATE`, and only then does
//! plain reads. Under InnoDB's REPEATABLE READ the read view is created by the first plain
//! read, so those reads see every transaction that held the same order lock before us.
//! Plain reads (instead of locking reads) on `refunds` avoid gap locks, which would make two
//! refunds of neighbouring orders deadlock each other on insert. Rows on other tables are
//! then changed with guarded `UPDATE … WHERE status …` statements, which always see the
//! latest committed row, so a duplicate caller changes nothing.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{
    Conn, DriverError, Opts, OptsBuilder, Params, Pool, PoolConstraints, Row, TxOpts, UrlError,
    Value,
};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tokio::sync::OnceCell;

mod reconcile;

use super::{
    NewOrder, NewRefund, Order, OrderStatus, OutboxRow, OutboxStatus, PaidOutcome, PaidTransition,
    PaymentLog, Refund, RefundReservation, RefundResult, RefundStatus, Store, StoreError,
};

/// A function instance serves one request at a time; a few connections cover the fan-out
/// of one request plus the background retries, and keep a burst of cold starts from
/// exhausting the server's `max_connections`.
const POOL_MIN: usize = 0;
const POOL_MAX: usize = 10;

/// Connections idle longer than this are not reused: after a freeze the server, a proxy or
/// a NAT gateway may have dropped them silently.
const CONN_TTL: Duration = Duration::from_secs(60);

/// Budget for getting a connection (pool wait + TCP + handshake). A notification must be
/// answered within 5 s, and an unreachable host would otherwise hang for the OS's SYN
/// timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Deadlocks are rare with the discipline above, but InnoDB may still pick a victim (for
/// example under the auto-increment lock); the victim's work was rolled back, so it is safe
/// to run again.
const MAX_ATTEMPTS: u32 = 3;

const MAX_ERROR_CHARS: usize = 1000;

const ER_DUP_ENTRY: u16 = 1062;
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;
const ER_LOCK_DEADLOCK: u16 = 1213;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS orders (
        out_trade_no    VARCHAR(32)  NOT NULL,
        transaction_id  VARCHAR(64)  NULL,
        openid          VARCHAR(128) NULL,
        user_id         VARCHAR(128) NULL,
        generation_id   VARCHAR(128) NULL,
        package_type    VARCHAR(64)  NULL,
        business_type   VARCHAR(64)  NULL,
        business_id     VARCHAR(128) NULL,
        amount          BIGINT       NOT NULL,
        paid_amount     BIGINT       NULL,
        refunded_amount BIGINT       NOT NULL DEFAULT 0,
        description     VARCHAR(255) NOT NULL DEFAULT '',
        trade_type      VARCHAR(16)  NOT NULL,
        status          VARCHAR(16)  NOT NULL,
        paid_at         DATETIME(3)  NULL,
        created_at      DATETIME(3)  NOT NULL,
        updated_at      DATETIME(3)  NOT NULL,
        PRIMARY KEY (out_trade_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS payment_logs (
        id             BIGINT       NOT NULL AUTO_INCREMENT,
        `type`         VARCHAR(32)  NOT NULL,
        out_trade_no   VARCHAR(64)  NULL,
        transaction_id VARCHAR(64)  NULL,
        openid         VARCHAR(128) NULL,
        package_type   VARCHAR(64)  NULL,
        generation_id  VARCHAR(128) NULL,
        event_type     VARCHAR(64)  NULL,
        amount_total   BIGINT       NULL,
        detail         TEXT         NULL,
        created_at     DATETIME(3)  NOT NULL,
        PRIMARY KEY (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS refunds (
        out_refund_no VARCHAR(64)  NOT NULL,
        out_trade_no  VARCHAR(32)  NOT NULL,
        refund_id     VARCHAR(64)  NULL,
        amount        BIGINT       NOT NULL,
        status        VARCHAR(16)  NOT NULL,
        reason        VARCHAR(255) NULL,
        created_at    DATETIME(3)  NOT NULL,
        success_at    DATETIME(3)  NULL,
        PRIMARY KEY (out_refund_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS notify_outbox (
        id            BIGINT       NOT NULL AUTO_INCREMENT,
        out_trade_no  VARCHAR(32)  NOT NULL,
        business_type VARCHAR(64)  NULL,
        payload       TEXT         NOT NULL,
        status        VARCHAR(16)  NOT NULL DEFAULT 'pending',
        attempts      INT          NOT NULL DEFAULT 0,
        last_error    TEXT         NULL,
        next_try_at   DATETIME(3)  NOT NULL,
        locked_until  DATETIME(3)  NULL,
        created_at    DATETIME(3)  NOT NULL,
        delivered_at  DATETIME(3)  NULL,
        PRIMARY KEY (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS reconciliations (
        bill_date     CHAR(10)     NOT NULL,
        status        VARCHAR(16)  NOT NULL,
        bill_rows     BIGINT       NOT NULL,
        payments      BIGINT       NOT NULL,
        payment_total BIGINT       NOT NULL,
        refunds       BIGINT       NOT NULL,
        refund_total  BIGINT       NOT NULL,
        repaired      BIGINT       NOT NULL DEFAULT 0,
        flagged       BIGINT       NOT NULL DEFAULT 0,
        created_at    DATETIME(3)  NOT NULL,
        updated_at    DATETIME(3)  NOT NULL,
        PRIMARY KEY (bill_date)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS reconciliation_items (
        id            BIGINT       NOT NULL AUTO_INCREMENT,
        bill_date     CHAR(10)     NOT NULL,
        out_trade_no  VARCHAR(32)  NOT NULL,
        out_refund_no VARCHAR(64)  NOT NULL DEFAULT '',
        kind          VARCHAR(32)  NOT NULL,
        detail        TEXT         NOT NULL,
        created_at    DATETIME(3)  NOT NULL,
        PRIMARY KEY (id),
        UNIQUE KEY uniq_reconciliation_item (bill_date, kind, out_trade_no, out_refund_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

/// Columns added after a table's first release: `CREATE TABLE IF NOT EXISTS` leaves an
/// existing table alone, so these are added when `information_schema` lacks them. (MySQL,
/// unlike MariaDB, has no `ADD COLUMN IF NOT EXISTS`.)
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("orders", "paid_amount", "BIGINT NULL"),
    ("orders", "refunded_amount", "BIGINT NOT NULL DEFAULT 0"),
    ("orders", "business_type", "VARCHAR(64) NULL"),
    ("orders", "business_id", "VARCHAR(128) NULL"),
    ("payment_logs", "detail", "TEXT NULL"),
    ("notify_outbox", "locked_until", "DATETIME(3) NULL"),
];

/// Indexes live outside `CREATE TABLE` so a table from an earlier release gains them too.
const INDEXES: &[(&str, &str, &str)] = &[
    ("orders", "idx_orders_transaction_id", "transaction_id"),
    ("orders", "idx_orders_openid", "openid"),
    (
        "payment_logs",
        "idx_payment_logs_out_trade_no",
        "out_trade_no",
    ),
    ("refunds", "idx_refunds_out_trade_no", "out_trade_no"),
    (
        "notify_outbox",
        "idx_notify_outbox_due",
        "status, next_try_at",
    ),
    (
        "notify_outbox",
        "idx_notify_outbox_out_trade_no",
        "out_trade_no",
    ),
];

const ORDER_COLS: &str = "out_trade_no, transaction_id, openid, user_id, generation_id, \
     package_type, business_type, business_id, amount, paid_amount, refunded_amount, \
     description, trade_type, status, paid_at, created_at, updated_at";

const REFUND_COLS: &str =
    "out_refund_no, out_trade_no, refund_id, amount, status, reason, created_at, success_at";

const OUTBOX_COLS: &str = "id, out_trade_no, business_type, payload, status, attempts, \
     last_error, next_try_at, created_at, delivered_at";

const LOG_COLS: &str = "`type`, out_trade_no, transaction_id, openid, package_type, \
     generation_id, event_type, amount_total, detail";

/// Positional statement parameters from heterogeneous values.
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        Params::Positional(vec![$(Value::from($v)),*])
    };
}

/// The MySQL store (`mysql://user:pass@host:port/db`).
pub struct MySqlStore {
    pool: Pool,
    schema: OnceCell<()>,
    /// The URL and password, scrubbed from every message we produce.
    secrets: Vec<String>,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore").finish_non_exhaustive()
    }
}

/// Why an attempt failed: a database error still to be classified (and maybe retried), or
/// an already-final store error.
enum Fail {
    Db(mysql_async::Error),
    Store(StoreError),
}

impl From<mysql_async::Error> for Fail {
    fn from(e: mysql_async::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl MySqlStore {
    /// Parses the URL and sets up a lazy pool. No connection is made here.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let secrets = secrets_of(url);
        let opts = Opts::from_url(url)
            .map_err(|e| StoreError::BadUrl(scrub(&describe_url_error(&e), &secrets)))?;
        let mut pool_opts = opts.pool_opts().clone();
        // An explicit `pool_min`/`pool_max` in the URL wins over our serverless defaults.
        if !url.contains("pool_min=") && !url.contains("pool_max=") {
            if let Some(constraints) = PoolConstraints::new(POOL_MIN, POOL_MAX) {
                pool_opts = pool_opts.with_constraints(constraints);
            }
        }
        pool_opts = pool_opts.with_inactive_connection_ttl(CONN_TTL);
        // Resetting a connection on its way back to the pool also drops its prepared
        // statements, so every query was prepared again. The store leaves no session state
        // behind (each transaction commits or rolls back), so keep them unless told otherwise.
        if !url.contains("reset_connection=") {
            pool_opts = pool_opts.with_reset_connection(false);
        }
        let conn_ttl = opts.conn_ttl().unwrap_or(CONN_TTL);
        let builder = OptsBuilder::from_opts(opts)
            .pool_opts(pool_opts)
            .conn_ttl(conn_ttl);
        Ok(MySqlStore {
            pool: Pool::new(builder),
            schema: OnceCell::new(),
            secrets,
        })
    }

    fn classify(&self, e: mysql_async::Error) -> StoreError {
        let unavailable = match &e {
            mysql_async::Error::Io(_) | mysql_async::Error::Other(_) => true,
            mysql_async::Error::Url(_) => false,
            mysql_async::Error::Driver(d) => !matches!(
                d,
                DriverError::FromValue { .. }
                    | DriverError::FromRow { .. }
                    | DriverError::Params(_)
                    | DriverError::MixedParams
                    | DriverError::StmtParamsMismatch { .. }
                    | DriverError::StmtParamsNumberExceedsLimit { .. }
                    | DriverError::NestedTransaction
                    | DriverError::LocalInfile(_)
                    | DriverError::BulkExecute(_)
            ),
            // Too many connections, server shutting down, lock wait timeout, deadlock,
            // read-only failover replica: the statement was fine, the moment was not.
            mysql_async::Error::Server(s) => matches!(
                s.code,
                1040 | 1053 | 1205 | ER_LOCK_DEADLOCK | 1290 | 1836 | 1927 | 4031
            ),
        };
        let message = scrub(&e.to_string(), &self.secrets);
        if unavailable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Query(message)
        }
    }

    fn settle(&self, f: Fail) -> StoreError {
        match f {
            Fail::Db(e) => self.classify(e),
            Fail::Store(StoreError::Unavailable(m)) => {
                StoreError::Unavailable(scrub(&m, &self.secrets))
            }
            Fail::Store(StoreError::Query(m)) => StoreError::Query(scrub(&m, &self.secrets)),
            Fail::Store(StoreError::BadUrl(m)) => StoreError::BadUrl(scrub(&m, &self.secrets)),
        }
    }

    /// Runs one attempt of a transactional operation again when InnoDB chose it as a
    /// deadlock victim (its work was rolled back, so running it again is safe).
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Fail::Db(e))
                    if tries < MAX_ATTEMPTS && server_code(&e) == Some(ER_LOCK_DEADLOCK) =>
                {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
                }
                Err(f) => return Err(self.settle(f)),
            }
        }
    }

    async fn raw_conn(&self) -> Result<Conn, StoreError> {
        let get = async {
            match self.pool.get_conn().await {
                Ok(c) => Ok(c),
                // A pooled connection that died while the instance was frozen fails its
                // liveness check here; the second try opens a fresh one.
                Err(e) if e.is_fatal() => self.pool.get_conn().await,
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, get).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no database connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A connection to a database whose schema exists.
    async fn conn(&self) -> Result<Conn, StoreError> {
        self.schema.get_or_try_init(|| self.create_schema()).await?;
        self.raw_conn().await
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.raw_conn().await?;
        self.create_schema_on(&mut conn)
            .await
            .map_err(|e| self.settle(e))
    }

    async fn create_schema_on(&self, conn: &mut Conn) -> Result<(), Fail> {
        for ddl in SCHEMA {
            conn.query_drop(*ddl).await?;
        }
        let columns: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() \
                   AND TABLE_NAME IN ('orders', 'payment_logs', 'refunds', 'notify_outbox')",
            )
            .await?;
        for (table, column, decl) in ADDED_COLUMNS {
            if !columns
                .iter()
                .any(|(t, c)| t.eq_ignore_ascii_case(table) && c.eq_ignore_ascii_case(column))
            {
                let ddl = format!("ALTER TABLE {table} ADD COLUMN {column} {decl}");
                ignore_codes(conn.query_drop(ddl).await, &[ER_DUP_FIELDNAME])?;
            }
        }
        let indexes: Vec<(String, String)> = conn
            .query(
                "SELECT DISTINCT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() \
                   AND TABLE_NAME IN ('orders', 'payment_logs', 'refunds', 'notify_outbox')",
            )
            .await?;
        for (table, index, cols) in INDEXES {
            if !indexes
                .iter()
                .any(|(t, i)| t.eq_ignore_ascii_case(table) && i.eq_ignore_ascii_case(index))
            {
                let ddl = format!("CREATE INDEX {index} ON {table} ({cols})");
                // Another cold start may have created it a moment ago.
                ignore_codes(conn.query_drop(ddl).await, &[ER_DUP_KEYNAME])?;
            }
        }
        Ok(())
    }

    async fn mark_paid_once(&self, paid: &PaidTransition) -> Result<PaidOutcome, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let Some(order) = select_order(&mut tx, &paid.out_trade_no, true).await? else {
            tx.rollback().await?;
            return Ok(PaidOutcome::NotFound);
        };
        if !order.status.is_unpaid() {
            tx.rollback().await?;
            return Ok(PaidOutcome::AlreadyPaid(order));
        }
        let now = dt(paid.now)?;
        tx.exec_drop(
            "UPDATE orders SET status = 'paid', transaction_id = ?, paid_amount = ?, \
                 openid = COALESCE(openid, ?), paid_at = ?, updated_at = ? \
             WHERE out_trade_no = ? AND status IN ('pending', 'failed', 'closed')",
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
            // Cannot happen while we hold the row lock; fail safe rather than queue a
            // second notification.
            tx.rollback().await?;
            return Ok(
                match select_order(&mut conn, &paid.out_trade_no, false).await? {
                    Some(order) => PaidOutcome::AlreadyPaid(order),
                    None => PaidOutcome::NotFound,
                },
            );
        }
        insert_log(&mut tx, &paid.log, paid.now).await?;
        tx.exec_drop(
            "INSERT INTO notify_outbox (out_trade_no, business_type, payload, status, attempts, \
                 next_try_at, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
            params![
                &order.out_trade_no,
                &order.business_type,
                &paid.outbox_payload,
                now,
                now,
            ],
        )
        .await?;
        let outbox_id = last_id(tx.last_insert_id())?;
        tx.commit().await?;
        // The row is locked and we just wrote it: no need to read it back.
        let mut order = order;
        order.status = OrderStatus::Paid;
        order.transaction_id = Some(paid.transaction_id.clone());
        order.paid_amount = Some(paid.paid_amount);
        if order.openid.is_none() {
            order.openid = paid.payer_openid.clone();
        }
        order.paid_at = Some(to_stored_precision(paid.paid_at));
        order.updated_at = to_stored_precision(paid.now);
        Ok(PaidOutcome::Transitioned { order, outbox_id })
    }

    async fn reserve_refund_once(&self, refund: &NewRefund) -> Result<RefundReservation, Fail> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // The lock comes first: see the module comment.
        let order = select_order(&mut tx, &refund.out_trade_no, true).await?;
        if let Some(existing) = select_refund(&mut tx, &refund.out_refund_no).await? {
            tx.rollback().await?;
            return Ok(existing_reservation(existing, &refund.out_trade_no));
        }
        let Some(order) = order else {
            tx.rollback().await?;
            return Ok(RefundReservation::OrderNotFound);
        };
        if order.status != OrderStatus::Paid {
            tx.rollback().await?;
            return Ok(RefundReservation::NotRefundable(order.status));
        }
        let in_flight: Option<i64> = tx
            .exec_first(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS SIGNED) FROM refunds \
                 WHERE out_trade_no = ? AND status IN ('processing', 'abnormal')",
                params![&refund.out_trade_no],
            )
            .await?;
        let remaining = order.paid_amount.unwrap_or(order.amount)
            - order.refunded_amount
            - in_flight.unwrap_or(0);
        let requested = refund.amount.unwrap_or(remaining);
        if requested < 1 || requested > remaining {
            tx.rollback().await?;
            return Ok(RefundReservation::Exceeds {
                requested,
                remaining,
            });
        }
        let inserted = tx
            .exec_drop(
                "INSERT INTO refunds (out_refund_no, out_trade_no, refund_id, amount, status, \
                     reason, created_at, success_at) \
                 VALUES (?, ?, NULL, ?, 'processing', ?, ?, NULL)",
                params![
                    &refund.out_refund_no,
                    &refund.out_trade_no,
                    requested,
                    &refund.reason,
                    dt(refund.now)?,
                ],
            )
            .await;
        match inserted {
            Ok(()) => {}
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                // The same out_refund_no was reserved concurrently (possibly for another
                // order, which holds a different lock): report the row that won.
                tx.rollback().await?;
                return match select_refund(&mut conn, &refund.out_refund_no).await? {
                    Some(existing) => Ok(existing_reservation(existing, &refund.out_trade_no)),
                    None => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let created = select_refund(&mut tx, &refund.out_refund_no)
            .await?
            .ok_or_else(|| StoreError::Query("refund vanished right after insert".into()))?;
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
        // The order lock first, as everywhere that decides what remains of an order.
        let order = select_order(&mut tx, &refund.out_trade_no, true).await?;
        let Some(refund) = select_refund(&mut tx, out_refund_no).await? else {
            tx.rollback().await?;
            return Ok(RefundReservation::OrderNotFound);
        };
        let Some(order) = order.filter(|_| refund.status == RefundStatus::Failed) else {
            tx.rollback().await?;
            return Ok(RefundReservation::Existing(refund));
        };
        if order.status != OrderStatus::Paid {
            tx.rollback().await?;
            return Ok(RefundReservation::NotRefundable(order.status));
        }
        let in_flight: Option<i64> = tx
            .exec_first(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS SIGNED) FROM refunds \
                 WHERE out_trade_no = ? AND status IN ('processing', 'abnormal')",
                params![&refund.out_trade_no],
            )
            .await?;
        let remaining = order.paid_amount.unwrap_or(order.amount)
            - order.refunded_amount
            - in_flight.unwrap_or(0);
        if refund.amount > remaining {
            tx.rollback().await?;
            return Ok(RefundReservation::Exceeds {
                requested: refund.amount,
                remaining,
            });
        }
        tx.exec_drop(
            "UPDATE refunds SET status = 'processing' \
             WHERE out_refund_no = ? AND status = 'failed'",
            params![out_refund_no],
        )
        .await?;
        let revived = select_refund(&mut tx, out_refund_no)
            .await?
            .ok_or_else(|| StoreError::Query("refund vanished while revived".into()))?;
        tx.commit().await?;
        Ok(RefundReservation::Existing(revived))
    }

    /// `None`: a concurrent caller inserted the same unknown refund first; run again.
    async fn finish_refund_once(&self, result: &RefundResult) -> Result<Option<bool>, Fail> {
        let success = result.status == RefundStatus::Success;
        let success_at = if success {
            Some(dt(result.success_at.unwrap_or(result.now))?)
        } else {
            None
        };
        let now = dt(result.now)?;
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // Serialises with reserve_refund and with duplicates of this result; see the
        // module comment for why the lock precedes every read.
        let _order = select_order(&mut tx, &result.out_trade_no, true).await?;
        match select_refund(&mut tx, &result.out_refund_no).await? {
            None => {
                // Made in the merchant portal (or our reservation was lost): record it as
                // WeChat Pay reports it.
                let inserted = tx
                    .exec_drop(
                        "INSERT INTO refunds (out_refund_no, out_trade_no, refund_id, amount, \
                             status, reason, created_at, success_at) \
                         VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                        params![
                            &result.out_refund_no,
                            &result.out_trade_no,
                            &result.refund_id,
                            result.amount,
                            result.status.as_str(),
                            now,
                            success_at,
                        ],
                    )
                    .await;
                match inserted {
                    Ok(()) => {}
                    Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(known) => {
                if known.out_trade_no != result.out_trade_no {
                    tx.rollback().await?;
                    tracing::warn!(
                        out_refund_no = %result.out_refund_no,
                        "refund result names another order than the one recorded; ignored"
                    );
                    return Ok(Some(false));
                }
                // `failed` is not final here: WeChat Pay may have created the refund after
                // all (a timeout we took for a refusal), and its word wins. Nor is
                // `abnormal`: the merchant can re-route it, and it then succeeds or closes.
                let open = matches!(
                    known.status,
                    RefundStatus::Processing | RefundStatus::Failed | RefundStatus::Abnormal
                );
                if !open || known.status == result.status {
                    tx.rollback().await?;
                    return Ok(Some(false));
                }
                tx.exec_drop(
                    "UPDATE refunds SET status = ?, refund_id = COALESCE(?, refund_id), \
                         success_at = ?, amount = CASE WHEN ? THEN ? ELSE amount END \
                     WHERE out_refund_no = ? AND status IN ('processing', 'failed', 'abnormal')",
                    params![
                        result.status.as_str(),
                        &result.refund_id,
                        success_at,
                        success,
                        result.amount,
                        &result.out_refund_no,
                    ],
                )
                .await?;
                if tx.affected_rows() != 1 {
                    tx.rollback().await?;
                    return Ok(Some(false));
                }
            }
        }
        if success {
            // `status` is assigned first because MySQL evaluates SET left to right with the
            // values already assigned; this way both read the old refunded_amount.
            tx.exec_drop(
                "UPDATE orders SET \
                     status = CASE WHEN refunded_amount + ? >= COALESCE(paid_amount, amount) \
                                   THEN 'refunded' ELSE status END, \
                     refunded_amount = refunded_amount + ?, updated_at = ? \
                 WHERE out_trade_no = ?",
                params![result.amount, result.amount, now, &result.out_trade_no],
            )
            .await?;
        }
        insert_log(&mut tx, &result.log, result.now).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn guarded_order_update(
        &self,
        out_trade_no: &str,
        to: OrderStatus,
        from: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                format!(
                    "UPDATE orders SET status = ?, updated_at = ? \
                     WHERE out_trade_no = ? AND status IN ({from})"
                ),
                params![to.as_str(), dt(now)?, out_trade_no],
            )
            .await?;
            Ok::<_, Fail>(conn.affected_rows() == 1)
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn claim_due_once(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, Fail> {
        let mut conn = self.conn().await?;
        let now_dt = dt(now)?;
        let ids: Vec<i64> = conn
            .exec(
                "SELECT id FROM notify_outbox \
                 WHERE status = 'pending' AND (? OR next_try_at <= ?) \
                   AND (locked_until IS NULL OR locked_until <= ?) \
                 ORDER BY created_at, id LIMIT ?",
                params![force, now_dt, now_dt, limit.max(0)],
            )
            .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = claim(&mut conn, id, now, lease_secs).await? {
                claimed.push(row);
            }
        }
        Ok(claimed)
    }

    async fn list<T>(
        &self,
        sql: String,
        key: &str,
        convert: fn(Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn.exec(sql, params![key]).await?;
            Ok::<_, Fail>(rows.into_iter().map(convert).collect::<Result<_, _>>()?)
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn exec_simple(&self, sql: &str, params: Params) -> Result<u64, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            conn.exec_drop(sql, params).await?;
            Ok::<_, Fail>(conn.affected_rows())
        };
        run.await.map_err(|e| self.settle(e))
    }
}

fn existing_reservation(existing: Refund, out_trade_no: &str) -> RefundReservation {
    if existing.out_trade_no == out_trade_no {
        RefundReservation::Existing(existing)
    } else {
        RefundReservation::OtherOrder(existing)
    }
}

fn ignore_codes(r: Result<(), mysql_async::Error>, codes: &[u16]) -> Result<(), Fail> {
    match r {
        Err(e) if server_code(&e).is_some_and(|c| codes.contains(&c)) => Ok(()),
        other => other.map_err(Fail::from),
    }
}

fn last_id(id: Option<u64>) -> Result<i64, StoreError> {
    id.and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| StoreError::Query("no auto-increment id returned".into()))
}

/// The guarded lease: only a pending row whose lease has lapsed can be taken, so of any
/// number of concurrent claimers exactly one sees a changed row.
async fn claim(
    conn: &mut Conn,
    id: i64,
    now: OffsetDateTime,
    lease_secs: i64,
) -> Result<Option<OutboxRow>, Fail> {
    let until = now
        .checked_add(time::Duration::seconds(lease_secs.max(0)))
        .ok_or_else(|| StoreError::Query("lease end out of range".into()))?;
    let now_dt = dt(now)?;
    conn.exec_drop(
        "UPDATE notify_outbox SET locked_until = ?, attempts = attempts + 1 \
         WHERE id = ? AND status = 'pending' AND (locked_until IS NULL OR locked_until <= ?)",
        params![dt(until)?, id, now_dt],
    )
    .await?;
    if conn.affected_rows() != 1 {
        return Ok(None);
    }
    let row: Option<Row> = conn
        .exec_first(
            format!("SELECT {OUTBOX_COLS} FROM notify_outbox WHERE id = ?"),
            params![id],
        )
        .await?;
    Ok(row.map(outbox_from_row).transpose()?)
}

async fn select_order<Q: Queryable>(
    q: &mut Q,
    out_trade_no: &str,
    for_update: bool,
) -> Result<Option<Order>, Fail> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row: Option<Row> = q
        .exec_first(
            format!("SELECT {ORDER_COLS} FROM orders WHERE out_trade_no = ?{lock}"),
            params![out_trade_no],
        )
        .await?;
    Ok(row.map(order_from_row).transpose()?)
}

async fn select_refund<Q: Queryable>(
    q: &mut Q,
    out_refund_no: &str,
) -> Result<Option<Refund>, Fail> {
    let row: Option<Row> = q
        .exec_first(
            format!("SELECT {REFUND_COLS} FROM refunds WHERE out_refund_no = ?"),
            params![out_refund_no],
        )
        .await?;
    Ok(row.map(refund_from_row).transpose()?)
}

async fn insert_log<Q: Queryable>(
    q: &mut Q,
    log: &PaymentLog,
    now: OffsetDateTime,
) -> Result<(), Fail> {
    q.exec_drop(
        format!(
            "INSERT INTO payment_logs ({LOG_COLS}, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
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

/// UTC, truncated to the milliseconds `DATETIME(3)` keeps (the server would round, which
/// could move a value across a `<=` comparison).
fn dt(t: OffsetDateTime) -> Result<PrimitiveDateTime, StoreError> {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .map_err(|e| StoreError::Query(format!("bad timestamp: {e}")))?;
    Ok(PrimitiveDateTime::new(t.date(), t.time()))
}

fn col<T: FromValue>(row: &mut Row, idx: usize) -> Result<T, StoreError> {
    match row.take_opt::<T, usize>(idx) {
        Some(Ok(v)) => Ok(v),
        // The value itself is left out: it may be an openid or a payload.
        Some(Err(_)) => Err(StoreError::Query(format!(
            "column {idx} has an unexpected type"
        ))),
        None => Err(StoreError::Query(format!("column {idx} missing"))),
    }
}

fn col_ts(row: &mut Row, idx: usize) -> Result<OffsetDateTime, StoreError> {
    Ok(col::<PrimitiveDateTime>(row, idx)?.assume_utc())
}

fn col_ts_opt(row: &mut Row, idx: usize) -> Result<Option<OffsetDateTime>, StoreError> {
    Ok(col::<Option<PrimitiveDateTime>>(row, idx)?.map(PrimitiveDateTime::assume_utc))
}

fn order_from_row(mut row: Row) -> Result<Order, StoreError> {
    let r = &mut row;
    let status: String = col(r, 13)?;
    Ok(Order {
        out_trade_no: col(r, 0)?,
        transaction_id: col(r, 1)?,
        openid: col(r, 2)?,
        user_id: col(r, 3)?,
        generation_id: col(r, 4)?,
        package_type: col(r, 5)?,
        business_type: col(r, 6)?,
        business_id: col(r, 7)?,
        amount: col(r, 8)?,
        paid_amount: col(r, 9)?,
        refunded_amount: col(r, 10)?,
        description: col(r, 11)?,
        trade_type: col(r, 12)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Query(format!("unknown order status {status:?}")))?,
        paid_at: col_ts_opt(r, 14)?,
        created_at: col_ts(r, 15)?,
        updated_at: col_ts(r, 16)?,
    })
}

fn refund_from_row(mut row: Row) -> Result<Refund, StoreError> {
    let r = &mut row;
    let status: String = col(r, 4)?;
    Ok(Refund {
        out_refund_no: col(r, 0)?,
        out_trade_no: col(r, 1)?,
        refund_id: col(r, 2)?,
        amount: col(r, 3)?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StoreError::Query(format!("unknown refund status {status:?}")))?,
        reason: col(r, 5)?,
        created_at: col_ts(r, 6)?,
        success_at: col_ts_opt(r, 7)?,
    })
}

fn outbox_from_row(mut row: Row) -> Result<OutboxRow, StoreError> {
    let r = &mut row;
    let status: String = col(r, 4)?;
    Ok(OutboxRow {
        id: col(r, 0)?,
        out_trade_no: col(r, 1)?,
        business_type: col(r, 2)?,
        payload: col(r, 3)?,
        status: match status.as_str() {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            _ => {
                return Err(StoreError::Query(format!(
                    "unknown outbox status {status:?}"
                )))
            }
        },
        attempts: col(r, 5)?,
        last_error: col(r, 6)?,
        next_try_at: col_ts(r, 7)?,
        created_at: col_ts(r, 8)?,
        delivered_at: col_ts_opt(r, 9)?,
    })
}

fn log_from_row(mut row: Row) -> Result<PaymentLog, StoreError> {
    let r = &mut row;
    Ok(PaymentLog {
        log_type: col(r, 0)?,
        out_trade_no: col(r, 1)?,
        transaction_id: col(r, 2)?,
        openid: col(r, 3)?,
        package_type: col(r, 4)?,
        generation_id: col(r, 5)?,
        event_type: col(r, 6)?,
        amount_total: col(r, 7)?,
        detail: col(r, 8)?,
    })
}

/// The strings that must never appear in an error: the whole URL, and the password both
/// as written (percent-encoded) and decoded.
fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_string()];
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((userinfo, _host)) = authority.rsplit_once('@') {
        if let Some((_user, pass)) = userinfo.split_once(':') {
            secrets.push(pass.to_string());
            let decoded = percent_encoding::percent_decode_str(pass).decode_utf8_lossy();
            secrets.push(decoded.into_owned());
        }
    }
    // A very short password would scrub ordinary words and digits out of messages; it is
    // not a secret worth the garbling.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

/// `mysql_async`'s own messages may echo parts of the URL (a parameter's value could be
/// anything, including a mistyped password), so only names we recognise are repeated.
fn describe_url_error(e: &UrlError) -> String {
    fn name(param: &str) -> &str {
        if !param.is_empty()
            && param.len() <= 40
            && param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            param
        } else {
            "(unprintable)"
        }
    }
    match e {
        UrlError::FeatureRequired { feature, param } => format!(
            "URL parameter `{}` needs the `{}` feature, which this build lacks",
            name(param),
            name(feature)
        ),
        UrlError::Invalid => "invalid or incomplete mysql:// URL".to_string(),
        UrlError::InvalidParamValue { param, .. } => {
            format!("invalid value for URL parameter `{}`", name(param))
        }
        UrlError::InvalidPoolConstraints { min, max } => {
            format!("pool_min ({min}) is above pool_max ({max})")
        }
        UrlError::Parse(p) => format!("malformed mysql:// URL ({p})"),
        UrlError::UnknownParameter { param } => {
            format!("unknown URL parameter `{}`", name(param))
        }
        UrlError::UnsupportedScheme { .. } => "the URL must start with mysql://".to_string(),
    }
}

#[async_trait]
impl Store for MySqlStore {
    fn reconciliations(&self) -> &dyn super::ReconciliationStore {
        self
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // Runs the DDL even when the lazy path already did: `migrate` is the explicit,
        // always-effective form.
        self.create_schema().await?;
        let _ = self.schema.set(());
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.raw_conn().await?;
        conn.ping().await.map_err(|e| self.classify(e))
    }

    async fn count_orders(&self) -> Result<i64, StoreError> {
        let mut conn = self.conn().await?;
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM orders")
            .await
            .map_err(|e| self.classify(e))?;
        Ok(n.unwrap_or(0))
    }

    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError> {
        let created = dt(order.created_at)?;
        self.exec_simple(
            "INSERT INTO orders (out_trade_no, transaction_id, openid, user_id, generation_id, \
                 package_type, business_type, business_id, amount, paid_amount, \
                 refunded_amount, description, trade_type, status, paid_at, created_at, \
                 updated_at) \
             VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, 'pending', NULL, ?, ?)",
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
        let run = async {
            let mut conn = self.conn().await?;
            select_order(&mut conn, out_trade_no, false).await
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            let row: Option<Row> = conn
                .exec_first(
                    format!(
                        "SELECT {ORDER_COLS} FROM orders WHERE transaction_id = ? \
                         ORDER BY created_at LIMIT 1"
                    ),
                    params![transaction_id],
                )
                .await?;
            Ok::<_, Fail>(row.map(order_from_row).transpose()?)
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn mark_order_failed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.guarded_order_update(out_trade_no, OrderStatus::Failed, "'pending'", now)
            .await
    }

    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError> {
        self.retrying(|| self.mark_paid_once(paid)).await
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
        .await
    }

    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            insert_log(&mut conn, log, now).await
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError> {
        self.retrying(|| self.reserve_refund_once(refund)).await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            select_refund(&mut conn, out_refund_no).await
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError> {
        self.exec_simple(
            "UPDATE refunds SET refund_id = ? WHERE out_refund_no = ?",
            params![refund_id, out_refund_no],
        )
        .await?;
        Ok(())
    }

    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError> {
        let changed = self
            .exec_simple(
                "UPDATE refunds SET status = 'failed' \
                 WHERE out_refund_no = ? AND status = 'processing'",
                params![out_refund_no],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        self.retrying(|| self.revive_failed_refund_once(out_refund_no))
            .await
    }

    async fn finish_refund(&self, result: &RefundResult) -> Result<bool, StoreError> {
        if !result.status.is_final() {
            return Err(StoreError::Query(format!(
                "finish_refund needs a final status, got {}",
                result.status.as_str()
            )));
        }
        // A lost insert race is retried once: the second pass finds the row and reports
        // "no change" instead of applying the amount again.
        for _ in 0..2 {
            if let Some(changed) = self.retrying(|| self.finish_refund_once(result)).await? {
                return Ok(changed);
            }
        }
        Err(StoreError::Query(
            "refund row kept changing underneath; try again".to_string(),
        ))
    }

    async fn claim_notification(
        &self,
        id: i64,
        now: OffsetDateTime,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let run = async {
            let mut conn = self.conn().await?;
            claim(&mut conn, id, now, lease_secs).await
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn claim_due_notifications(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.claim_due_once(now, lease_secs, limit, force)
            .await
            .map_err(|e| self.settle(e))
    }

    async fn mark_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), StoreError> {
        self.exec_simple(
            "UPDATE notify_outbox SET status = 'delivered', delivered_at = ?, \
                 locked_until = NULL \
             WHERE id = ? AND status = 'pending'",
            params![dt(now)?, id],
        )
        .await?;
        Ok(())
    }

    async fn mark_delivery_failed(
        &self,
        id: i64,
        error: &str,
        next_try_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        self.exec_simple(
            "UPDATE notify_outbox SET last_error = ?, next_try_at = ?, locked_until = NULL \
             WHERE id = ? AND status = 'pending'",
            params![error, dt(next_try_at)?, id],
        )
        .await?;
        Ok(())
    }

    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.list(
            format!(
                "SELECT {OUTBOX_COLS} FROM notify_outbox WHERE out_trade_no = ? \
                 ORDER BY created_at, id"
            ),
            out_trade_no,
            outbox_from_row,
        )
        .await
    }

    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError> {
        self.list(
            format!(
                "SELECT {LOG_COLS} FROM payment_logs WHERE out_trade_no = ? \
                 ORDER BY created_at, id"
            ),
            out_trade_no,
            log_from_row,
        )
        .await
    }

    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError> {
        self.list(
            format!(
                "SELECT {REFUND_COLS} FROM refunds WHERE out_trade_no = ? \
                 ORDER BY created_at, out_refund_no"
            ),
            out_trade_no,
            refund_from_row,
        )
        .await
    }
}

/// What a `DATETIME(3)` column keeps of a time: milliseconds.
fn to_stored_precision(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}
