//! The schema's history: numbered migrations, each written once for both dialects.
//!
//! A database records the migrations it has had in `schema_migrations` (version, name,
//! applied_at, checksum, additive). `wxpay_functions migrate` — or `MIGRATE_ON_START=true`,
//! for local runs — applies the ones it lacks, in order, one at a time, under a lock (a
//! lease row in `schema_migration_lock` on MySQL, since Galera refuses `GET_LOCK`; `BEGIN
//! IMMEDIATE` on SQLite). A function at cold start only reads the version
//! ([`require_compatible`]) and runs no DDL.
//!
//! **Adding a migration** is one file: `mNNN_what.rs` holding a `pub(super) const
//! MIGRATION` (its `version` one above the last, a `name`, whether it is `additive`, and
//! its `steps`), named at the end of [`MIGRATIONS`]; the unit test in `tests.rs` then
//! prints its checksum, to pin in its list of released ones. Steps must be safe to run
//! again — a migration cut off half-way runs again from its first step on the next
//! `migrate`: `CreateTable`, `AddColumn`, `ExactIdentifier` and `CreateIndex` look before
//! they act, and an `Sql` step must be idempotent itself. Statements the store runs that
//! need the new columns go in `sql.rs` as usual; a unit test checks the column lists there
//! against what the migrations leave. Never edit a released migration: its checksum is
//! recorded, and `migrate` refuses a database whose recorded checksum differs.

mod m001_baseline;
mod m002_refund_reserved;
mod m003_refund_reserved_at;
mod m004_reconciliation_progress;

use std::fmt;
use std::time::Duration;

use super::schema::Kind::{Int, Text, Time};
use super::schema::{req, Column, Dialect, Table};
use super::StoreError;

/// Every migration, oldest first; versions count up from 1 without gaps.
pub(super) const MIGRATIONS: &[Migration] = &[
    m001_baseline::MIGRATION,
    m002_refund_reserved::MIGRATION,
    m003_refund_reserved_at::MIGRATION,
    m004_reconciliation_progress::MIGRATION,
];

/// The schema version this release needs: its newest migration.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The command an operator runs; every refusal names it.
pub const MIGRATE_COMMAND: &str = "wxpay_functions migrate";

/// One numbered change of the schema.
pub(super) struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// Whether a release older than this migration keeps working on the schema it leaves
    /// (it only adds what older code never reads or writes). When not, an older release
    /// that checks versions refuses the database instead of writing rows this release
    /// would read differently.
    pub additive: bool,
    pub steps: fn() -> Vec<Step>,
}

/// What a migration does, in the order given.
pub(super) enum Step {
    /// `CREATE TABLE IF NOT EXISTS`.
    CreateTable(&'static Table),
    /// A column added to an existing table, where it is missing. Nullable or with a
    /// default: SQLite cannot add a NOT NULL column without one.
    AddColumn {
        table: &'static str,
        column: &'static Column,
    },
    /// MySQL: an identifier column still of a text type becomes `VARBINARY`, keeping its
    /// rows. SQLite compares text byte for byte already.
    ExactIdentifier {
        table: &'static str,
        column: &'static Column,
    },
    /// An index, where it is missing.
    CreateIndex {
        table: &'static str,
        name: &'static str,
        columns: &'static str,
    },
    /// A statement both dialects run as written (moving data, filling a new column). It
    /// must be idempotent.
    Sql(&'static str),
}

impl Step {
    /// The statement in `dialect`; `None` where there is nothing to do in it.
    pub(super) fn statement(&self, dialect: Dialect) -> Option<String> {
        Some(match self {
            Step::CreateTable(table) => table.create(dialect),
            Step::AddColumn { table, column } => format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                column.name,
                column.declaration(dialect)
            ),
            Step::ExactIdentifier { table, column } => match dialect {
                Dialect::MySql => format!(
                    "ALTER TABLE {table} MODIFY COLUMN {} {}",
                    column.name,
                    column.declaration(dialect)
                ),
                Dialect::Sqlite => return None,
            },
            Step::CreateIndex {
                table,
                name,
                columns,
            } => match dialect {
                // MySQL has no `CREATE INDEX IF NOT EXISTS`: the runner looks first.
                Dialect::MySql => format!("CREATE INDEX {name} ON {table} ({columns})"),
                Dialect::Sqlite => {
                    format!("CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")
                }
            },
            Step::Sql(sql) => sql.to_string(),
        })
    }
}

impl Migration {
    /// SHA-256 of what the migration runs on both dialects: a released migration edited
    /// afterwards no longer matches what databases recorded.
    pub(super) fn checksum(&self) -> String {
        let mut text = format!("{} {}\n", self.version, self.name);
        for step in (self.steps)() {
            for dialect in [Dialect::MySql, Dialect::Sqlite] {
                if let Some(sql) = step.statement(dialect) {
                    text.push_str(&sql);
                    text.push('\n');
                }
            }
        }
        hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
    }
}

/// `schema_migrations`: what a database has had applied.
pub(super) static VERSIONS: Table = Table {
    name: "schema_migrations",
    columns: &[
        req("version", Int),
        req("name", Text(128)),
        req("applied_at", Time),
        req("checksum", Text(64)),
        req("additive", Int),
    ],
    primary_key: Some("version"),
};

/// The applied migrations, oldest first.
pub(super) const SELECT_APPLIED: &str =
    "SELECT version, checksum FROM schema_migrations ORDER BY version";

/// Binds: version, name, applied_at, checksum, additive.
pub(super) const INSERT_APPLIED: &str = "INSERT INTO schema_migrations \
     (version, name, applied_at, checksum, additive) VALUES (?, ?, ?, ?, ?)";

/// What a function reads at cold start: one statement.
pub(super) const SELECT_VERSION: &str = "SELECT MAX(version), \
     MAX(CASE WHEN additive = 0 THEN version END) FROM schema_migrations";

/// What `schema_migrations` says about a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration applied: `None` without a `schema_migrations` table (a
    /// database never migrated by a release with versions), `Some(0)` with an empty one.
    pub version: Option<u32>,
    /// The newest applied migration that is not additive.
    pub newest_breaking: Option<u32>,
}

