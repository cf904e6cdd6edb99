//! The simulator seen from a merchant written independently from the WeChat Pay docs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wxpay_sim::{
    Fault, FaultKind, NotificationEvent, PlatformMode, RefundOutcome, SimConfig, Simulator,
};
use x509_parser::prelude::*;

const NO_RECEIVER: &str = "http://127.0.0.1:9/unused";

#[tokio::test]
async fn jsapi_prepay_succeeds_and_the_response_is_signed_by_the_platform_certificate() {
    let sim = start(PlatformMode::Certificate).await;
    let r = prepay_jsapi(&sim, "ORDER_jsapi_001", 100, NO_RECEIVER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let prepay_id = r.json()["prepay_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(prepay_id.starts_with("wx"), "{prepay_id}");
    assert_eq!(
        r.header("Wechatpay-Serial"),
        sim.platform_cert_serial().as_deref()
    );
    assert_eq!(r.header("Wechatpay-Nonce").map(str::len), Some(32));
    assert!(r.header("Request-ID").is_some());
    let ts: i64 = r.header("Wechatpay-Timestamp").unwrap().parse().unwrap();
    assert!((now() - ts).abs() < 5);
    assert!(r.verifies_with(&sim.platform_public_key_pem()));
    assert!(sim.public_key_id().is_none());

    // Same request again: same answer, still one order.
    let again = prepay_jsapi(&sim, "ORDER_jsapi_001", 100, NO_RECEIVER).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["prepay_id"], json!(prepay_id));
    // Different amount: the number is taken.
    let clash = prepay_jsapi(&sim, "ORDER_jsapi_001", 200, NO_RECEIVER).await;
    assert_eq!(
        (clash.status, clash.code().as_str()),
        (400, "INVALID_REQUEST")
    );
    assert!(clash.verifies_with(&sim.platform_public_key_pem()));

    let q = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/ORDER_jsapi_001?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let t = q.json();
    assert_eq!(t["trade_state"], "NOTPAY");
    assert_eq!(t["amount"]["total"], 100);
    assert_eq!(t["attach"], "gen-1");
    assert!(t.get("transaction_id").is_none());
    assert!(q.verifies_with(&sim.platform_public_key_pem()));

    let o = sim.order("ORDER_jsapi_001").expect("order recorded");
    assert_eq!(o.trade_type, "JSAPI");
    assert_eq!(o.amount_total, 100);
    assert_eq!(
        o.payer_openid.as_deref(),
        Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    );
    assert_eq!(sim.request_count("/v3/pay/transactions/jsapi"), 3);
    assert_eq!(sim.request_count("/v3/pay/transactions/out-trade-no/"), 1);
    assert_eq!(sim.request_count("/v3/refund"), 0);
}

#[tokio::test]
async fn native_h5_and_app_prepays_answer_their_own_shapes() {
    let sim = start(PlatformMode::Certificate).await;
    let c = sim.config().clone();
    let base = json!({
        "appid": c.appid, "mchid": c.mchid, "description": "d",
        "notify_url": "https://merchant.example/notify", "amount": {"total": 1},
    });
    let with = |no: &str, extra: Value| {
        let mut b = base.clone();
        b["out_trade_no"] = json!(no);
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b.to_string()
    };

    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/native",
        Some(&with("NATIVE0001", json!({}))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["code_url"]
        .as_str()
        .unwrap()
        .starts_with("weixin://wxpay/bizpayurl?pr="));

    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/app",
        Some(&with("APP0000001", json!({}))),
    )
    .await;
    assert!(r.json()["prepay_id"].as_str().unwrap().starts_with("wx"));

    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/h5",
        Some(&with("H500000001", json!({}))),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "PARAM_ERROR"),
        "H5 needs scene_info"
    );
    let scene = json!({"scene_info": {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}});
    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/h5",
        Some(&with("H500000001", scene)),
    )
    .await;
    assert!(r.json()["h5_url"]
        .as_str()
        .unwrap()
        .starts_with("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx"));
    assert_eq!(sim.order("H500000001").unwrap().trade_type, "MWEB");

    sim.mark_paid_silently("NATIVE0001").await.unwrap();
    let o = sim.order("NATIVE0001").unwrap();
    assert!(o.payer_openid.is_some(), "a payer is made up for NATIVE");
    let q = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/NATIVE0001?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!(q.json()["trade_type"], "NATIVE");
    assert_eq!(
        q.json()["payer"]["openid"].as_str(),
        o.payer_openid.as_deref()
    );
}

