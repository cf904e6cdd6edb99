//! Migration 4: where a day's reconciliation got to, so a bill too large for one call is
//! finished over several.
//!
//! One row per bill date while it is being reconciled: the bill it is reading (its SHA1),
//! the data lines done and what they counted. The row goes when the day is finished.
//! The index on `orders (paid_at, out_trade_no)` lets a day's paid orders be read a page at
//! a time without scanning every order once per page. Additive: a new table and an index
//! the release before never needs.

use super::{Migration, Step};
use crate::store::schema::Kind::{Int, Text, Time};
use crate::store::schema::{req, req_default, Table};

pub(super) const MIGRATION: Migration = Migration {
    version: 4,
    name: "reconciliation_progress: a day's reconciliation continued over several calls",
    additive: true,
    steps,
};

static PROGRESS: Table = Table {
    name: "reconciliation_progress",
    columns: &[
        req("bill_date", Text(10)),
        req("bill_hash", Text(64)),
        req("rows_done", Int),
        req("bill_rows", Int),
        req_default("payments", Int, "0"),
        req_default("refunds", Int, "0"),
        req_default("other_count", Int, "0"),
        req_default("other_amount", Int, "0"),
        req_default("repaired", Int, "0"),
        req_default("flagged", Int, "0"),
        req_default("findings", Int, "0"),
        req("updated_at", Time),
    ],
    primary_key: Some("bill_date"),
};

fn steps() -> Vec<Step> {
    vec![
        Step::CreateTable(&PROGRESS),
        Step::CreateIndex {
            table: "orders",
            name: "idx_orders_paid_at",
            columns: "paid_at, out_trade_no",
        },
    ]
}
