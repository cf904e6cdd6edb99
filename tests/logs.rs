//! `LOG_FORMAT=json` as an operator searches it (issue 11): every line of a real flow parses
//! as JSON; each invocation ends with one summary line carrying its request id, `type`,
//! `outTradeNo`, outcome and elapsed time; a failed backend delivery and a WeChat Pay
//! retry carry the same fields; and no secret the deployment holds appears anywhere.
//!
//! The subscriber is the one `LOG_FORMAT=json` installs, set process-wide (the router runs
//! on other threads), writing into a buffer all tests of this file share; each test picks
//! its own lines out by `outTradeNo`.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_local::backend::DeliveryFault;
use wxpay_sim::{Fault, FaultKind};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let out = Captured::default();
        let sink = out.clone();
        // DEBUG, not the default INFO: the secret check then covers more of what is written.
        let subscriber =
            wxpay_shared::logging::json_subscriber(tracing::Level::DEBUG, move || sink.clone())
                .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        out
    })
}

fn log_text() -> String {
    let bytes = captured()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    String::from_utf8(bytes).expect("the log is UTF-8")
}

/// Every line so far, each of which must be one JSON object.
fn lines() -> Vec<Value> {
    log_text()
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => panic!("not a JSON object line: {line}"),
        })
        .collect()
}

async fn start() -> Harness {
    captured();
    Harness::start(StoreKind::Sqlite)
        .await
        .expect("SQLite needs no setup")
}