impl SchemaVersion {
    pub(super) fn from_row(version: Option<i64>, breaking: Option<i64>) -> Self {
        let v = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
        SchemaVersion {
            version: Some(v(version).unwrap_or(0)),
            newest_breaking: v(breaking),
        }
    }

    pub(super) const MISSING: SchemaVersion = SchemaVersion {
        version: None,
        newest_breaking: None,
    };
}

/// Whether this release may serve from a database at `state`. Behind (or never
/// migrated): refused, naming the command. Ahead: served when every newer migration is
/// additive (a newer release migrated, and this older instance is still warm); refused
/// when one of them changed how rows are written.
pub fn require_compatible(state: SchemaVersion) -> Result<(), StoreError> {
    let fix = format!(
        "run `{MIGRATE_COMMAND}` with this DATABASE_URL before serving (or set MIGRATE_ON_START=true for a local run)"
    );
    match state.version {
        None => Err(StoreError::Schema(format!(
            "the database has no schema version (no schema_migrations table); this release needs version {SCHEMA_VERSION}: {fix}"
        ))),
        Some(v) if v < SCHEMA_VERSION => Err(StoreError::Schema(format!(
            "the database schema is at version {v}; this release needs version {SCHEMA_VERSION}: {fix}"
        ))),
        Some(v) => match state.newest_breaking {
            Some(b) if b > SCHEMA_VERSION => Err(StoreError::Schema(format!(
                "the database schema is at version {v}; its migration {b} came with a newer release and changes how rows are written, so this release (version {SCHEMA_VERSION}) must not serve it: deploy that release or a newer one"
            ))),
            _ => Ok(()),
        },
    }
}

/// A migration applied by this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: &'static str,
    pub took: Duration,
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Applied now, oldest first.
    pub applied: Vec<AppliedMigration>,
    /// The schema's version afterwards (above [`SCHEMA_VERSION`] when a newer release
    /// migrated it).
    pub version: u32,
}

impl fmt::Display for MigrationReport {
    /// One line per migration applied, or one line saying there was nothing to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            write!(f, "schema is at version {}, nothing to do", self.version)?;
            if self.version > SCHEMA_VERSION {
                write!(
                    f,
                    " (newer than this release's {SCHEMA_VERSION}: a later release migrated it)"
                )?;
            }
            return Ok(());
        }
        for (i, m) in self.applied.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "applied migration {} ({}) in {} ms",
                m.version,
                m.name,
                m.took.as_millis()
            )?;
        }
        Ok(())
    }
}

/// The migrations a database that recorded `applied` (version, checksum) still lacks,
/// oldest first. A recorded checksum that differs from this release's stops everything:
/// the migration was edited after databases applied it.
pub(super) fn pending(applied: &[(i64, String)]) -> Result<Vec<&'static Migration>, StoreError> {
    for (version, checksum) in applied {
        if let Some(m) = MIGRATIONS.iter().find(|m| i64::from(m.version) == *version) {
            if *checksum != m.checksum() {
                return Err(StoreError::Schema(format!(
                    "migration {version} ({}) was applied with checksum {checksum}, but this release's differs ({}): it was edited after release; restore it and add the change as a new migration",
                    m.name,
                    m.checksum()
                )));
            }
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == i64::from(m.version)))
        .collect())
}

/// The version a database is at once `applied` are recorded.
pub(super) fn version_of(applied: &[(i64, String)]) -> u32 {
    applied
        .iter()
        .filter_map(|(v, _)| u32::try_from(*v).ok())
        .max()
        .unwrap_or(0)
}

/// The tables as a database migrated to [`SCHEMA_VERSION`] has them: each table's
/// columns in order, then its indexes.
#[cfg(test)]
pub(super) fn current_tables() -> Vec<(&'static str, Vec<&'static Column>, Vec<&'static str>)> {
    let mut tables: Vec<(&'static str, Vec<&'static Column>, Vec<&'static str>)> = Vec::new();
    for m in MIGRATIONS {
        for step in (m.steps)() {
            match step {
                Step::CreateTable(t) => {
                    if !tables.iter().any(|(n, ..)| *n == t.name) {
                        tables.push((t.name, t.columns.iter().collect(), Vec::new()));
                    }
                }
                Step::AddColumn { table, column } => {
                    if let Some((_, cols, _)) = tables.iter_mut().find(|(n, ..)| *n == table) {
                        if !cols.iter().any(|c| c.name == column.name) {
                            cols.push(column);
                        }
                    }
                }
                Step::CreateIndex { table, name, .. } => {
                    if let Some((_, _, idx)) = tables.iter_mut().find(|(n, ..)| *n == table) {
                        idx.push(name);
                    }
                }
                Step::ExactIdentifier { .. } | Step::Sql(_) => {}
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests;
