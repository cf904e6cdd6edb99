//! Migrations on SQLite, and the schema check of a first operation.
//!
//! SQLite's DDL is transactional, so a whole `migrate` is one `BEGIN IMMEDIATE`
//! transaction: it takes the database's write lock first, so a second migrator (another
//! local runner, an operator) waits for it, then finds nothing to do; a migration cut off
//! half-way leaves nothing behind.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};

use super::{map_err, ts};
use crate::store::migrations::{
    self, AppliedMigration, MigrationReport, SchemaVersion, Step, INSERT_APPLIED, SELECT_APPLIED,
    SELECT_VERSION, VERSIONS,
};
use crate::store::schema::Dialect;
use crate::store::StoreError;
use crate::util::now_utc;

/// How long `migrate` waits for another writer (a migrator, a busy local runner).
pub(super) const MIGRATION_WAIT: Duration = Duration::from_secs(30);

/// What `schema_migrations` says: one statement.
pub(super) fn version(conn: &mut Connection) -> Result<SchemaVersion, StoreError> {
    let row = conn.query_row(SELECT_VERSION, [], |r| {
        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
    });
    match row {
        Ok((version, breaking)) => Ok(SchemaVersion::from_row(version, breaking)),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.starts_with("no such table") => {
            Ok(SchemaVersion::MISSING)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Applies what is missing; waits at most `wait` for the write lock.
pub(super) fn migrate(
    conn: &mut Connection,
    wait: Duration,
) -> Result<MigrationReport, StoreError> {
    conn.busy_timeout(wait).map_err(map_err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| match map_err(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                "the database stayed locked by another writer (a migration?) for {} s: {m}",
                wait.as_secs()
            )),
            other => other,
        })?;
    tx.execute_batch(&VERSIONS.create(Dialect::Sqlite))
        .map_err(map_err)?;
    let mut applied: Vec<(i64, String)> = {
        let mut stmt = tx.prepare(SELECT_APPLIED).map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)?
    };
    let mut report = MigrationReport {
        applied: Vec::new(),
        version: migrations::version_of(&applied),
    };
    for m in migrations::pending(&applied)? {
        let started = Instant::now();
        for step in (m.steps)() {
            apply(&tx, &step)?;
        }
        tx.execute(
            INSERT_APPLIED,
            params![
                m.version,
                m.name,
                ts(now_utc())?,
                m.checksum(),
                i64::from(m.additive)
            ],
        )
        .map_err(map_err)?;
        report.applied.push(AppliedMigration {
            version: m.version,
            name: m.name,
            took: started.elapsed(),
        });
        applied.push((i64::from(m.version), m.checksum()));
    }
    tx.commit().map_err(map_err)?;
    for m in &report.applied {
        tracing::info!("applied migration {} ({})", m.version, m.name);
    }
    report.version = migrations::version_of(&applied);
    Ok(report)
}

fn apply(conn: &Connection, step: &Step) -> Result<(), StoreError> {
    let Some(sql) = step.statement(Dialect::Sqlite) else {
        return Ok(());
    };
    if let Step::AddColumn { table, column } = step {
        let exists: bool = conn
            .query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column.name],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        if exists {
            return Ok(());
        }
    }
    conn.execute_batch(&sql).map_err(map_err)
}