#[tokio::test]
async fn bad_authorization_is_refused_with_a_signed_401() {
    let sim = start(PlatformMode::Certificate).await;
    let body = jsapi_body(&sim, "ORDER_auth_01", 1, NO_RECEIVER);
    let path = "/v3/pay/transactions/jsapi";

    let mut cases: Vec<(&str, Option<Signing>)> = Vec::new();
    let mut s = Signing::good(&sim);
    s.signed_body_override = Some(body.replace("\"total\":1", "\"total\":2"));
    cases.push(("signature over another body", Some(s)));
    let mut s = Signing::good(&sim);
    s.serial = "0000000000000000000000000000000000000000".into();
    cases.push(("wrong serial", Some(s)));
    let mut s = Signing::good(&sim);
    s.timestamp = now() - 301;
    cases.push(("stale timestamp", Some(s)));
    let mut s = Signing::good(&sim);
    s.timestamp = now() + 400;
    cases.push(("future timestamp", Some(s)));
    let mut s = Signing::good(&sim);
    s.mchid = "1900000002".into();
    cases.push(("wrong mchid", Some(s)));
    let mut s = Signing::good(&sim);
    s.private_pem = wxpay_sim::keys::generate_rsa_pkcs8_pem();
    cases.push(("another merchant's key", Some(s)));
    cases.push(("no Authorization", None));

    for (what, signing) in cases {
        let r = call_signed(&sim, "POST", path, Some(&body), signing).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.code(), "SIGN_ERROR", "{what}");
        assert!(
            r.verifies_with(&sim.platform_public_key_pem()),
            "{what}: error responses are signed"
        );
    }
    assert!(sim.order("ORDER_auth_01").is_none(), "nothing was created");

    // A GET signs the path with its query and an empty body.
    let mut s = Signing::good(&sim);
    s.signed_body_override = Some("x".into());
    let r = call_signed(&sim, "GET", "/v3/certificates", None, Some(s)).await;
    assert_eq!(r.status, 401);
    let r = call(&sim, "GET", "/v3/certificates", None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn request_validation_follows_the_real_api() {
    let sim = start(PlatformMode::Certificate).await;
    let path = "/v3/pay/transactions/jsapi";
    let good: Value =
        serde_json::from_str(&jsapi_body(&sim, "ORDER_valid_1", 1, NO_RECEIVER)).unwrap();
    let variant = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };

    let r = call(&sim, "POST", path, Some("{not json")).await;
    assert_eq!((r.status, r.code().as_str()), (400, "PARAM_ERROR"));
    assert!(r.verifies_with(&sim.platform_public_key_pem()));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no openid",
            variant(&|v| v["payer"] = json!({})),
            "PARAM_ERROR",
        ),
        (
            "float amount",
            variant(&|v| v["amount"]["total"] = json!(1.5)),
            "PARAM_ERROR",
        ),
        (
            "zero amount",
            variant(&|v| v["amount"]["total"] = json!(0)),
            "PARAM_ERROR",
        ),
        (
            "string amount",
            variant(&|v| v["amount"]["total"] = json!("1")),
            "PARAM_ERROR",
        ),
        (
            "short out_trade_no",
            variant(&|v| v["out_trade_no"] = json!("abc")),
            "PARAM_ERROR",
        ),
        (
            "bad chars",
            variant(&|v| v["out_trade_no"] = json!("ORDER#0001")),
            "PARAM_ERROR",
        ),
        (
            "empty description",
            variant(&|v| v["description"] = json!("")),
            "PARAM_ERROR",
        ),
        (
            "long description",
            variant(&|v| v["description"] = json!("商".repeat(43))),
            "PARAM_ERROR",
        ),
        (
            "bad notify_url",
            variant(&|v| v["notify_url"] = json!("notify")),
            "PARAM_ERROR",
        ),
        (
            "other mchid",
            variant(&|v| v["mchid"] = json!("1900000002")),
            "PARAM_ERROR",
        ),
        (
            "other appid",
            variant(&|v| v["appid"] = json!("wx0000000000000000")),
            "APPID_MCHID_NOT_MATCH",
        ),
        (
            "USD",
            variant(&|v| v["amount"]["currency"] = json!("USD")),
            "PARAM_ERROR",
        ),
    ];
    for (what, body, code) in cases {
        let r = call(&sim, "POST", path, Some(&body)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, code),
            "{what}: {}",
            r.body
        );
    }
    assert!(sim.order("ORDER_valid_1").is_none());

    let r = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/NOSUCHORDER?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (404, "ORDER_NOT_EXIST"));
    assert_eq!(r.json()["message"], "订单不存在");
    let r = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/NOSUCHORDER",
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "PARAM_ERROR"),
        "mchid query is required"
    );
    let r = call(
        &sim,
        "GET",
        "/v3/pay/transactions/id/4200000000000000000000000000?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (404, "ORDER_NOT_EXIST"));
    let r = call(&sim, "GET", "/v3/no/such/thing", None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    assert!(r.verifies_with(&sim.platform_public_key_pem()));
    let r = call(
        &sim,
        "GET",
        "/v3/refund/domestic/refunds/NOSUCHREFUND",
        None,
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (404, "RESOURCE_NOT_EXISTS"));
}

#[tokio::test]
async fn certificates_decrypt_to_the_signing_certificate() {
    let sim = start(PlatformMode::Certificate).await;
    let r = call(&sim, "GET", "/v3/certificates", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.verifies_with(&sim.platform_public_key_pem()));
    let data = r.json()["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1);
    let entry = &data[0];
    let enc = &entry["encrypt_certificate"];
    assert_eq!(enc["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(enc["associated_data"], "certificate");
    assert_eq!(enc["nonce"].as_str().unwrap().len(), 12);
    let pem_text = String::from_utf8(decrypt(
        &sim.config().apiv3_key,
        enc["nonce"].as_str().unwrap(),
        "certificate",
        enc["ciphertext"].as_str().unwrap(),
    ))
    .unwrap();
    assert!(pem_text.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(Some(pem_text.clone()), sim.platform_cert_pem());

    let der = pem_der(&pem_text);
    let (_, cert) = X509Certificate::from_der(&der).expect("an X.509 certificate");
    let serial = hex::encode_upper(cert.raw_serial());
    assert_eq!(serial.len(), 40);
    assert_eq!(entry["serial_no"].as_str(), Some(serial.as_str()));
    assert_eq!(Some(serial.clone()), sim.platform_cert_serial());
    assert_eq!(r.header("Wechatpay-Serial"), Some(serial.as_str()));
    assert!(cert.validity().is_valid());
    assert!(entry["effective_time"]
        .as_str()
        .unwrap()
        .ends_with("+08:00"));
    assert!(entry["expire_time"].as_str().unwrap().ends_with("+08:00"));

    // The certificate's own key verifies the response.
    let spki_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            cert.public_key().raw
        )
    );
    assert!(r.verifies_with(&spki_pem));

    // Rotation: both served, the new one signs.
    let new_serial = sim.add_platform_certificate().unwrap();
    assert_ne!(new_serial, serial);
    let r = call(&sim, "GET", "/v3/certificates", None).await;
    assert_eq!(r.header("Wechatpay-Serial"), Some(new_serial.as_str()));
    assert!(r.verifies_with(&sim.verifying_key_pem(&new_serial).unwrap()));
    assert!(!r.verifies_with(&spki_pem));
    let serials: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["serial_no"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 2);
    assert!(serials.contains(&serial) && serials.contains(&new_serial));
    assert_eq!(sim.request_count("/v3/certificates"), 2);
}

#[tokio::test]
async fn public_key_mode_has_no_certificates_and_signs_with_the_public_key_id() {
    let sim = start(PlatformMode::PublicKey).await;
    let id = sim.public_key_id().expect("a public key id");
    assert!(id.starts_with("PUB_KEY_ID_"));
    assert_eq!(id.len(), "PUB_KEY_ID_".len() + 32);
    assert!(id["PUB_KEY_ID_".len()..]
        .bytes()
        .all(|b| b.is_ascii_digit()));
    assert!(sim.platform_cert_serial().is_none());

    let r = call(&sim, "GET", "/v3/certificates", None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    assert_eq!(r.json()["message"], "无可用的平台证书");
    assert_eq!(r.header("Wechatpay-Serial"), Some(id.as_str()));
    assert!(r.verifies_with(&sim.platform_public_key_pem()));

    let r = prepay_jsapi(&sim, "ORDER_pubkey_1", 5, NO_RECEIVER).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Wechatpay-Serial"), Some(id.as_str()));
    assert!(r.verifies_with(&sim.platform_public_key_pem()));
}

#[tokio::test]
async fn mixed_mode_alternates_between_certificate_and_public_key() {
    let sim = start(PlatformMode::Mixed).await;
    let id = sim.public_key_id().unwrap();
    let cert_serial = sim.platform_cert_serial().unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = call(&sim, "GET", "/v3/certificates", None).await;
        assert_eq!(r.status, 200, "certificates are still served");
        let serial = r.header("Wechatpay-Serial").unwrap().to_string();
        assert!(r.verifies_with(&sim.verifying_key_pem(&serial).unwrap()));
        seen.push(serial);
    }
    assert!(
        seen.contains(&id) && seen.contains(&cert_serial),
        "{seen:?}"
    );
}

#[tokio::test]
async fn pay_delivers_a_verifiable_transaction_notification() {
    let sim = start(PlatformMode::Certificate).await;
    let mut receiver = Receiver::start(204).await;
    assert_eq!(
        prepay_jsapi(&sim, "ORDER_pay_0001", 2990, &receiver.url)
            .await
            .status,
        200
    );

    let outcome = sim.pay("ORDER_pay_0001").await.expect("paid and delivered");
    assert_eq!(outcome.status, 204);
    let n = receiver.next().await;
    assert_eq!(n.path, "/pay/notify");
    assert_eq!(
        n.header("Wechatpay-Signature-Type"),
        Some("WECHATPAY2-SHA256-RSA2048")
    );
    assert_eq!(n.header("Content-Type"), Some("application/json"));
    assert_eq!(
        n.header("Wechatpay-Serial"),
        sim.platform_cert_serial().as_deref()
    );

    let (envelope, t) = open_notification(&sim, &n);
    assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    assert_eq!(envelope["summary"], "支付成功");
    assert_eq!(envelope["resource"]["original_type"], "transaction");
    assert!(envelope["create_time"]
        .as_str()
        .unwrap()
        .ends_with("+08:00"));
    assert_eq!(t["trade_state"], "SUCCESS");
    assert_eq!(t["out_trade_no"], "ORDER_pay_0001");
    assert_eq!(t["appid"], sim.config().appid.as_str());
    assert_eq!(t["mchid"], "1900000001");
    assert_eq!(t["trade_type"], "JSAPI");
    assert_eq!(t["attach"], "gen-1");
    assert_eq!(t["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_eq!(
        t["amount"],
        json!({"total": 2990, "payer_total": 2990, "currency": "CNY", "payer_currency": "CNY"})
    );
    let tid = t["transaction_id"].as_str().unwrap().to_string();
    assert!(
        tid.len() == 28 && tid.starts_with("4200") && tid.bytes().all(|b| b.is_ascii_digit()),
        "{tid}"
    );
    let success_time = t["success_time"].as_str().unwrap();
    assert!(
        success_time.ends_with("+08:00") && success_time.len() == 25,
        "{success_time}"
    );

    // The query APIs agree, by either number.
    let q = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/ORDER_pay_0001?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!(q.json()["transaction_id"], json!(tid));
    assert_eq!(q.json()["trade_state"], "SUCCESS");
    let q = call(
        &sim,
        "GET",
        &format!("/v3/pay/transactions/id/{tid}?mchid=1900000001"),
        None,
    )
    .await;
    assert_eq!(q.json()["out_trade_no"], "ORDER_pay_0001");

    // Paid: cannot pay, prepay or close again.
    assert!(sim.pay("ORDER_pay_0001").await.is_err());
    let r = prepay_jsapi(&sim, "ORDER_pay_0001", 2990, &receiver.url).await;
    assert_eq!((r.status, r.code().as_str()), (400, "ORDERPAID"));
    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/out-trade-no/ORDER_pay_0001/close",
        Some(r#"{"mchid":"1900000001"}"#),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "ORDERPAID"));

    // Redelivery and tampering helpers.
    let again = sim
        .build_transaction_notification("ORDER_pay_0001")
        .unwrap();
    assert_eq!(
        sim.deliver(&again, &receiver.url).await.unwrap().status,
        204
    );
    let n2 = receiver.next().await;
    let (_, t2) = open_notification(&sim, &n2);
    assert_eq!(t2["transaction_id"], json!(tid));

    let key = sim.platform_public_key_pem();
    let verifies = |n: &wxpay_sim::SignedNotification| {
        let msg = format!(
            "{}\n{}\n{}\n",
            n.header("Wechatpay-Timestamp").unwrap(),
            n.header("Wechatpay-Nonce").unwrap(),
            n.body
        );
        verify_spki_pem(
            &key,
            msg.as_bytes(),
            n.header("Wechatpay-Signature").unwrap(),
        )
    };
    assert!(verifies(&again));
    assert!(!verifies(
        &again
            .clone()
            .with_body(again.body.replace("SUCCESS", "SUCCESX"))
    ));
    assert!(!verifies(&again.clone().signed_by_foreign_key()));
    let stale = again.clone().with_timestamp(now() - 3600);
    assert!(verifies(&stale));
    assert_eq!(
        stale.header("Wechatpay-Timestamp"),
        Some((now() - 3600).to_string().as_str())
    );
    let probe = again.clone().as_sign_test_probe();
    assert!(probe
        .header("Wechatpay-Signature")
        .unwrap()
        .starts_with("WECHATPAY/SIGNTEST/"));
    let other = again.clone().with_serial("PUB_KEY_ID_0000");
    assert_eq!(other.header("wechatpay-serial"), Some("PUB_KEY_ID_0000"));
}

#[tokio::test]
async fn unpaid_orders_close_and_can_be_paid_silently() {
    let sim = start(PlatformMode::Certificate).await;
    prepay_jsapi(&sim, "ORDER_close_01", 10, NO_RECEIVER).await;
    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/out-trade-no/ORDER_close_01/close",
        Some(r#"{"mchid":"1900000001"}"#),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(
        r.verifies_with(&sim.platform_public_key_pem()),
        "204 signs an empty body"
    );
    let q = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/ORDER_close_01?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!(q.json()["trade_state"], "CLOSED");
    let r = prepay_jsapi(&sim, "ORDER_close_01", 10, NO_RECEIVER).await;
    assert_eq!((r.status, r.code().as_str()), (400, "ORDERCLOSED"));
    assert!(matches!(
        sim.pay("ORDER_close_01").await,
        Err(wxpay_sim::SimError::InvalidState(_))
    ));
    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/out-trade-no/NOSUCHORDER/close",
        Some(r#"{"mchid":"1900000001"}"#),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (404, "ORDER_NOT_EXIST"));

    prepay_jsapi(&sim, "ORDER_silent_1", 10, NO_RECEIVER).await;
    sim.mark_paid_silently("ORDER_silent_1").await.unwrap();
    let o = sim.order("ORDER_silent_1").unwrap();
    assert_eq!(o.trade_state, "SUCCESS");
    assert!(o.transaction_id.is_some());
}

fn refund_body(
    out_trade_no: &str,
    out_refund_no: &str,
    refund: i64,
    total: i64,
    notify_url: &str,
) -> String {
    json!({
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "reason": "测试退款",
        "notify_url": notify_url,
        "amount": {"refund": refund, "total": total, "currency": "CNY"},
    })
    .to_string()
}

#[tokio::test]
async fn refunds_are_idempotent_and_bounded_by_the_order_total() {
    // Many refunds of one order in a row: without the one-minute spacing rule.
    let mut config = SimConfig::for_merchant(keys());
    config.refund_frequency_window = Duration::ZERO;
    let sim = Simulator::start(config).await.expect("simulator starts");
    let mut receiver = Receiver::start(200).await;
    let refunds = "/v3/refund/domestic/refunds";

    prepay_jsapi(&sim, "ORDER_refund_1", 100, NO_RECEIVER).await;
    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R1", 30, 100, &receiver.url)),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "INVALID_REQUEST"),
        "unpaid: {}",
        r.body
    );
    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("NOSUCHORDER", "R1", 30, 100, &receiver.url)),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (404, "RESOURCE_NOT_EXISTS"));

    sim.mark_paid_silently("ORDER_refund_1").await.unwrap();
    let tid = sim.order("ORDER_refund_1").unwrap().transaction_id.unwrap();

    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R1", 30, 99, &receiver.url)),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "PARAM_ERROR"),
        "total must match"
    );

    let r1 = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R1", 30, 100, &receiver.url)),
    )
    .await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    assert!(r1.verifies_with(&sim.platform_public_key_pem()));
    let v = r1.json();
    assert_eq!(v["status"], "PROCESSING");
    assert_eq!(v["out_refund_no"], "R1");
    assert_eq!(v["transaction_id"], json!(tid));
    assert_eq!(v["channel"], "ORIGINAL");
    assert_eq!(v["user_received_account"], "支付用户零钱");
    assert_eq!(v["amount"]["refund"], 30);
    assert_eq!(v["amount"]["total"], 100);
    assert_eq!(v["amount"]["payer_refund"], 30);
    assert_eq!(v["amount"]["discount_refund"], 0);
    assert_eq!(v["amount"]["currency"], "CNY");
    assert!(v.get("success_time").is_none());
    let refund_id = v["refund_id"].as_str().unwrap().to_string();

    // The same refund again answers the same refund and refunds nothing more.
    let again = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R1", 30, 100, &receiver.url)),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["refund_id"], json!(refund_id));
    assert_eq!(sim.refunds().len(), 1);

    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R2", 71, 100, &receiver.url)),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "INVALID_REQUEST"));
    assert_eq!(r.json()["message"], "申请退款金额超过订单可退金额");
    let by_tid = json!({
        "transaction_id": tid, "out_refund_no": "R2",
        "amount": {"refund": 70, "total": 100, "currency": "CNY"},
    })
    .to_string();
    let r = call(&sim, "POST", refunds, Some(&by_tid)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = call(
        &sim,
        "GET",
        "/v3/pay/transactions/out-trade-no/ORDER_refund_1?mchid=1900000001",
        None,
    )
    .await;
    assert_eq!(q.json()["trade_state"], "REFUND");
    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R3", 1, 100, &receiver.url)),
    )
    .await;
    assert_eq!(r.code(), "INVALID_REQUEST");

    // Completing R1 notifies its notify_url.
    let outcome = sim
        .complete_refund("R1", RefundOutcome::Success)
        .await
        .unwrap();
    assert_eq!(outcome.status, 200);
    let n = receiver.next().await;
    let (envelope, plain) = open_notification(&sim, &n);
    assert_eq!(envelope["event_type"], "REFUND.SUCCESS");
    assert_eq!(envelope["resource"]["original_type"], "refund");
    assert_eq!(envelope["resource"]["associated_data"], "refund");
    assert_eq!(plain["refund_status"], "SUCCESS");
    assert_eq!(plain["out_refund_no"], "R1");
    assert_eq!(plain["refund_id"], json!(refund_id));
    assert_eq!(plain["out_trade_no"], "ORDER_refund_1");
    assert_eq!(
        plain["amount"],
        json!({"total": 100, "refund": 30, "payer_total": 100, "payer_refund": 30})
    );
    assert!(plain["success_time"].as_str().unwrap().ends_with("+08:00"));
    assert!(
        sim.complete_refund("R1", RefundOutcome::Closed)
            .await
            .is_err(),
        "already final"
    );

    let q = call(&sim, "GET", "/v3/refund/domestic/refunds/R1", None).await;
    assert_eq!(q.json()["status"], "SUCCESS");
    assert!(q.json()["success_time"].is_string());

    // R2 was made without notify_url: the state changes, nobody is told.
    let r = sim.complete_refund("R2", RefundOutcome::Closed).await;
    assert!(matches!(r, Err(wxpay_sim::SimError::NoNotifyUrl(_))));
    assert_eq!(sim.refund("R2").unwrap().status, "CLOSED");
    // A closed refund frees its amount.
    let r = call(
        &sim,
        "POST",
        refunds,
        Some(&refund_body("ORDER_refund_1", "R4", 70, 100, &receiver.url)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn refunds_complete_automatically_when_configured() {
    let mut config = SimConfig::for_merchant(keys());
    config.auto_refund_after = Some(Duration::from_millis(50));
    let sim = Simulator::start(config).await.unwrap();
    let mut receiver = Receiver::start(204).await;
    prepay_jsapi(&sim, "ORDER_auto_01", 10, NO_RECEIVER).await;
    sim.mark_paid_silently("ORDER_auto_01").await.unwrap();
    let r = call(
        &sim,
        "POST",
        "/v3/refund/domestic/refunds",
        Some(&refund_body(
            "ORDER_auto_01",
            "RAUTO1",
            10,
            10,
            &receiver.url,
        )),
    )
    .await;
    assert_eq!(r.json()["status"], "PROCESSING");
    let n = receiver.next().await;
    let (envelope, plain) = open_notification(&sim, &n);
    assert_eq!(envelope["event_type"], "REFUND.SUCCESS");
    assert_eq!(plain["refund_status"], "SUCCESS");
    assert_eq!(sim.refund("RAUTO1").unwrap().status, "SUCCESS");
}

#[tokio::test]
async fn injected_faults_apply_to_the_matching_requests_only() {
    let sim = start(PlatformMode::Certificate).await;
    let key = sim.platform_public_key_pem();
    sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::status(500, "SYSTEM_ERROR", "系统错误"),
    ));
    let r = prepay_jsapi(&sim, "ORDER_fault_1", 1, NO_RECEIVER).await;
    assert_eq!((r.status, r.code().as_str()), (500, "SYSTEM_ERROR"));
    assert!(r.verifies_with(&key));
    assert!(sim.order("ORDER_fault_1").is_none(), "not processed");
    assert_eq!(
        prepay_jsapi(&sim, "ORDER_fault_1", 1, NO_RECEIVER)
            .await
            .status,
        200,
        "only once"
    );

    sim.inject_fault(Fault::new(
        "/v3/pay/transactions/out-trade-no/",
        1,
        FaultKind::BadSignature,
    ));
    let path = "/v3/pay/transactions/out-trade-no/ORDER_fault_1?mchid=1900000001";
    let r = call(&sim, "GET", path, None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("Wechatpay-Signature").is_some());
    assert!(!r.verifies_with(&key));

    sim.inject_fault(Fault::new("/v3/pay/", 1, FaultKind::Unsigned));
    let r = call(&sim, "GET", path, None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("Wechatpay-Signature").is_none());
    assert!(r.header("Wechatpay-Serial").is_none());

    sim.inject_fault(Fault::new(
        "/v3/pay/",
        1,
        FaultKind::Delay(Duration::from_millis(300)),
    ));
    let started = std::time::Instant::now();
    let r = call(&sim, "GET", path, None).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(r.verifies_with(&key));

    sim.inject_fault(Fault::new("/v3/pay/", 1, FaultKind::Disconnect));
    let err = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await;
    assert!(err.is_err(), "connection dropped");

    let r = call(&sim, "GET", path, None).await;
    assert!(r.verifies_with(&key), "faults are used up");
    assert_eq!(
        sim.request_count("/v3/pay/transactions/out-trade-no/ORDER_fault_1"),
        5
    );
}

#[tokio::test]
async fn notifications_can_be_built_from_any_plaintext() {
    let sim = start(PlatformMode::PublicKey).await;
    let mut receiver = Receiver::start(500).await;
    let n = sim.notification(NotificationEvent {
        event_type: "REFUND.ABNORMAL".into(),
        original_type: "refund".into(),
        plaintext: json!({"refund_status": "ABNORMAL"}),
    });
    assert_eq!(n.header("Wechatpay-Serial"), sim.public_key_id().as_deref());
    let outcome = sim.deliver(&n, &receiver.url).await.unwrap();
    assert_eq!(outcome.status, 500);
    let got = receiver.next().await;
    let (envelope, plain) = open_notification(&sim, &got);
    assert_eq!(envelope["summary"], "退款异常");
    assert_eq!(plain, json!({"refund_status": "ABNORMAL"}));
}

#[tokio::test]
async fn the_control_api_pays_and_shows_orders() {
    let sim = start(PlatformMode::Certificate).await;
    let mut receiver = Receiver::start(204).await;
    prepay_jsapi(&sim, "ORDER_ctrl_001", 1, &receiver.url).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/sim/pay/ORDER_ctrl_001", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["notified"], true);
    assert_eq!(v["status"], 204);
    receiver.next().await;

    let r = client
        .get(format!("{}/sim/orders/ORDER_ctrl_001", sim.base_url()))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["trade_state"], "SUCCESS");
    let r = client
        .get(format!("{}/sim/orders/NOPE", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        sim.request_count("/sim"),
        0,
        "the control API is not merchant traffic"
    );
}

/// WeChat Pay's refund rules that make a careless retry dangerous: refund requests for one
/// order must be a minute apart (a retry of an accepted refund included), and NOT_ENOUGH
/// is about the merchant's balance, not the order.
#[tokio::test]
async fn refund_requests_for_one_order_are_rate_limited_and_need_the_merchant_balance() {
    let mut config = SimConfig::for_merchant(keys());
    config.refund_frequency_window = Duration::from_millis(400);
    let sim = Simulator::start(config).await.expect("simulator starts");
    let refunds = "/v3/refund/domestic/refunds";
    prepay_jsapi(&sim, "ORDER_limited_1", 100, NO_RECEIVER).await;
    sim.mark_paid_silently("ORDER_limited_1").await.unwrap();
    let body =
        |no: &str, fen: i64| refund_body("ORDER_limited_1", no, fen, 100, "https://example.com/n");

    let first = call(&sim, "POST", refunds, Some(&body("RL1", 10))).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // The same refund retried at once is refused, and refused with a signed answer.
    let retry = call(&sim, "POST", refunds, Some(&body("RL1", 10))).await;
    assert_eq!(
        (retry.status, retry.code().as_str()),
        (429, "FREQUENCY_LIMITED")
    );
    assert!(retry.verifies_with(&sim.platform_public_key_pem()));
    // ... but the refund exists: the query finds it.
    let q = call(&sim, "GET", "/v3/refund/domestic/refunds/RL1", None).await;
    assert_eq!(q.status, 200);
    // A different refund of the same order within the window is refused too.
    let other = call(&sim, "POST", refunds, Some(&body("RL2", 10))).await;
    assert_eq!(other.code(), "FREQUENCY_LIMITED");
    assert!(
        sim.refund("RL2").is_none(),
        "a limited request refunds nothing"
    );

    tokio::time::sleep(Duration::from_millis(450)).await;
    let retry = call(&sim, "POST", refunds, Some(&body("RL1", 10))).await;
    assert_eq!(
        retry.status, 200,
        "after the window the same refund answers: {}",
        retry.body
    );
    assert_eq!(sim.refunds().len(), 1);

    // The merchant's account cannot pay 50 fen: NOT_ENOUGH, nothing refunded, and the
    // order's own remaining amount is not the reason.
    sim.set_merchant_balance(Some(40));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let poor = call(&sim, "POST", refunds, Some(&body("RL3", 50))).await;
    assert_eq!(
        (poor.status, poor.code().as_str()),
        (403, "NOT_ENOUGH"),
        "{}",
        poor.body
    );
    assert!(sim.refund("RL3").is_none());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let fits = call(&sim, "POST", refunds, Some(&body("RL3", 40))).await;
    assert_eq!(fits.status, 200, "{}", fits.body);
    assert_eq!(sim.merchant_balance(), Some(0));

    // The control API arms a late answer: the refund is accepted at once, answered later.
    sim.set_merchant_balance(None);
    let armed = reqwest::Client::new()
        .post(format!(
            "{}/sim/faults/refund-late?delay_ms=600&times=1",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let slow = {
        let sim = sim.clone();
        let body = body("RL4", 10);
        tokio::spawn(async move { call(&sim, "POST", refunds, Some(&body)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.refund("RL4").is_some(), "accepted before the answer");
    assert!(!slow.is_finished(), "the answer is still held back");
    assert_eq!(slow.await.unwrap().status, 200);
}
