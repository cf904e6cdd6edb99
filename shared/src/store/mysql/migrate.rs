//! Migrations on MySQL, and the schema check of a cold start.
//!
//! `migrate` runs on a session of its own, with limits for DDL rather than for calls, and
//! under a lease row in `schema_migration_lock`, taken with a guarded update on the
//! database's clock: `GET_LOCK` would be simpler, but a Galera node refuses it
//! (`ER_NOT_SUPPORTED_YET`), and a row conflicts across nodes where a node-local lock
//! would not. Every step looks before it acts, and a version recorded twice is recorded
//! once, so two migrators that met anyway (a lease that lapsed mid-way) do no harm.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::conn::{server_code, Fail, ER_DUP_ENTRY};
use super::{dt, MySqlStore};
use crate::store::migrations::{
    self, require_compatible, AppliedMigration, Migration, MigrationReport, SchemaVersion, Step,
    INSERT_APPLIED, SELECT_APPLIED, SELECT_VERSION, VERSIONS,
};
use crate::store::schema::Kind::{Text, Time};
use crate::store::schema::{req, Dialect, Table, ID_TYPE};
use crate::store::{OnStart, StoreError};
use crate::util::now_utc;

const ER_NO_SUCH_TABLE: u16 = 1146;
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;

/// A migration's session: DDL may wait for live transactions' metadata locks, but not
/// forever (while it waits, new statements on the table queue behind it), and a backfill
/// may run longer than a call's 4 s.
const MIGRATION_SESSION: &str = "SET SESSION lock_wait_timeout = 10, \
     innodb_lock_wait_timeout = 10 /*M!, max_statement_time = 0 */";

/// How long `migrate` waits for another migrator's lease.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// A lease outlives a migrator that died holding it by at most this.
const LEASE_SECS: i64 = 600;

static LOCK: Table = Table {
    name: "schema_migration_lock",
    columns: &[
        req("name", Text(32)),
        req("holder", Text(64)),
        req("expires_at", Time),
    ],
    primary_key: Some("name"),
};

const LOCK_ROW: &str = "INSERT IGNORE INTO schema_migration_lock (name, holder, expires_at) \
     VALUES ('migrate', '', UTC_TIMESTAMP(3))";
/// Binds: holder, lease seconds, holder.
const TAKE_LOCK: &str = "UPDATE schema_migration_lock \
     SET holder = ?, expires_at = UTC_TIMESTAMP(3) + INTERVAL ? SECOND \
     WHERE name = 'migrate' AND (holder = ? OR expires_at < UTC_TIMESTAMP(3))";
const LOCK_HOLDER: &str = "SELECT holder, CAST(expires_at AS CHAR) \
     FROM schema_migration_lock WHERE name = 'migrate'";
/// Binds: holder.
const FREE_LOCK: &str = "UPDATE schema_migration_lock SET holder = '', \
     expires_at = UTC_TIMESTAMP(3) WHERE name = 'migrate' AND holder = ?";

impl MySqlStore {
    /// The first operation's schema check, once per pool: with `MIGRATE_ON_START` the
    /// missing migrations are applied; otherwise one statement reads the version, and a
    /// schema this release cannot serve is refused (again on every call, until it can).
    pub(super) async fn schema_ready(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| async {
                match self.on_start {
                    OnStart::Migrate => self.migrate_now().await.map(drop),
                    OnStart::Check => {
                        let state = self.schema_version_now().await?;
                        require_compatible(state).inspect_err(|e| tracing::error!("{e}"))
                    }
                }
            })
            .await
            .map(|_| ())
    }

    pub(super) async fn schema_version_now(&self) -> Result<SchemaVersion, StoreError> {
        let mut conn = self.raw_conn().await?;
        let row: Result<Option<(Option<i64>, Option<i64>)>, _> =
            conn.query_first(SELECT_VERSION).await;
        match row {
            Ok(row) => {
                let (version, breaking) = row.unwrap_or((None, None));
                Ok(SchemaVersion::from_row(version, breaking))
            }
            Err(e) if server_code(&e) == Some(ER_NO_SUCH_TABLE) => Ok(SchemaVersion::MISSING),
            Err(e) => Err(self.classify(e)),
        }
    }

    pub(super) async fn migrate_now(&self) -> Result<MigrationReport, StoreError> {
        let mut session = self.session().await.map_err(|f| self.settle(f))?;
        // Who holds the lock, for an operator reading the message of the one that waits.
        let host = std::env::var("HOSTNAME")
            .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
            .map(|h| h.trim().chars().take(32).collect::<String>())
            .unwrap_or_else(|_| "host".into());
        let holder = format!(
            "{host}:{}:{}",
            std::process::id(),
            crate::util::random_alnum(8)
        );
        // Every step is idempotent: a run that lost a conflict (on Galera, another node's
        // migrator wrote the same row at the same moment: 1213) simply runs again.
        let mut tries = 0u64;
        let report = loop {
            tries += 1;
            match self.migrate_on(&mut session, &holder).await {
                Err(f) if f.is_conflict() && tries < 5 => {
                    tracing::warn!("the migration met a concurrent writer; running it again");
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                other => break other,
            }
        };
        if let Err(e) = session.exec_drop(FREE_LOCK, (holder.as_str(),)).await {
            tracing::warn!("the migration lock was not given back ({e}); it lapses by itself");
        }
        // Its limits are a migration's, not a call's: it does not go back to the pool.
        session.close().await;
        let report = report.map_err(|f| self.settle(f))?;
        let _ = self.schema.set(());
        Ok(report)
    }

    async fn migrate_on(&self, conn: &mut Conn, holder: &str) -> Result<MigrationReport, Fail> {
        conn.query_drop(MIGRATION_SESSION).await?;
        conn.query_drop(VERSIONS.create(Dialect::MySql)).await?;
        conn.query_drop(LOCK.create(Dialect::MySql)).await?;
        match conn.query_drop(LOCK_ROW).await {
            // Another node's migrator inserted it at the same moment: it exists.
            Err(e) if server_code(&e).is_some_and(super::conn::is_conflict_code) => {}
            other => other?,
        }
        take_lock(conn, holder).await?;
        let mut applied: Vec<(i64, String)> = conn.query(SELECT_APPLIED).await?;
        let mut report = MigrationReport {
            applied: Vec::new(),
            version: migrations::version_of(&applied),
        };
        for m in migrations::pending(&applied)? {
            let started = Instant::now();
            for step in (m.steps)() {
                // Renewed before each step, so a long run (a large table converted step by
                // step) keeps what it took; the steps are idempotent should one step outlast
                // the lease anyway.
                take_lock(conn, holder).await?;
                apply(conn, &step).await?;
            }
            record(conn, m).await?;
            tracing::info!("applied migration {} ({})", m.version, m.name);
            report.applied.push(AppliedMigration {
                version: m.version,
                name: m.name,
                took: started.elapsed(),
            });
            applied.push((i64::from(m.version), m.checksum()));
        }
        report.version = migrations::version_of(&applied);
        Ok(report)
    }
}

