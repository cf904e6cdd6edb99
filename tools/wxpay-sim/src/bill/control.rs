//! The control API's bill routes, for reconciliation runs by hand: make the trade bill
//! disagree with the simulator's own records, and read it as WeChat Pay would serve it.
//!
//! `POST /sim/bill/drop/{no}`, `POST /sim/bill/amount/{no}?fen=N`, `POST /sim/bill/hash?broken=true`,
//! `POST /sim/bill/early?on=true`, `POST /sim/bill/reset`, `GET /sim/bill/{yyyy-MM-dd}`
//! (JSON) and `GET /sim/bill/{yyyy-MM-dd}/file` (the file itself, for download).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use time::Date;

use crate::bill::desk::BillDesk;
use crate::bill::endpoint::query_param as param;
use crate::bill::file::render;
use crate::model::{SimOrder, SimRefund};

fn bad(message: impl Into<String>) -> (u16, Value) {
    (
        400,
        json!({ "code": "PARAM_ERROR", "message": message.into() }),
    )
}

fn date(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// What a bill route answers.
pub(crate) enum Answer {
    Json(u16, Value),
    /// The bill file itself, named for download.
    File {
        name: String,
        file: Vec<u8>,
    },
}

/// `Some` when the path is one of these routes.
pub(crate) fn route(
    orders: &BTreeMap<String, SimOrder>,
    refunds: &BTreeMap<String, SimRefund>,
    desk: &mut BillDesk,
    method: &str,
    segs: &[&str],
    query: &str,
) -> Option<Answer> {
    let json = |status: u16, v: Value| Some(Answer::Json(status, v));
    match (method, segs) {
        ("POST", ["sim", "bill", "drop", no]) => {
            desk.drop_row(no);
            json(200, json!({ "dropped": no }))
        }
        ("POST", ["sim", "bill", "amount", no]) => {
            let Some(fen) = param(query, "fen").and_then(|f| f.parse::<i64>().ok()) else {
                let (s, v) = bad("fen=N (the amount the bill shows, in fen) is required");
                return json(s, v);
            };
            desk.alter_amount(no, fen);
            json(200, json!({ "altered": no, "fen": fen }))
        }
        ("POST", ["sim", "bill", "hash"]) => {
            let broken = param(query, "broken") != Some("false");
            desk.tamper.wrong_hash = broken;
            json(200, json!({ "brokenHash": broken }))
        }
        ("POST", ["sim", "bill", "early"]) => {
            let on = param(query, "on") != Some("false");
            desk.tamper.early = on;
            json(200, json!({ "early": on }))
        }
        ("POST", ["sim", "bill", "reset"]) => {
            desk.reset();
            json(200, json!({ "reset": true }))
        }
        ("GET", ["sim", "bill", day]) | ("GET", ["sim", "bill", day, "file"]) => {
            let Some(d) = date(day) else {
                let (s, v) = bad("GET /sim/bill/yyyy-MM-dd");
                return json(s, v);
            };
            match render(orders, refunds, &desk.tamper, d) {
                Some(file) if segs.len() == 4 => Some(Answer::File {
                    name: format!("tradebill-{d}.csv"),
                    file,
                }),
                Some(file) => json(200, json!({ "file": String::from_utf8_lossy(&file) })),
                None => json(
                    404,
                    json!({ "code": "NO_STATEMENT_EXIST", "message": "nothing was paid or refunded that day" }),
                ),
            }
        }
        _ => None,
    }
}
