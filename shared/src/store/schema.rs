//! The tables, once, for both dialects: each column's kind becomes MySQL's or SQLite's type,
//! and the same lists of added columns and indexes upgrade an older database on either.

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

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        not_null: false,
        default: None,
    }
}

const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        not_null: true,
        default: None,
    }
}

const fn req_default(name: &'static str, kind: Kind, default: &'static str) -> Column {
    Column {
        name,
        kind,
        not_null: true,
        default: Some(default),
    }
}

use Kind::{Id, Int, LongText, Serial, Text, Time};

pub(super) const TABLES: &[Table] = &[
    Table {
        name: "orders",
        columns: &[
            req("out_trade_no", Id(32)),
            col("transaction_id", Id(64)),
            col("openid", Text(128)),
            col("user_id", Text(128)),
            col("generation_id", Text(128)),
            col("package_type", Text(64)),
            col("business_type", Text(64)),
            col("business_id", Text(128)),
            req("amount", Int),
            col("paid_amount", Int),
            req_default("refunded_amount", Int, "0"),
            req_default("description", Text(255), "''"),
            req("trade_type", Text(16)),
            req("status", Text(16)),
            col("paid_at", Time),
            req("created_at", Time),
            req("updated_at", Time),
        ],
        primary_key: Some("out_trade_no"),
    },
    Table {
        name: "payment_logs",
        columns: &[
            req("id", Serial),
            req("`type`", Text(32)),
            col("out_trade_no", Id(64)),
            col("transaction_id", Id(64)),
            col("openid", Text(128)),
            col("package_type", Text(64)),
            col("generation_id", Text(128)),
            col("event_type", Text(64)),
            col("amount_total", Int),
            col("detail", LongText),
            req("created_at", Time),
        ],
        primary_key: None,
    },
    Table {
        name: "refunds",
        columns: &[
            req("out_refund_no", Id(64)),
            req("out_trade_no", Id(32)),
            col("refund_id", Text(64)),
            req("amount", Int),
            req("status", Text(16)),
            col("reason", Text(255)),
            req("created_at", Time),
            col("success_at", Time),
        ],
        primary_key: Some("out_refund_no"),
    },
    Table {
        name: "notify_outbox",
        columns: &[
            req("id", Serial),
            req("out_trade_no", Id(32)),
            col("business_type", Text(64)),
            req("payload", LongText),
            req_default("status", Text(16), "'pending'"),
            req_default("attempts", Int, "0"),
            col("last_error", LongText),
            req("next_try_at", Time),
            col("locked_until", Time),
            col("lease_token", Text(32)),
            req("created_at", Time),
            col("delivered_at", Time),
        ],
        primary_key: None,
    },
    Table {
        name: "reconciliations",
        columns: &[
            req("bill_date", Text(10)),
            req("status", Text(16)),
            req("bill_rows", Int),
            req("payments", Int),
            req("payment_total", Int),
            req("refunds", Int),
            req("refund_total", Int),
            req_default("repaired", Int, "0"),
            req_default("flagged", Int, "0"),
            req("created_at", Time),
            req("updated_at", Time),
        ],
        primary_key: Some("bill_date"),
    },
    Table {
        name: "reconciliation_items",
        columns: &[
            req("bill_date", Text(10)),
            req("kind", Text(32)),
            req("out_trade_no", Id(32)),
            // Empty for a payment's discrepancy: part of the key, so never NULL.
            req_default("out_refund_no", Id(64), "''"),
            req("detail", LongText),
            req("created_at", Time),
        ],
        // A discrepancy is recorded once however often the date is reconciled.
        primary_key: Some("bill_date, kind, out_trade_no, out_refund_no"),
    },
];

/// Columns added after a table's first release: `CREATE TABLE IF NOT EXISTS` leaves an
/// existing table alone, so these are added where missing. Each must be nullable or have a
/// default (SQLite cannot add a NOT NULL column without one).
pub(super) const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("orders", "paid_amount"),
    ("orders", "refunded_amount"),
    ("orders", "business_type"),
    ("orders", "business_id"),
    ("payment_logs", "detail"),
    ("notify_outbox", "locked_until"),
    ("notify_outbox", "lease_token"),
];