/// Takes (or renews) the lease, waiting up to [`LOCK_WAIT`] (less in an invocation) for
/// another migrator to finish.
async fn take_lock(conn: &mut Conn, holder: &str) -> Result<(), Fail> {
    let wait = crate::deadline::budget(LOCK_WAIT);
    let started = Instant::now();
    let mut said = false;
    loop {
        let took = conn
            .exec_drop(TAKE_LOCK, (holder, LEASE_SECS, holder))
            .await;
        match took {
            Ok(()) if conn.affected_rows() == 1 => return Ok(()),
            Ok(()) => {}
            // Another node took it in the same instant: certification picked it.
            Err(e) if server_code(&e).is_some_and(super::conn::is_conflict_code) => {}
            Err(e) => return Err(e.into()),
        }
        let (who, until): (String, String) =
            conn.query_first(LOCK_HOLDER).await?.unwrap_or_default();
        if who == holder {
            // Renewed within the same millisecond: nothing changed, and it is ours.
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(StoreError::Schema(format!(
                "another migration holds the schema lock ({who}, until {until} UTC); waited {} s: run migrate again once it has finished (a migrator that died releases it at that time)",
                wait.as_secs()
            ))
            .into());
        }
        if !said {
            tracing::warn!(
                "waiting for another migration to finish ({who}, lease until {until} UTC)"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One step, if it still has something to do.
async fn apply(conn: &mut Conn, step: &Step) -> Result<(), Fail> {
    let Some(sql) = step.statement(Dialect::MySql) else {
        return Ok(());
    };
    let run = match step {
        Step::CreateTable(_) | Step::Sql(_) => true,
        Step::AddColumn { table, column } => column_type(conn, table, column.name).await?.is_none(),
        // Tables from before identifiers compared exactly: their columns become binary once
        // (a case-insensitive key never holds two rows a binary one would refuse).
        Step::ExactIdentifier { table, column } => column_type(conn, table, column.name)
            .await?
            .is_some_and(|t| !t.eq_ignore_ascii_case(ID_TYPE)),
        Step::CreateIndex { table, name, .. } => {
            let n: Option<i64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.STATISTICS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?",
                    (table, name),
                )
                .await?;
            n.unwrap_or(0) == 0
        }
    };
    if !run {
        return Ok(());
    }
    match conn.query_drop(sql).await {
        // Another migrator added it a moment ago.
        Err(e) if matches!(server_code(&e), Some(ER_DUP_FIELDNAME | ER_DUP_KEYNAME)) => Ok(()),
        other => other.map_err(Fail::from),
    }
}

async fn column_type(conn: &mut Conn, table: &str, column: &str) -> Result<Option<String>, Fail> {
    Ok(conn
        .exec_first(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            (table, column),
        )
        .await?)
}

async fn record(conn: &mut Conn, m: &Migration) -> Result<(), Fail> {
    let recorded = conn
        .exec_drop(
            INSERT_APPLIED,
            params![
                i64::from(m.version),
                m.name,
                dt(now_utc())?,
                m.checksum(),
                i64::from(m.additive),
            ],
        )
        .await;
    match recorded {
        Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => Ok(()),
        other => other.map_err(Fail::from),
    }
}
