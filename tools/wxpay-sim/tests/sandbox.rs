//! The simulator as a sandbox for any SDK: every answer carries the headers WeChat Pay
//! documents, and faults can be injected over HTTP by a harness in any language.

mod common;

use common::*;
use serde_json::{json, Value};
use wxpay_sim::PlatformMode;

const NO_RECEIVER: &str = "http://127.0.0.1:9/unused";

/// The headers every WeChat Pay API v3 answer carries (the documented answer example).
fn assert_documented_headers(r: &Resp, what: &str, signer: &str) {
    assert_eq!(
        r.header("Wechatpay-Signature-Type"),
        Some("WECHATPAY2-SHA256-RSA2048"),
        "{what}: {:?}",
        r.headers
    );
    for name in [
        "Request-ID",
        "Wechatpay-Nonce",
        "Wechatpay-Timestamp",
        "Wechatpay-Serial",
        "Wechatpay-Signature",
    ] {
        assert!(
            r.header(name).is_some_and(|v| !v.is_empty()),
            "{what}: no {name} in {:?}",
            r.headers
        );
    }
    assert!(r.verifies_with(signer), "{what}: signature verifies");
}

#[tokio::test]
async fn every_answer_carries_the_documented_headers_errors_included() {
    for mode in [PlatformMode::Certificate, PlatformMode::PublicKey] {
        let sim = start(mode).await;
        let signer = sim.platform_public_key_pem();
        let ok = prepay_jsapi(&sim, "ORDER_hdr_0001", 1, NO_RECEIVER).await;
        assert_eq!(ok.status, 200);
        assert_documented_headers(&ok, "prepay", &signer);

        let path = "/v3/pay/transactions/out-trade-no/ORDER_hdr_0001/close";
        let body = json!({ "mchid": sim.config().mchid }).to_string();
        let closed = call(&sim, "POST", path, Some(&body)).await;
        assert_eq!(closed.status, 204, "{}", closed.body);
        assert_documented_headers(&closed, "204 close", &signer);

        let missing = call(
            &sim,
            "GET",
            "/v3/pay/transactions/out-trade-no/NOPE0001?mchid=1900000001",
            None,
        )
        .await;
        assert_eq!(missing.status, 404);
        assert_documented_headers(&missing, "404 ORDER_NOT_EXIST", &signer);

        let unsigned = call_signed(&sim, "GET", "/v3/certificates", None, None).await;
        assert_eq!(unsigned.status, 401);
        assert_documented_headers(&unsigned, "401 SIGN_ERROR", &signer);

        let bad = call(&sim, "POST", "/v3/pay/transactions/jsapi", Some("{}")).await;
        assert_eq!(bad.status, 400);
        assert_documented_headers(&bad, "400 PARAM_ERROR", &signer);
    }
}

async fn control(sim: &wxpay_sim::Simulator, method: reqwest::Method, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}/sim/faults", sim.base_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("control API answers");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn faults_are_injected_and_cleared_over_the_control_api() {
    let sim = start(PlatformMode::Certificate).await;
    let signer = sim.platform_public_key_pem();
    let (status, _) = control(
        &sim,
        reqwest::Method::POST,
        json!({"path": "/v3/pay/transactions/jsapi", "kind": "status", "status": 500,
               "code": "SYSTEM_ERROR", "message": "系统繁忙"}),
    )
    .await;
    assert_eq!(status, 200);
    let r = prepay_jsapi(&sim, "ORDER_fault_ctl1", 1, NO_RECEIVER).await;
    assert_eq!((r.status, r.code().as_str()), (500, "SYSTEM_ERROR"));
    assert_documented_headers(&r, "injected 500", &signer);
    assert!(sim.order("ORDER_fault_ctl1").is_none(), "not processed");
    assert_eq!(
        prepay_jsapi(&sim, "ORDER_fault_ctl1", 1, NO_RECEIVER)
            .await
            .status,
        200,
        "once only"
    );

    // An answer naming an algorithm the merchant does not know, and one naming none.
    let path = "/v3/pay/transactions/out-trade-no/ORDER_fault_ctl1?mchid=1900000001";
    for (named, expected) in [
        ("WECHATPAY2-SM2-WITH-SM3", Some("WECHATPAY2-SM2-WITH-SM3")),
        ("", None),
    ] {
        let (status, _) = control(
            &sim,
            reqwest::Method::POST,
            json!({"path": "/v3/pay/", "kind": "signature_type", "signature_type": named}),
        )
        .await;
        assert_eq!(status, 200);
        let r = call(&sim, "GET", path, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Wechatpay-Signature-Type"), expected);
        assert!(r.verifies_with(&signer), "still signed with RSA");
    }

    // Faults wait for their path until cleared.
    let (status, _) = control(
        &sim,
        reqwest::Method::POST,
        json!({"path": "/v3/refund/", "times": 3, "kind": "unsigned"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = control(&sim, reqwest::Method::DELETE, Value::Null).await;
    assert_eq!(status, 200);
    let r = call(&sim, "GET", "/v3/refund/domestic/refunds/NOPE_RF_01", None).await;
    assert_documented_headers(&r, "after clearing", &signer);

    let (status, v) = control(
        &sim,
        reqwest::Method::POST,
        json!({"path": "/v3/", "kind": "explode"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap().contains("unknown kind"),
        "{v}"
    );
    assert_eq!(sim.request_count("/sim"), 0);
}
