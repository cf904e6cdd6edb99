//! Migration 2: what refunds in flight hold of an order is kept on the order row.
//!
//! `orders.refund_reserved` is the sum of the order's `processing` and `abnormal` refunds.
//! A refund is reserved by a conditional write on the order row
//! (`… WHERE paid − refunded − refund_reserved >= amount`), so two reservations conflict
//! on one server (the row lock), on a multi-primary cluster (certification) and on TiDB (a
//! write conflict) alike; a sum over `refunds` behind `SELECT … FOR UPDATE` held only on
//! one server. The counter starts as that sum, from the rows already there.
//!
//! Not additive: the release before it reserves refunds without the counter, so an
//! instance of it still serving after this migration would leave the counter short.

use super::{Migration, Step};
use crate::store::schema::Kind::Int;
use crate::store::schema::{req_default, Column};

pub(super) const MIGRATION: Migration = Migration {
    version: 2,
    name: "orders.refund_reserved: refunds in flight, kept on the order row",
    additive: false,
    steps,
};

static REFUND_RESERVED: Column = req_default("refund_reserved", Int, "0");

/// Idempotent, and touches only orders that hold, or held, a reservation.
const COUNT_IN_FLIGHT: &str = "UPDATE orders SET refund_reserved = (\
         SELECT COALESCE(SUM(r.amount), 0) FROM refunds r \
         WHERE r.out_trade_no = orders.out_trade_no AND r.status IN ('processing', 'abnormal')) \
     WHERE refund_reserved <> 0 OR EXISTS (\
         SELECT 1 FROM refunds r \
         WHERE r.out_trade_no = orders.out_trade_no AND r.status IN ('processing', 'abnormal'))";

fn steps() -> Vec<Step> {
    vec![
        Step::AddColumn {
            table: "orders",
            column: &REFUND_RESERVED,
        },
        Step::Sql(COUNT_IN_FLIGHT),
    ]
}