/// The invocation summary of `ty` about `out_trade_no`; exactly one.
fn summary(ty: &str, out_trade_no: &str) -> Value {
    let found: Vec<Value> = lines()
        .into_iter()
        .filter(|l| {
            l["type"] == ty && l["outTradeNo"] == out_trade_no && l.get("elapsed_ms").is_some()
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one summary line for {ty} {out_trade_no}: {found:?}\n{}",
        log_text()
    );
    let line = found.into_iter().next().unwrap_or_default();
    let id = line["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "a request id: {line}");
    assert!(line["elapsed_ms"].as_u64().is_some(), "{line}");
    assert!(line["outcome"].as_str().is_some(), "{line}");
    line
}

/// Lines whose message starts with `message` and that name `out_trade_no`.
fn events(message: &str, out_trade_no: &str) -> Vec<Value> {
    lines()
        .into_iter()
        .filter(|l| {
            l["outTradeNo"] == out_trade_no
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

/// No secret of the deployment (nor an Authorization header) in anything written so far.
fn assert_no_secret(h: &Harness, also: &[&str]) {
    let log = log_text();
    assert!(!log.is_empty(), "something was logged");
    let mut secrets: Vec<String> = also.iter().map(|s| s.to_string()).collect();
    for (name, value) in &h.vars {
        match name.as_str() {
            "WECHAT_APIV3_KEY" | "INTERNAL_API_SECRET" | "WECHAT_APP_SECRET" | "SESSION_SECRET" => {
                secrets.push(value.clone())
            }
            // Any line of the key's body would be a leak, not only the whole PEM.
            "WECHAT_PRIVATE_KEY" => secrets.extend(
                value
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    assert!(secrets.len() >= 5, "the secrets to look for: {secrets:?}");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
    // The scheme of the signed Authorization header sent to WeChat Pay.
    assert!(!log.contains("WECHATPAY2-SHA256-RSA2048"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_ends_with_one_summary_line() {
    let h = start().await;
    let code = h.sim.login_code("o_logs_order");
    let (status, body) = h.call(json!({ "type": "wxpay_login", "code": code })).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["sessionToken"]
        .as_str()
        .unwrap_or_else(|| panic!("a session token: {body}"))
        .to_string();
    let (status, body) = h
        .call_with(
            &[("Authorization", &format!("Bearer {token}"))],
            json!({ "type": "wxpay_order", "packageType": "basic" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().expect("outTradeNo");

    let line = summary("wxpay_order", no);
    assert_eq!(line["outcome"], "ok", "{line}");
    assert_eq!(line["code"], 0, "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_no_secret(&h, &[&token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_ends_with_one_summary_line() {
    let h = start().await;
    let no = h.create_paid_order("o_logs_notify", "basic").await;

    let order = summary("wxpay_order", &no);
    let paid = summary("notification", &no);
    assert_eq!(paid["event_type"], "TRANSACTION.SUCCESS", "{paid}");
    assert_eq!(paid["outcome"], "ok", "{paid}");
    assert_eq!(paid["status"], 204, "{paid}");
    assert_ne!(
        order["request_id"], paid["request_id"],
        "one id per invocation"
    );
    assert_no_secret(&h, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_names_the_invocation_and_the_order() {
    let h = start().await;
    h.backend
        .set_delivery_fault(Some(DeliveryFault::Status(500)));
    let no = h.create_paid_order("o_logs_backend", "basic").await;

    let paid = summary("notification", &no);
    let failed = events("backend delivery failed", &no);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["request_id"], paid["request_id"]);
    assert_eq!(failed[0]["type"], "notification");

    // The retry sweep fails too: its line names the order it was delivering.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_notify_retry", "all": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    let failed = events("backend delivery failed", &no);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1]["type"], "wxpay_notify_retry");
    assert_ne!(failed[1]["request_id"], paid["request_id"]);
    assert_no_secret(&h, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_pay_retry_names_the_invocation_and_the_order() {
    let h = start().await;
    let no = h.create_order("o_logs_retry", "basic").await;
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/out-trade-no/",
        1,
        FaultKind::status(500, "SYSTEM_ERROR", "try again"),
    ));
    let (status, body) = h
        .call_as(
            "o_logs_retry",
            json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }),
        )
        .await;
    assert_eq!(status, 200, "the retry answered: {body}");

    let query = summary("wxpay_query_order_by_out_trade_no", &no);
    let retried = events("WeChat Pay HTTP 500; retrying once", &no);
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["request_id"], query["request_id"]);
    assert_eq!(retried[0]["type"], "wxpay_query_order_by_out_trade_no");
    assert_no_secret(&h, &[]);
}

/// A client that hangs up mid-call (a mini-program's request timing out) does not cancel
/// the invocation: it finishes, and writes its summary like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_hangs_up_still_gets_a_summary_line() {
    let h = start().await;
    let no = h.create_order("o_logs_hangup", "basic").await;
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/out-trade-no/",
        1,
        FaultKind::Delay(std::time::Duration::from_millis(1500)),
    ));
    let gone = h
        .http
        .post(h.pay_url())
        .header("X-WX-OPENID", "o_logs_hangup")
        .header("X-WX-APPID", h.sim.config().appid.clone())
        .timeout(std::time::Duration::from_millis(300))
        .body(json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }).to_string())
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up first: {gone:?}");
    let finished = || {
        lines().iter().any(|l| {
            l["type"] == "wxpay_query_order_by_out_trade_no"
                && l["outTradeNo"] == no.as_str()
                && l.get("elapsed_ms").is_some()
        })
    };
    h.eventually("the summary of the abandoned call", finished)
        .await;
    let line = summary("wxpay_query_order_by_out_trade_no", &no);
    assert_eq!(line["outcome"], "ok", "the call ran to its end: {line}");
}

/// An error message can quote what the caller sent; a 60 KB `type` still makes short lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_unknown_type_makes_no_huge_line() {
    let h = start().await;
    let id = "logs-huge-type";
    let body = json!({ "type": "T".repeat(60_000) }).to_string();
    let (status, _) = h.post_raw("/pay", &[("X-Request-Id", id)], body).await;
    assert_eq!(status, 400);
    let mine: Vec<String> = log_text()
        .lines()
        // A caller's X-Request-Id is kept, prefixed, outside a platform that sets it.
        .filter(|l| l.contains(&format!("\"request_id\":\"caller-{id}-")))
        .map(str::to_string)
        .collect();
    assert_eq!(mine.len(), 2, "the refusal and the summary: {mine:?}");
    for line in &mine {
        assert!(line.len() < 4096, "a line of {} bytes", line.len());
    }
}

/// A stranger asking about someone's order cannot write lines into that order's story: the
/// refused call's summary does not carry the `outTradeNo` it named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_refused_query_is_not_logged_under_the_order() {
    let h = start().await;
    let no = h.create_order("o_logs_owner", "basic").await;
    let (status, body) = h
        .call_as(
            "o_logs_stranger",
            json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let refused: Vec<Value> = lines()
        .into_iter()
        .filter(|l| {
            l["type"] == "wxpay_query_order_by_out_trade_no" && l.get("elapsed_ms").is_some()
        })
        .filter(|l| l["outcome"] != "ok")
        .collect();
    assert!(!refused.is_empty(), "the refused query has its summary");
    assert!(
        refused.iter().all(|l| l["outTradeNo"] != no.as_str()),
        "{refused:?}"
    );
    // The owner's own query is logged under the order.
    let (status, body) = h
        .call_as(
            "o_logs_owner",
            json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    summary("wxpay_query_order_by_out_trade_no", &no);
}
