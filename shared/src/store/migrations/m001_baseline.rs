//! Migration 1: the tables of the release before schema versions, as it left them.
//!
//! On an empty database it creates them; on one that release (or an older one) used, it
//! does what that release did at every cold start, once: adds the columns and indexes that
//! came later, and turns identifier columns that are still text into `VARBINARY` on MySQL
//! (text collations ignore case or trailing spaces), keeping every row. Frozen: later
//! changes are later migrations.

use super::{Migration, Step};
use crate::store::schema::Kind::{Id, Int, LongText, Serial, Text, Time};
use crate::store::schema::{col, req, req_default, Table};

pub(super) const MIGRATION: Migration = Migration {
    version: 1,
    name: "baseline: the tables of the release before schema versions",
    additive: true,
    steps,
};

const TABLES: &[Table] = &[
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
/// existing table alone, so these are added where missing.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("orders", "paid_amount"),
    ("orders", "refunded_amount"),
    ("orders", "business_type"),
    ("orders", "business_id"),
    ("payment_logs", "detail"),
    ("notify_outbox", "locked_until"),
    ("notify_outbox", "lease_token"),
];

/// Indexes live outside `CREATE TABLE` so a table from an earlier release gains them too.
const INDEXES: &[(&str, &str, &str)] = &[
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

fn steps() -> Vec<Step> {
    let column = |table: &str, name: &str| {
        TABLES
            .iter()
            .find(|t| t.name == table)
            .and_then(|t| t.columns.iter().find(|c| c.name == name))
    };
    let mut steps: Vec<Step> = TABLES.iter().map(Step::CreateTable).collect();
    for table in TABLES {
        for c in table.columns.iter().filter(|c| matches!(c.kind, Id(_))) {
            steps.push(Step::ExactIdentifier {
                table: table.name,
                column: c,
            });
        }
    }
    for (table, name) in ADDED_COLUMNS {
        if let Some(c) = column(table, name) {
            steps.push(Step::AddColumn { table, column: c });
        }
    }
    for (table, name, columns) in INDEXES {
        steps.push(Step::CreateIndex {
            table,
            name,
            columns,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_added_column_is_declared_and_addable() {
        let added = steps()
            .iter()
            .filter(|s| matches!(s, Step::AddColumn { .. }))
            .count();
        assert_eq!(added, ADDED_COLUMNS.len(), "each names a declared column");
        for step in steps() {
            if let Step::AddColumn { table, column } = step {
                // SQLite cannot add a NOT NULL column without a default.
                assert!(
                    !column.not_null || column.default.is_some(),
                    "{table}.{}",
                    column.name
                );
            }
        }
        // orders (2), payment_logs (2), refunds (2), notify_outbox, reconciliation_items (2).
        let ids = steps()
            .iter()
            .filter(|s| matches!(s, Step::ExactIdentifier { .. }))
            .count();
        assert_eq!(ids, 9);
    }
}
