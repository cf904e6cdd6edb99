//! Control API for reconciliation runs by hand: lose notifications and make the trade bill
//! disagree with the simulator's own records.

use serde_json::{json, Value};
use time::Date;

use crate::bill::query_param as param;
use crate::{RefundOutcome, SimError, Simulator};

fn error(e: &SimError) -> (u16, Value) {
    let (status, code) = match e {
        SimError::OrderNotFound(_) => (404, "ORDER_NOT_EXIST"),
        SimError::RefundNotFound(_) => (404, "RESOURCE_NOT_EXISTS"),
        SimError::InvalidState(_) => (409, "INVALID_STATE"),
        _ => (500, "SYSTEM_ERROR"),
    };
    (status, json!({ "code": code, "message": e.to_string() }))
}

fn bad(message: impl Into<String>) -> (u16, Value) {
    (
        400,
        json!({ "code": "PARAM_ERROR", "message": message.into() }),
    )
}

/// `Some` when the path is one of these routes.
pub(crate) fn control(
    sim: &Simulator,
    method: &str,
    segs: &[&str],
    query: &str,
) -> Option<(u16, Value)> {
    Some(match (method, segs) {
        ("POST", ["sim", "pay-silently", no]) => match sim.mark_paid(no) {
            Ok(o) => (200, json!({ "notified": false, "order": o })),
            Err(e) => error(&e),
        },
        ("POST", ["sim", "refunds", no, "complete-silently"]) => {
            let outcome = match param(query, "status").unwrap_or("SUCCESS") {
                "SUCCESS" => RefundOutcome::Success,
                "ABNORMAL" => RefundOutcome::Abnormal,
                "CLOSED" => RefundOutcome::Closed,
                other => {
                    return Some(bad(format!(
                        "status must be SUCCESS, ABNORMAL or CLOSED, not {other}"
                    )))
                }
            };
            match sim.complete_refund_silently(no, outcome) {
                Ok(r) => (200, json!({ "notified": false, "refund": r })),
                Err(e) => error(&e),
            }
        }
        ("POST", ["sim", "bill", "drop", no]) => {
            sim.drop_from_bill(no);
            (200, json!({ "dropped": no }))
        }
        ("POST", ["sim", "bill", "amount", no]) => {
            let Some(fen) = param(query, "fen").and_then(|f| f.parse::<i64>().ok()) else {
                return Some(bad("fen=N (the amount the bill shows, in fen) is required"));
            };
            sim.alter_bill_amount(no, fen);
            (200, json!({ "altered": no, "fen": fen }))
        }
        ("POST", ["sim", "bill", "early"]) => {
            let on = param(query, "on") != Some("false");
            sim.serve_bills_early(on);
            (200, json!({ "early": on }))
        }
        ("POST", ["sim", "bill", "reset"]) => {
            sim.reset_bill();
            (200, json!({ "reset": true }))
        }
        ("GET", ["sim", "bill", date]) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let Ok(date) = Date::parse(date, format) else {
                return Some(bad("GET /sim/bill/yyyy-MM-dd"));
            };
            match sim.trade_bill_file(date) {
                Some(file) => (200, json!({ "file": String::from_utf8_lossy(&file) })),
                None => (
                    404,
                    json!({ "code": "NO_STATEMENT_EXIST", "message": "nothing was paid or refunded that day" }),
                ),
            }
        }
        _ => return None,
    })
}
