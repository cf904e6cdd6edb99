//! The unauthenticated control API (`/sim/…`), for people, the console and test harnesses
//! in any language. Each route moves something on as WeChat Pay or the payer would.

use serde_json::json;

use crate::bill::control::{self as bill_control, Answer};
use crate::error::SimError;
use crate::faults::parse_fault;
use crate::model::RefundOutcome;
use crate::notify::NotifyOutcome;
use crate::respond::{build_response, plain_json, HttpResponse};
use crate::sim::{lock, Simulator};

/// Every route, for the 404 and `wxpay-sim --help`.
pub const ROUTES: &str = "\
POST /sim/pay/{out_trade_no}                      paid; TRANSACTION.SUCCESS sent, retried until acknowledged
POST /sim/pay-silently/{out_trade_no}             paid, the notification is lost
POST /sim/fail/{out_trade_no}                     the payment fails (PAYERROR)
POST /sim/close/{out_trade_no}                    closed at WeChat Pay
POST /sim/refunds/{out_refund_no}/complete?status=SUCCESS|ABNORMAL|CLOSED
POST /sim/refunds/{out_refund_no}/complete-silently?status=SUCCESS|ABNORMAL|CLOSED
POST /sim/portal-refund/{out_trade_no}?fen=N      refunded by hand in the merchant platform: no notification
GET  /sim/notifications[?about={out_trade_no|out_refund_no}]   every notification and its attempts
POST /sim/notifications/{id}/retry                send the next attempt now
POST /sim/notifications/retry-scale?scale=0.01    play the retry schedule faster (SIM_RETRY_SCALE)
POST /sim/login-codes?openid=…[&errcode=40226]    a wx.login() code for GET /sns/jscode2session
POST /sim/faults {\"path\":\"/v3/pay/\",\"kind\":\"status\",\"status\":500}   DELETE /sim/faults
POST /sim/faults/refund-late?delay_ms=N&times=K   accept the next refund(s), answer late
GET  /sim/orders[/{out_trade_no}]                 GET /sim/refunds[/{out_refund_no}]
POST /sim/bill/drop/{out_trade_no|out_refund_no}  leave it out of the trade bill
POST /sim/bill/amount/{out_trade_no|out_refund_no}?fen=N   the bill shows N fen
POST /sim/bill/hash?broken=true                   hash_value no longer matches the file
POST /sim/bill/early?on=true                      serve today's bill now
POST /sim/bill/reset                              forget drops, amounts and the broken hash
GET  /sim/bill/{yyyy-MM-dd}[/file]                the trade bill as JSON, or the file";

fn sim_error(e: &SimError) -> HttpResponse {
    let (status, code) = match e {
        SimError::OrderNotFound(_) => (404, "ORDER_NOT_EXIST"),
        SimError::RefundNotFound(_) => (404, "RESOURCE_NOT_EXISTS"),
        SimError::InvalidState(_) => (409, "INVALID_STATE"),
        SimError::NoNotifyUrl(_) | SimError::Delivery(_) => (502, "DELIVERY_FAILED"),
        SimError::Crypto(_) => (500, "SYSTEM_ERROR"),
    };
    plain_json(status, &json!({ "code": code, "message": e.to_string() }))
}

fn bad(message: impl Into<String>) -> HttpResponse {
    plain_json(
        400,
        &json!({ "code": "PARAM_ERROR", "message": message.into() }),
    )
}

fn notified(result: Result<NotifyOutcome, SimError>) -> HttpResponse {
    match result {
        Ok(o) => plain_json(
            200,
            &json!({ "notified": true, "status": o.status, "body": o.body }),
        ),
        // The state changed; only the notification did not get through (it is retried).
        Err(e @ (SimError::Delivery(_) | SimError::NoNotifyUrl(_))) => {
            plain_json(200, &json!({ "notified": false, "error": e.to_string() }))
        }
        Err(e) => sim_error(&e),
    }
}

/// A query parameter, percent-decoded.
pub(crate) fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn outcome(query: &str) -> Result<RefundOutcome, String> {
    RefundOutcome::parse(&param(query, "status").unwrap_or_else(|| "SUCCESS".into()))
}

pub(crate) async fn handle(
    sim: &Simulator,
    method: &str,
    segs: &[&str],
    query: &str,
    body: &[u8],
) -> HttpResponse {
    {
        let mut st = lock(&sim.inner.state);
        let st = &mut *st;
        let answer =
            bill_control::route(&st.orders, &st.refunds, &mut st.bill, method, segs, query);
        match answer {
            Some(Answer::Json(status, v)) => return plain_json(status, &v),
            Some(Answer::File { name, file }) => {
                return build_response(
                    200,
                    vec![
                        ("Content-Type", "text/csv; charset=utf-8".into()),
                        (
                            "Content-Disposition",
                            format!("attachment; filename=\"{name}\""),
                        ),
                    ],
                    file,
                )
            }
            None => {}
        }
    }
    match (method, segs) {
        ("POST", ["sim", "pay", no]) => notified(sim.pay(no).await),
        ("POST", ["sim", "pay-silently", no]) => match sim.mark_paid(no) {
            Ok(o) => plain_json(200, &json!({ "notified": false, "order": o })),
            Err(e) => sim_error(&e),
        },
        ("POST", ["sim", "fail", no]) => match sim.fail_payment(no) {
            Ok(o) => plain_json(200, &json!({ "order": o })),
            Err(e) => sim_error(&e),
        },
        ("POST", ["sim", "close", no]) => match sim.close_order(no) {
            Ok(o) => plain_json(200, &json!({ "order": o })),
            Err(e) => sim_error(&e),
        },
        ("POST", ["sim", "refunds", no, "complete"]) => match outcome(query) {
            Ok(outcome) => notified(sim.complete_refund(no, outcome).await),
            Err(e) => bad(e),
        },
        ("POST", ["sim", "portal-refund", no]) => {
            match param(query, "fen").and_then(|f| f.parse::<i64>().ok()) {
                Some(fen) => match sim.portal_refund(no, fen) {
                    Ok(r) => plain_json(200, &json!({ "notified": false, "refund": r })),
                    Err(e) => sim_error(&e),
                },
                None => bad("portal-refund needs ?fen=N (the amount in fen)"),
            }
        }
        ("POST", ["sim", "refunds", no, "complete-silently"]) => match outcome(query) {
            Ok(outcome) => match sim.complete_refund_silently(no, outcome) {
                Ok(r) => plain_json(200, &json!({ "notified": false, "refund": r })),
                Err(e) => sim_error(&e),
            },
            Err(e) => bad(e),
        },
        ("GET", ["sim", "notifications"]) => {
            let list = match param(query, "about") {
                Some(no) => sim.notification_deliveries_for(&no),
                None => sim.notification_deliveries(),
            };
            plain_json(200, &json!(list))
        }
        ("POST", ["sim", "notifications", "retry-scale"]) => {
            let scale = param(query, "scale").unwrap_or_default();
            match crate::deliveries::parse_scale(&scale)
                .and_then(|s| sim.set_notification_retry_scale(s))
            {
                Ok(()) => plain_json(200, &json!({ "scale": sim.notification_retry_scale() })),
                Err(e) => bad(e),
            }
        }
        ("POST", ["sim", "notifications", id, "retry"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return bad("POST /sim/notifications/{id}/retry: id is a number");
            };
            match sim.retry_notification_now(id).await {
                Ok(attempt) => plain_json(200, &json!(attempt)),
                Err(e @ crate::notifications::RetryRefused::NoSuchNotification(_)) => plain_json(
                    404,
                    &json!({ "code": "RESOURCE_NOT_EXISTS", "message": e.to_string() }),
                ),
                Err(e) => plain_json(
                    409,
                    &json!({ "code": "INVALID_STATE", "message": e.to_string() }),
                ),
            }
        }
        ("POST", ["sim", "login-codes"]) => {
            let Some(openid) = param(query, "openid").filter(|o| !o.is_empty()) else {
                return bad("give ?openid=… (and optionally &errcode=40226|45011|…)");
            };
            let errcode = param(query, "errcode").and_then(|c| c.parse::<i64>().ok());
            let code = lock(&sim.inner.logins).issue(&openid, errcode);
            plain_json(200, &json!({ "code": code, "openid": openid }))
        }
        ("POST", ["sim", "faults", "refund-late"]) => {
            let number = |name: &str| param(query, name).and_then(|v| v.parse::<u64>().ok());
            let delay = std::time::Duration::from_millis(number("delay_ms").unwrap_or(10_000));
            let times = number("times").unwrap_or(1) as usize;
            sim.answer_refunds_late(delay, times);
            plain_json(
                200,
                &json!({ "armed": times, "delayMs": delay.as_millis() as u64 }),
            )
        }
        ("POST", ["sim", "faults"]) => match parse_fault(body) {
            Ok(fault) => {
                sim.inject_fault(fault);
                plain_json(200, &json!({ "injected": true }))
            }
            Err(message) => bad(message),
        },
        ("DELETE", ["sim", "faults"]) => {
            sim.clear_faults();
            plain_json(200, &json!({ "cleared": true }))
        }
        ("GET", ["sim", "orders"]) => plain_json(200, &json!(sim.orders())),
        ("GET", ["sim", "orders", no]) => match sim.order(no) {
            Some(o) => plain_json(200, &json!(o)),
            None => sim_error(&SimError::OrderNotFound(no.to_string())),
        },
        ("GET", ["sim", "refunds"]) => plain_json(200, &json!(sim.refunds())),
        ("GET", ["sim", "refunds", no]) => match sim.refund(no) {
            Some(r) => plain_json(200, &json!(r)),
            None => sim_error(&SimError::RefundNotFound(no.to_string())),
        },
        _ => plain_json(
            404,
            &json!({
                "code": "NOT_FOUND",
                "message": format!("control API:\n{ROUTES}"),
            }),
        ),
    }
}