/// Indexes live outside `CREATE TABLE` so a table from an earlier release gains them too.
pub(super) const INDEXES: &[(&str, &str, &str)] = &[
    ("orders", "idx_orders_transaction_id", "transaction_id"),
    ("orders", "idx_orders_openid", "openid"),
    // A payer's orders newest first, one range per page (wxpay_order_list).
    (
        "orders",
        "idx_orders_openid_created",
        "openid, created_at, out_trade_no",
    ),
    // Totals over a period (wxpay_stats); created_at never changes, so payments do not
    // pay for this index.
    ("orders", "idx_orders_created_at", "created_at"),
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

/// MySQL's type for identifier columns (`information_schema.COLUMNS.DATA_TYPE`).
pub(super) const ID_TYPE: &str = "VARBINARY";

/// `ALTER TABLE … MODIFY COLUMN …` for each identifier column, for a MySQL table created
/// before identifiers were compared exactly; run where the column is still text.
pub(super) fn exact_identifier_columns() -> Vec<(&'static str, &'static str, String)> {
    TABLES
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
        .filter(|(_, c)| matches!(c.kind, Id(_)))
        .map(|(t, c)| {
            let ddl = format!(
                "ALTER TABLE {} MODIFY COLUMN {} {}",
                t.name,
                c.name,
                c.declaration(Dialect::MySql)
            );
            (t.name, c.name, ddl)
        })
        .collect()
}

/// The table names, for the dialects' catalogue queries.
pub(super) const TABLE_NAMES: &str = "'orders', 'payment_logs', 'refunds', 'notify_outbox', \
     'reconciliations', 'reconciliation_items'";

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

/// `ALTER TABLE … ADD COLUMN …` for each added column, in the dialect.
pub(super) fn added_columns(dialect: Dialect) -> Vec<(&'static str, &'static str, String)> {
    ADDED_COLUMNS
        .iter()
        .filter_map(|(table, column)| {
            let t = TABLES.iter().find(|t| t.name == *table)?;
            let c = t.columns.iter().find(|c| c.name == *column)?;
            let ddl = format!(
                "ALTER TABLE {table} ADD COLUMN {column} {}",
                c.declaration(dialect)
            );
            Some((*table, *column, ddl))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_added_column_is_declared_and_addable() {
        for dialect in [Dialect::MySql, Dialect::Sqlite] {
            assert_eq!(added_columns(dialect).len(), ADDED_COLUMNS.len());
        }
        for (table, column) in ADDED_COLUMNS {
            let t = TABLES.iter().find(|t| t.name == *table).expect("table");
            let c = t
                .columns
                .iter()
                .find(|c| c.name == *column)
                .expect("column");
            assert!(!c.not_null || c.default.is_some(), "{table}.{column}");
        }
    }

    #[test]
    fn the_dialects_name_their_own_types() {
        let orders = &TABLES[0];
        let mysql = orders.create(Dialect::MySql);
        let sqlite = orders.create(Dialect::Sqlite);
        assert!(mysql.contains("out_trade_no VARBINARY(32) NOT NULL"));
        assert!(mysql.contains("openid VARCHAR(128) NULL"));
        // orders (2), payment_logs (2), refunds (2), notify_outbox, reconciliation_items (2).
        assert_eq!(exact_identifier_columns().len(), 9);
        assert!(mysql.contains("paid_at DATETIME(3) NULL"));
        assert!(mysql.contains("PRIMARY KEY (out_trade_no)"));
        assert!(sqlite.contains("out_trade_no TEXT NOT NULL"));
        assert!(sqlite.contains("refunded_amount INTEGER NOT NULL DEFAULT 0"));
        let outbox = TABLES[3].create(Dialect::Sqlite);
        assert!(outbox.contains("id INTEGER PRIMARY KEY AUTOINCREMENT"));
        assert!(!outbox.contains("PRIMARY KEY (id)"));
        assert!(TABLES[3]
            .create(Dialect::MySql)
            .contains("id BIGINT NOT NULL AUTO_INCREMENT"));
    }

    #[test]
    fn column_lists_name_real_columns() {
        for (table, list) in [
            ("orders", super::super::sql::ORDER_COLS),
            ("refunds", super::super::sql::REFUND_COLS),
            ("notify_outbox", super::super::sql::OUTBOX_COLS),
            ("payment_logs", super::super::sql::LOG_COLS),
        ] {
            let t = TABLES.iter().find(|t| t.name == table).expect("table");
            for name in list.split(',').map(str::trim) {
                assert!(
                    t.columns.iter().any(|c| c.name == name),
                    "{table}.{name} is not declared"
                );
            }
        }
    }
}
