//! `LOG_FORMAT` in the built binary under the Lambda Runtime API (contract §13): with
//! `json` every line it writes is a JSON object and an invocation's summary carries the
//! request id Lambda gave it (`Lambda-Runtime-Aws-Request-Id`); an unknown value stops it
//! before it takes any event; and `RUST_LOG=trace` logs no secret a caller sent.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use wxpay_local::lambda_api::{http_v2_event, Bootstrap, Posted, RuntimeApi};
use wxpay_local::{LocalEnv, LocalOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

async fn start(log_format: &str) -> (LocalEnv, RuntimeApi, Bootstrap) {
    start_with(log_format, "info").await
}

async fn start_with(log_format: &str, rust_log: &str) -> (LocalEnv, RuntimeApi, Bootstrap) {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut vars = env.vars.clone();
    vars.push(("LOG_FORMAT".into(), log_format.into()));
    vars.push(("RUST_LOG".into(), rust_log.into()));
    let function = Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-RouterFunction", &vars);
    (env, api, function)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_lambdas_request_id() {
    let (_env, api, mut function) = start("json").await;
    let event = http_v2_event(
        "POST",
        "/pay",
        json!({ "content-type": "application/json" }),
        Some(r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#.into()),
    );
    let posted = api
        .invoke_raw(
            &mut function,
            Bytes::from(event.to_string()),
            INVOKE_TIMEOUT,
        )
        .await;
    let Posted::Response { id, body, .. } = posted else {
        function.fail(&format!("expected a response, got {posted:?}"))
    };
    let answer: Value = serde_json::from_slice(&body).expect("a JSON answer");
    let envelope: Value =
        serde_json::from_str(answer["body"].as_str().unwrap_or_default()).expect("an envelope");
    let no = envelope["data"]["outTradeNo"]
        .as_str()
        .unwrap_or_else(|| function.fail(&format!("an order: {answer}")))
        .to_string();

    let log = function.logs();
    let mut summaries = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            function.fail(&format!("not a JSON object line: {line}"))
        };
        if fields.get("message") == Some(&json!("invocation finished")) {
            summaries.push(fields);
        }
    }
    assert_eq!(summaries.len(), 1, "one invocation, one summary:\n{log}");
    let summary = &summaries[0];
    assert_eq!(
        summary["request_id"],
        json!(id),
        "Lambda's request id:\n{log}"
    );
    assert_eq!(summary["type"], "wxpay_order", "{log}");
    assert_eq!(summary["outTradeNo"], json!(no), "{log}");
    assert_eq!(summary["outcome"], "ok", "{log}");
    assert!(summary["elapsed_ms"].is_u64(), "{log}");
}

/// The Lambda runtime logs each event whole at TRACE, headers and all; an operator's
/// `RUST_LOG=trace` must not put the caller's secrets in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_trace_logs_no_caller_secret() {
    let (env, api, mut function) = start_with("json", "trace").await;
    let secret = env
        .vars
        .iter()
        .find(|(k, _)| k == "INTERNAL_API_SECRET")
        .map(|(_, v)| v.clone())
        .expect("the environment has an internal secret");
    let token = "v1.eyJvcGVuaWQiOiJvX3RyYWNlIn0.bm90LWEtbWFj";
    let event = http_v2_event(
        "POST",
        "/pay",
        json!({
            "content-type": "application/json",
            "x-internal-secret": secret,
            "authorization": format!("Bearer {token}"),
        }),
        Some(r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#.into()),
    );
    let posted = api
        .invoke_raw(
            &mut function,
            Bytes::from(event.to_string()),
            INVOKE_TIMEOUT,
        )
        .await;
    let Posted::Response { .. } = posted else {
        function.fail(&format!("expected a response, got {posted:?}"))
    };
    let log = function.logs();
    assert!(log.contains("invocation finished"), "{log}");
    assert!(
        !log.contains(secret.as_str()),
        "the internal secret is in the log"
    );
    assert!(!log.contains(token), "the session token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_log_format_stops_start_up() {
    let (_env, api, mut function) = start("yaml").await;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = function.exited() {
            break status;
        }
        if started.elapsed() > INVOKE_TIMEOUT {
            function.fail("still running with LOG_FORMAT=yaml");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.ends_with(" 2"), "exit code 2: {status}");
    let log = function.logs();
    assert!(
        log.contains("LOG_FORMAT must be `text` or `json` (got `yaml`)"),
        "{log}"
    );
    assert_eq!(api.polls(), 0, "no event was taken");
}
