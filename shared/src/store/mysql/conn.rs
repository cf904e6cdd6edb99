//! Connection handling for MySQL: the lazy pool, the schema check on first use, classifying
//! and scrubbing errors, and running a transaction that lost a conflict again.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, PoolConstraints, UrlError};
use tokio::sync::OnceCell;

use super::session::{self, Servers, Session};
use super::tls::{self, DatabaseCa, Pools, Tls};
use crate::store::{OnStart, StoreError};

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

/// Attempts of one operation that keeps losing conflicts: deadlock victims (rare with the
/// locking discipline of the store, but InnoDB may still pick one), Galera certification
/// failures (two nodes wrote the same row; the loser is rolled back at COMMIT), a node not
/// yet ready, or a guarded write that found its row changed. Each was rolled back whole,
/// so running it again is safe; past this, or the deadline, the caller is told to retry.
const MAX_ATTEMPTS: u32 = 5;

/// An attempt is only started again with at least this much of the deadline left.
const RETRY_NEEDS: Duration = Duration::from_millis(100);

/// Set on every new connection. A row lock is waited for 2 s, not InnoDB's 50 s, so a held
/// order row costs a notification a 5xx well inside WeChat Pay's 5 s (it retries), never a
/// kill mid-call. MariaDB (`/*M! … */` runs there only) also ends any statement after 4 s;
/// MySQL's `max_execution_time` covers only SELECT, so there the lock wait bound and the
/// invocation's deadline (the call is abandoned and answered 5xx) are the limit.
const SESSION_LIMITS: &str =
    "SET SESSION innodb_lock_wait_timeout = 2 /*M!, max_statement_time = 4 */";

pub(super) const ER_DUP_ENTRY: u16 = 1062;
/// A deadlock victim; also how MariaDB reports a Galera certification failure ("WSREP
/// detected deadlock/conflict and aborted the transaction"), on COMMIT too.
const ER_LOCK_DEADLOCK: u16 = 1213;
/// `ER_UNKNOWN_COM_ERROR`, Galera's "WSREP has not yet prepared node for application use":
/// the node is joining or lost its cluster.
const ER_WSREP_NOT_READY: u16 = 1047;
/// TiDB's write conflict under optimistic transactions (reported at COMMIT, the
/// transaction rolled back), which it does not report as 1213.
const ER_TIDB_WRITE_CONFLICT: u16 = 9007;

/// The MySQL store (`mysql://user:pass@host:port/db`).
pub struct MySqlStore {
    /// The connections, over TLS when `ssl-mode` asks for it (shared with the sessions
    /// lent out, which end a cut-off connection through another one).
    pub(super) pool: Arc<Pools>,
    /// Whether this pool checked (or brought up to date) the schema.
    pub(super) schema: OnceCell<()>,
    pub(super) on_start: OnStart,
    /// The server each connection is on, and whether one is a Galera node.
    pub(super) servers: Arc<Servers>,
    /// The URL and password, scrubbed from every message we produce.
    secrets: Vec<String>,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore").finish_non_exhaustive()
    }
}

/// Why an attempt failed: a database error still to be classified (and maybe retried), a
/// guarded write that found its row changed since it was read (run again), or an
/// already-final store error.
pub(super) enum Fail {
    Db(mysql_async::Error),
    Conflict(&'static str),
    Store(StoreError),
}

impl Fail {
    /// Whether the attempt lost a race and was rolled back whole: worth running again.
    pub(super) fn is_conflict(&self) -> bool {
        match self {
            Fail::Db(e) => server_code(e).is_some_and(is_conflict_code),
            Fail::Conflict(_) => true,
            Fail::Store(_) => false,
        }
    }
}

/// Server errors after which the whole transaction was rolled back and may run again.
pub(super) fn is_conflict_code(code: u16) -> bool {
    matches!(
        code,
        ER_LOCK_DEADLOCK | ER_WSREP_NOT_READY | ER_TIDB_WRITE_CONFLICT
    )
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
    /// Parses the URL and sets up a lazy pool. No connection is made here; the first
    /// operation applies missing migrations (as `MIGRATE_ON_START=true` does).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::new_with(url, None, OnStart::Migrate)
    }

