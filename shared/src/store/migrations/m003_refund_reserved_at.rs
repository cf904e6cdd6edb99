//! Migration 3: when a refund's amount was last reserved.
//!
//! `refunds.reserved_at` is written when a refund is reserved and again when a refused one
//! is revived, so the refund sweep can tell a refund whose call died long ago (reserved
//! more than `REFUND_RESOLVE_AFTER_SECS` before) from one a retry has just sent again. The
//! rows already there start from `created_at`; the index serves the sweep's look for old
//! `processing` refunds.
//!
//! Additive: a release before it never reads the column, and a row it writes without one
//! is read as reserved when it was created.

use super::{Migration, Step};
use crate::store::schema::Kind::Time;
use crate::store::schema::{col, Column};

pub(super) const MIGRATION: Migration = Migration {
    version: 3,
    name: "refunds.reserved_at: when a refund was last reserved, for the refund sweep",
    additive: true,
    steps,
};

static RESERVED_AT: Column = col("reserved_at", Time);

/// Idempotent: only rows still without one.
const FROM_CREATED_AT: &str =
    "UPDATE refunds SET reserved_at = created_at WHERE reserved_at IS NULL";

fn steps() -> Vec<Step> {
    vec![
        Step::AddColumn {
            table: "refunds",
            column: &RESERVED_AT,
        },
        Step::Sql(FROM_CREATED_AT),
        Step::CreateIndex {
            table: "refunds",
            name: "idx_refunds_status_reserved_at",
            columns: "status, reserved_at",
        },
    ]
}
