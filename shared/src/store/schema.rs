//! Tables and columns, once for both dialects: each column's kind becomes MySQL's or
//! SQLite's type. What the tables are is the history in [`super::migrations`];
//! [`super::migrations::current_tables`] folds it into the schema a migrated database has.

/// What a column holds; each dialect names its own type for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Text of at most this many characters (MySQL `VARCHAR(n)`).
    Text(u16),
    /// An identifier of at most this many (ASCII) characters, compared byte for byte.
    /// MySQL's text collations ignore case or trailing spaces (even `utf8mb4_bin` pads), so
    /// `wx…` or `WX… ` would find `WX…`; `VARBINARY` compares every byte.
    Id(u16),
    /// Unbounded text (JSON payloads, error messages).
    LongText,
    /// An integer (fen, counters).
    Int,
    /// Milliseconds in UTC.
    Time,
    /// An auto-increment primary key.
    Serial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    MySql,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
}

pub(super) struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub not_null: bool,
    pub default: Option<&'static str>,
}

pub(super) struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// For a table without a `Serial` column.
    pub primary_key: Option<&'static str>,
}

pub(super) const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        not_null: false,
        default: None,
    }
}

pub(super) const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        not_null: true,
        default: None,
    }
}

pub(super) const fn req_default(name: &'static str, kind: Kind, default: &'static str) -> Column {
    Column {
        name,
        kind,
        not_null: true,
        default: Some(default),
    }
}

use Kind::{Id, Int, LongText, Serial, Text, Time};

/// MySQL's type for identifier columns (`information_schema.COLUMNS.DATA_TYPE`).
pub(super) const ID_TYPE: &str = "VARBINARY";

impl Column {
    /// The column's declaration after its name: type, nullability, default.
    pub(super) fn declaration(&self, dialect: Dialect) -> String {
        let ty = match (self.kind, dialect) {
            (Serial, Dialect::MySql) => return "BIGINT NOT NULL AUTO_INCREMENT".into(),
            (Serial, Dialect::Sqlite) => return "INTEGER PRIMARY KEY AUTOINCREMENT".into(),
            (Text(n), Dialect::MySql) => format!("VARCHAR({n})"),
            (Id(n), Dialect::MySql) => {
                format!("{ID_TYPE}({n})")
            }
            (LongText, Dialect::MySql) => "TEXT".into(),
            // SQLite compares text with BINARY unless told otherwise.
            (Text(_) | Id(_) | LongText | Time, Dialect::Sqlite) => "TEXT".into(),
            (Int, Dialect::MySql) => "BIGINT".into(),
            (Int, Dialect::Sqlite) => "INTEGER".into(),
            (Time, Dialect::MySql) => "DATETIME(3)".into(),
        };
        let mut decl = ty;
        match (self.not_null, dialect) {
            (true, _) => decl.push_str(" NOT NULL"),
            (false, Dialect::MySql) => decl.push_str(" NULL"),
            (false, Dialect::Sqlite) => {}
        }
        if let Some(d) = self.default {
            decl.push_str(" DEFAULT ");
            decl.push_str(d);
        }
        decl
    }
}

impl Table {
    /// `CREATE TABLE IF NOT EXISTS …` in the dialect.
    pub(super) fn create(&self, dialect: Dialect) -> String {
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("    {} {}", c.name, c.declaration(dialect)))
            .collect();
        let serial = self.columns.iter().find(|c| c.kind == Serial);
        match (dialect, serial, self.primary_key) {
            (Dialect::MySql, Some(c), _) => lines.push(format!("    PRIMARY KEY ({})", c.name)),
            (_, None, Some(pk)) => lines.push(format!("    PRIMARY KEY ({pk})")),
            _ => {}
        }
        let tail = match dialect {
            Dialect::MySql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            Dialect::Sqlite => "",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n{}\n){tail}",
            self.name,
            lines.join(",\n")
        )
    }
}