    /// [`MySqlStore::new`] with `DATABASE_CA_PEM` (the CA that `ssl-mode=VERIFY_CA` or
    /// `VERIFY_IDENTITY` verifies the server against), saying what the first operation
    /// does about the schema.
    pub fn new_with(
        url: &str,
        ca: Option<&DatabaseCa>,
        on_start: OnStart,
    ) -> Result<Self, StoreError> {
        let (builder, tls, servers, secrets) = Self::options(url, ca)?;
        Ok(MySqlStore {
            pool: Arc::new(tls.pools(builder)),
            schema: OnceCell::new(),
            on_start,
            servers,
            secrets,
        })
    }

    /// [`MySqlStore::new_with`] applying missing migrations on first use.
    pub fn with_ca(url: &str, ca: Option<&DatabaseCa>) -> Result<Self, StoreError> {
        Self::new_with(url, ca, OnStart::Migrate)
    }

    /// Reads the URL exactly as [`MySqlStore::new_with`] does, without building a pool: the
    /// start-up check of the configuration.
    pub fn check(url: &str, ca: Option<&DatabaseCa>) -> Result<(), StoreError> {
        Self::options(url, ca).map(|_| ())
    }

    fn options(
        url: &str,
        ca: Option<&DatabaseCa>,
    ) -> Result<(OptsBuilder, Tls, Arc<Servers>, Vec<String>), StoreError> {
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
        // A connection reset on its way back to the pool keeps only the driver's `setup`
        // statements: the session's lock-wait and statement limits (`init`) and Galera's
        // causal reads (`after_connect`) would be gone from the second call on. It would
        // also drop the prepared statements. The store leaves no session state behind
        // (each transaction commits or rolls back), so connections are never reset.
        if pool_opts.reset_connection() && url.contains("reset_connection=") {
            return Err(bad(
                "`reset_connection=true` is not supported: a reset connection loses the \
                 session's 2 s lock-wait limit and, on Galera, its causal reads"
                    .into(),
            ));
        }
        pool_opts = pool_opts.with_reset_connection(false);
        let conn_ttl = opts.conn_ttl().unwrap_or(CONN_TTL);
        let mut init = opts.init().to_vec();
        init.insert(0, SESSION_LIMITS.to_string());
        let servers = Arc::new(Servers::default());
        let builder = OptsBuilder::from_opts(opts)
            .init(init)
            .pool_opts(pool_opts)
            .conn_ttl(conn_ttl)
            .after_connect(session::on_connect(servers.clone()));
        Ok((builder, tls, servers, secrets))
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
                1040 | 1053
                    | 1205
                    | ER_LOCK_DEADLOCK
                    | ER_WSREP_NOT_READY
                    | ER_TIDB_WRITE_CONFLICT
                    | 1290
                    | 1836
                    | 1927
                    | 4031
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
            Fail::Conflict(what) => StoreError::Unavailable(format!(
                "{what} kept changing under concurrent writers; retry"
            )),
            Fail::Store(StoreError::Unavailable(m)) => {
                StoreError::Unavailable(scrub(&m, &self.secrets))
            }
            Fail::Store(StoreError::Query(m)) => StoreError::Query(scrub(&m, &self.secrets)),
            Fail::Store(StoreError::BadUrl(m)) => StoreError::BadUrl(scrub(&m, &self.secrets)),
            Fail::Store(StoreError::Schema(m)) => StoreError::Schema(scrub(&m, &self.secrets)),
        }
    }

    /// How one attempt of an operation ends (see `op!`): its value, or its error to the
    /// caller, or `None` to run it again — it lost a conflict ([`Fail::is_conflict`]) and
    /// was rolled back whole, fewer than [`MAX_ATTEMPTS`] ran, and the deadline leaves
    /// [`RETRY_NEEDS`]. Past that the caller is told to retry (50010).
    pub(super) async fn settle_attempt<T>(
        &self,
        attempt: Result<T, Fail>,
        tries: u32,
    ) -> Option<Result<T, StoreError>> {
        match attempt {
            Ok(v) => Some(Ok(v)),
            Err(f)
                if f.is_conflict() && tries < MAX_ATTEMPTS && crate::deadline::has(RETRY_NEEDS) =>
            {
                let e = self.settle(f);
                tracing::debug!("attempt {tries} lost a conflict, running it again: {e}");
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() % 8);
                let pause = 4 * u64::from(tries) + u64::from(jitter);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                None
            }
            Err(f) => Some(Err(self.settle(f))),
        }
    }

    /// A connection lent to one operation (see [`Session`]).
    pub(super) async fn session(&self) -> Result<Session, Fail> {
        let conn = self.raw_conn().await?;
        Ok(Session::new(conn, &self.pool, &self.servers))
    }

    pub(super) async fn raw_conn(&self) -> Result<Conn, StoreError> {
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

    pub(super) async fn ping_now(&self) -> Result<(), StoreError> {
        let mut conn = self.raw_conn().await?;
        conn.ping().await.map_err(|e| self.classify(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> Fail {
        Fail::Db(mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "40001".into(),
        }))
    }

    #[test]
    fn conflicts_are_the_errors_after_which_the_whole_transaction_was_rolled_back() {
        assert!(server(1213, "Deadlock found when trying to get lock").is_conflict());
        // How MariaDB reports a Galera certification failure, also on COMMIT.
        assert!(server(
            1213,
            "WSREP detected deadlock/conflict and aborted the transaction. Try restarting the transaction"
        )
        .is_conflict());
        assert!(server(1047, "WSREP has not yet prepared node for application use").is_conflict());
        // TiDB under optimistic transactions, at COMMIT.
        assert!(server(9007, "Write conflict, txnStartTS=1 [try again later]").is_conflict());
        assert!(Fail::Conflict("the order's refundable amount").is_conflict());
        // A lock wait timeout spent its 2 s and rolled back only the statement; a duplicate
        // key, a missing table or a failed store step are answers, not races.
        for code in [1205, 1062, 1146, 1064] {
            assert!(!server(code, "no").is_conflict(), "{code}");
        }
        assert!(!Fail::Store(StoreError::Query("x".into())).is_conflict());
    }

    #[tokio::test]
    async fn a_conflict_runs_again_a_bounded_number_of_times_and_only_within_the_deadline() {
        let store = MySqlStore::new("mysql://u:p@127.0.0.1:1/x").expect("lazy");
        let conflict = || server(1213, "WSREP detected deadlock/conflict");
        for tries in 1..MAX_ATTEMPTS {
            assert!(store
                .settle_attempt::<()>(Err(conflict()), tries)
                .await
                .is_none());
        }
        // Past the bound the caller is told to retry: 50010.
        match store
            .settle_attempt::<()>(Err(conflict()), MAX_ATTEMPTS)
            .await
        {
            Some(Err(StoreError::Unavailable(_))) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // With less than RETRY_NEEDS before the answer is due, no second attempt.
        let deadline = tokio::time::Instant::now() + crate::deadline::MARGIN + RETRY_NEEDS / 2;
        let settled = crate::deadline::scope(
            deadline,
            store.settle_attempt::<()>(Err(Fail::Conflict("row")), 1),
        )
        .await;
        assert!(
            matches!(settled, Some(Err(StoreError::Unavailable(_)))),
            "{settled:?}"
        );
        // Anything else is final at once.
        assert!(matches!(
            store
                .settle_attempt::<()>(Err(server(1062, "Duplicate entry")), 1)
                .await,
            Some(Err(StoreError::Query(_)))
        ));
        assert!(matches!(store.settle_attempt(Ok(7), 1).await, Some(Ok(7))));
    }
}
