//! What the property tests share: bounded runners, generators of hostile input, and the
//! two answer shapes every edge must keep (the envelope, and WeChat Pay's FAIL body).
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value};

/// A runner of `default_cases` cases (`PROPTEST_CASES` overrides, to search longer). The seed
/// is fixed so CI is reproducible; `PROPTEST_RANDOM=1` draws a fresh one.
pub fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var("PROPTEST_RANDOM").as_deref() == Ok("1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

/// Field names the edges read, plus some they do not.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "outTradeNo", "transactionId", "outRefundNo", "amount", "packageType",
            "tradeType", "openid", "clientIp", "userInfo", "internalSecret", "description",
            "attach", "userId", "generationId", "businessType", "businessId", "all", "reason",
            "openId", "appId",
        ])
        .prop_map(String::from),
        1 => "[A-Za-z_]{1,12}",
    ]
}

/// Text a caller might send: printable, control characters, multi-byte, long.
pub fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,20}",
        "[\\x00-\\x1f\\x7f\u{2028}a-z]{0,20}",
        "[0-9]{1,30}",
        Just("x\n2026-12-02T00:00:00.000000Z  INFO order paid out_trade_no=WXFORGED".to_string()),
        (1usize..6000).prop_map(|n| "9".repeat(n)),
    ]
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        hostile_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// `{"code":0,"msg":"ok","data":…}` with 200, or `{"code":N,"msg":…}` with the status
/// `N / 100`, and never an internal error.
pub fn check_envelope(status: u16, body: &str) -> Result<(), TestCaseError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| fail(format!("not JSON ({e}): {body}")))?;
    let code = v["code"]
        .as_i64()
        .ok_or_else(|| fail(format!("no numeric code: {body}")))?;
    prop_assert!(v["msg"].is_string(), "no msg: {}", body);
    if code == 0 {
        prop_assert_eq!(status, 200, "{}", body);
    } else {
        prop_assert_eq!(code / 100, i64::from(status), "{}", body);
        prop_assert!(
            v.get("data").is_none(),
            "an error carries no data: {}",
            body
        );
    }
    prop_assert!(
        code != 50000 && code != 50010,
        "an internal or store error: {}",
        body
    );
    Ok(())
}

/// A notification's answer: 204 with nothing, or 4xx/5xx with `{"code":"FAIL",…}`.
pub fn check_notify_answer(status: u16, body: &str) -> Result<(), TestCaseError> {
    if status == 204 {
        prop_assert!(body.is_empty(), "204 with a body: {}", body);
        return Ok(());
    }
    prop_assert!(status >= 400, "status {}: {}", status, body);
    prop_assert!(status != 500, "a 500 is retried forever: {}", body);
    let v: Value =
        serde_json::from_str(body).map_err(|e| fail(format!("not JSON ({e}): {body}")))?;
    prop_assert_eq!(&v["code"], "FAIL", "{}", body);
    prop_assert!(v["message"].is_string(), "{}", body);
    Ok(())
}

/// Whichever of the two a request with these headers should get.
pub fn check_any_answer(status: u16, body: Option<&str>) -> Result<(), TestCaseError> {
    let Some(body) = body else {
        prop_assert_eq!(status, 204, "only a handled notification has no body");
        return Ok(());
    };
    let v: Value =
        serde_json::from_str(body).map_err(|e| fail(format!("not JSON ({e}): {body}")))?;
    if v["code"] == "FAIL" {
        check_notify_answer(status, body)
    } else if v.get("status").and_then(Value::as_str) == Some("ok") {
        prop_assert_eq!(status, 200, "healthz");
        Ok(())
    } else {
        check_envelope(status, body)
    }
}

/// A blocking runner for async properties (proptest calls the property synchronously).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}
