//! Connection handling for MySQL: the lazy pool, the schema on first use, classifying and
//! scrubbing errors, and running a deadlock victim again.

use std::future::Future;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, PoolConstraints, UrlError};
use tokio::sync::OnceCell;

use super::tls::{self, DatabaseCa, Pools, Tls};

use crate::store::schema::{
    added_columns, exact_identifier_columns, Dialect, ID_TYPE, INDEXES, TABLES, TABLE_NAMES,
};
use crate::store::StoreError;

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

/// Set on every new connection. A row lock is waited for 2 s, not InnoDB's 50 s, so a held
/// order row costs a notification a 5xx well inside WeChat Pay's 5 s (it retries), never a
/// kill mid-call. MariaDB (`/*M! … */` runs there only) also ends any statement after 4 s;
/// MySQL's `max_execution_time` covers only SELECT, so there the lock wait bound and the
/// invocation's deadline (the call is abandoned and answered 5xx) are the limit.
const SESSION_LIMITS: &str =
    "SET SESSION innodb_lock_wait_timeout = 2 /*M!, max_statement_time = 4 */";

pub(super) const ER_DUP_ENTRY: u16 = 1062;
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;
const ER_LOCK_DEADLOCK: u16 = 1213;

/// The MySQL store (`mysql://user:pass@host:port/db`).
pub struct MySqlStore {
    pool: Pools,
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
pub(super) enum Fail {
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

pub(super) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl MySqlStore {
    /// Parses the URL and sets up a lazy pool. No connection is made here.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::with_ca(url, None)
    }

    /// [`MySqlStore::new`] with `DATABASE_CA_PEM`, the CA that `ssl-mode=VERIFY_CA` or
    /// `VERIFY_IDENTITY` verifies the server against.
    pub fn with_ca(url: &str, ca: Option<&DatabaseCa>) -> Result<Self, StoreError> {
        let (builder, tls, secrets) = Self::options(url, ca)?;
        Ok(MySqlStore {
            pool: tls.pools(builder),
            schema: OnceCell::new(),
            secrets,
        })
    }

    /// Reads the URL exactly as [`MySqlStore::with_ca`] does, without building a pool: the
    /// start-up check of the configuration.
    pub fn check(url: &str, ca: Option<&DatabaseCa>) -> Result<(), StoreError> {
        Self::options(url, ca).map(|_| ())
    }

    fn options(
        url: &str,
        ca: Option<&DatabaseCa>,
    ) -> Result<(OptsBuilder, Tls, Vec<String>), StoreError> {
        let secrets = secrets_of(url);
        let bad = |message: String| StoreError::BadUrl(scrub(&message, &secrets));
        // mysql_async does not know MySQL's `ssl-mode`; it gets the URL without it.
        let (ssl_mode, driver_url) = tls::take_ssl_mode(url).map_err(bad)?;
        let opts = Opts::from_url(&driver_url).map_err(|e| bad(describe_url_error(&e)))?;
        let tls = Tls::decide(ssl_mode, &opts, ca).map_err(bad)?;
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
        let mut init = opts.init().to_vec();
        init.insert(0, SESSION_LIMITS.to_string());
        let builder = OptsBuilder::from_opts(opts)
            .init(init)
            .pool_opts(pool_opts)
            .conn_ttl(conn_ttl);
        Ok((builder, tls, secrets))
    }

    pub(super) fn classify(&self, e: mysql_async::Error) -> StoreError {
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

    pub(super) fn settle(&self, f: Fail) -> StoreError {
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
    pub(super) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
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
        match tokio::time::timeout(crate::deadline::budget(CONNECT_TIMEOUT), get).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(StoreError::Unavailable(
                "no database connection before the deadline".into(),
            )),
        }
    }

    /// A connection to a database whose schema exists.
    pub(super) async fn conn(&self) -> Result<Conn, StoreError> {
        self.schema.get_or_try_init(|| self.create_schema()).await?;
        self.raw_conn().await
    }

    pub(super) async fn create_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.raw_conn().await?;
        self.create_schema_on(&mut conn)
            .await
            .map_err(|e| self.settle(e))
    }

    /// Runs the DDL even when the lazy path already did: `migrate` is the explicit,
    /// always-effective form.
    pub(super) async fn migrate_now(&self) -> Result<(), StoreError> {
        self.create_schema().await?;
        let _ = self.schema.set(());
        Ok(())
    }

    pub(super) async fn ping_now(&self) -> Result<(), StoreError> {
        let mut conn = self.raw_conn().await?;
        conn.ping().await.map_err(|e| self.classify(e))
    }

    async fn create_schema_on(&self, conn: &mut Conn) -> Result<(), Fail> {
        for table in TABLES {
            conn.query_drop(table.create(Dialect::MySql)).await?;
        }
        let columns: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({TABLE_NAMES})"
            ))
            .await?;
        // Tables from before identifiers compared exactly: their columns become binary once
        // (a case-insensitive key never holds two rows a binary one would refuse), and
        // later start-ups find nothing to do.
        for (table, column, ddl) in exact_identifier_columns() {
            let inexact = columns.iter().any(|(t, c, data_type)| {
                t.eq_ignore_ascii_case(table)
                    && c.eq_ignore_ascii_case(column)
                    && !data_type.eq_ignore_ascii_case(ID_TYPE)
            });
            if inexact {
                conn.query_drop(ddl).await?;
            }
        }
        // (MySQL, unlike MariaDB, has no `ADD COLUMN IF NOT EXISTS`.)
        for (table, column, ddl) in added_columns(Dialect::MySql) {
            if !columns
                .iter()
                .any(|(t, c, _)| t.eq_ignore_ascii_case(table) && c.eq_ignore_ascii_case(column))
            {
                ignore_codes(conn.query_drop(ddl).await, &[ER_DUP_FIELDNAME])?;
            }
        }
        let indexes: Vec<(String, String)> = conn
            .query(format!(
                "SELECT DISTINCT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({TABLE_NAMES})"
            ))
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
}

fn ignore_codes(r: Result<(), mysql_async::Error>, codes: &[u16]) -> Result<(), Fail> {
    match r {
        Err(e) if server_code(&e).is_some_and(|c| codes.contains(&c)) => Ok(()),
        other => other.map_err(Fail::from),
    }
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
