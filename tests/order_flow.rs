//! Ordering end to end: a mini-program or web page creates an order through `wxpay_order`
//! and gets exactly what it needs to pay; bad input is refused before anything is written
//! or sent to WeChat Pay; WeChat Pay failures leave the order unpayable.

mod common;

use std::time::Duration;

use common::{Harness, StoreKind, SECRET};
use serde_json::{json, Value};
use wxpay_shared::store::OrderStatus;
use wxpay_sim::crypto::Verifier;
use wxpay_sim::{Fault, FaultKind};

both_stores!(
    jsapi_order_gives_a_pay_sign_the_merchant_key_verifies,
    native_h5_and_app_orders_give_what_each_client_needs,
    prices_come_from_the_backend_and_stay_warm,
    only_trusted_callers_set_the_amount,
    bad_input_is_refused_before_anything_is_written_or_sent,
    prepay_failures_leave_the_order_unpayable,
    a_callfunction_event_orders_like_http,
);

type Headers = Vec<(&'static str, &'static str)>;

fn verify(env: &Harness, message: &str, signature: &str) -> bool {
    Verifier::from_pem(&env.keys.public_key_pem)
        .expect("merchant public key")
        .verify_base64(message.as_bytes(), signature)
}

async fn jsapi_order_gives_a_pay_sign_the_merchant_key_verifies(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let (status, body) = h
        .call_as("o_user_1", json!({ "type": "wxpay_order", "packageType": "premium", "userId": 42, "generationId": "gen-7" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(body["msg"], "ok");
    let d = &body["data"];
    let no = d["outTradeNo"].as_str().unwrap();
    assert!(wxpay_shared::util::is_valid_reference(no), "{no}");
    assert_eq!(d["signType"], "RSA");
    assert_eq!(d["package"], d["packageVal"]);
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        d["appId"].as_str().unwrap(),
        d["timeStamp"].as_str().unwrap(),
        d["nonceStr"].as_str().unwrap(),
        d["package"].as_str().unwrap()
    );
    assert!(
        verify(&h, &message, d["paySign"].as_str().unwrap()),
        "paySign verifies"
    );
    assert!(!verify(
        &h,
        &message.replace("prepay_id", "prepay_ix"),
        d["paySign"].as_str().unwrap()
    ));

    // WeChat Pay got the price-list amount and the payer; the row waits as pending.
    let sim_order = h.sim.order(no).expect("WeChat Pay knows the order");
    assert_eq!(sim_order.amount_total, 2990);
    assert_eq!(sim_order.payer_openid.as_deref(), Some("o_user_1"));
    assert_eq!(d["package"], format!("prepay_id={}", sim_order.prepay_id));
    let order = h.order(no).await;
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.amount, 2990);
    assert_eq!(order.openid.as_deref(), Some("o_user_1"));
    assert_eq!(order.user_id.as_deref(), Some("42"));
    assert_eq!(order.generation_id.as_deref(), Some("gen-7"));
    assert_eq!(order.trade_type, "JSAPI");
    let logs = h.store.logs_for_order(no).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.log_type == "order" && l.amount_total == Some(2990)),
        "{logs:?}"
    );
}

async fn native_h5_and_app_orders_give_what_each_client_needs(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let (status, body) = h
        .call(json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "NATIVE" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap();
    assert_eq!(
        body["data"]["codeUrl"].as_str(),
        h.sim.order(no).unwrap().code_url.as_deref()
    );
    assert!(body["data"]["codeUrl"]
        .as_str()
        .unwrap()
        .starts_with("weixin://"));
    assert_eq!(h.order(no).await.amount, 1);

    let (status, body) = h
        .call(json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "H5" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["h5Url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));

    let (status, body) = h
        .call(json!({ "type": "wxpay_order", "packageType": "premium", "tradeType": "APP" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["package"], "Sign=WXPay");
    assert_eq!(d["partnerid"], h.sim.config().mchid);
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        d["appid"].as_str().unwrap(),
        d["timestamp"].as_str().unwrap(),
        d["noncestr"].as_str().unwrap(),
        d["prepayid"].as_str().unwrap()
    );
    assert!(
        verify(&h, &message, d["sign"].as_str().unwrap()),
        "APP sign verifies"
    );
}

async fn prices_come_from_the_backend_and_stay_warm(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.backend
        .set_prices(json!({ "basic": 0.01, "premium": 19.9, "vip": 0.29 }));
    let a = h.create_order("o_p", "vip").await;
    let b = h.create_order("o_p", "premium").await;
    assert_eq!(h.order(&a).await.amount, 29, "0.29 yuan is 29 fen, not 28");
    assert_eq!(h.order(&b).await.amount, 1990);
    assert_eq!(
        h.backend.price_requests(),
        1,
        "the warm instance asked for prices once"
    );

    // A package the backend does not list is refused and the message lists what exists.
    let (status, body) = h
        .call_as(
            "o_p",
            json!({ "type": "wxpay_order", "packageType": "gold" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 40004);
    assert!(body["msg"].as_str().unwrap().contains("vip"), "{body}");
}

async fn only_trusted_callers_set_the_amount(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 1234, "description": "Custom top-up" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap();
    let order = h.order(no).await;
    assert_eq!(order.amount, 1234);
    assert_eq!(order.description, "Custom top-up");
    assert_eq!(h.sim.order(no).unwrap().amount_total, 1234);

    // A trusted server may order on behalf of a user by openid.
    let (status, body) = h
        .call_trusted(
            json!({ "type": "wxpay_order", "packageType": "basic", "openid": "o_on_behalf" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap();
    assert_eq!(h.order(no).await.openid.as_deref(), Some("o_on_behalf"));
}

async fn bad_input_is_refused_before_anything_is_written_or_sent(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let user = [
        ("X-WX-OPENID", "o_user"),
        ("X-WX-APPID", wxpay_sim::DEFAULT_APPID),
    ];
    // (what, headers, body, expected status, what the message must mention)
    let cases: Vec<(&str, Headers, String, u16, &str)> = vec![
        ("malformed JSON", user.to_vec(), "{\"type\":".into(), 400, "not valid JSON"),
        ("not an object", user.to_vec(), "[1,2]".into(), 400, "JSON object"),
        ("empty body", user.to_vec(), "".into(), 400, "empty"),
        ("missing type", user.to_vec(), json!({ "packageType": "basic" }).to_string(), 400, "`type` is missing"),
        ("unknown type", user.to_vec(), json!({ "type": "wxpay_steal" }).to_string(), 400, "unknown type"),
        ("type not a string", user.to_vec(), json!({ "type": 7 }).to_string(), 400, "`type`"),
        ("unknown package", user.to_vec(), json!({ "type": "wxpay_order", "packageType": "gold" }).to_string(), 400, "unknown packageType"),
        ("no package", user.to_vec(), json!({ "type": "wxpay_order" }).to_string(), 400, "packageType"),
        ("package not a string", user.to_vec(), json!({ "type": "wxpay_order", "packageType": 5 }).to_string(), 400, "packageType"),
        ("bad tradeType", user.to_vec(), json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "CASH" }).to_string(), 400, "tradeType"),
        ("JSAPI without openid", vec![], json!({ "type": "wxpay_order", "packageType": "basic" }).to_string(), 401, "openid"),
        ("untrusted amount", user.to_vec(), json!({ "type": "wxpay_order", "amount": 1 }).to_string(), 403, "trusted"),
        ("untrusted openid field", vec![], json!({ "type": "wxpay_order", "packageType": "basic", "openid": "o_victim" }).to_string(), 403, "openid"),
        ("wrong secret", vec![("X-Internal-Secret", "guess")], json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "NATIVE" }).to_string(), 403, "secret is wrong"),
        ("zero amount", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 0 }).to_string(), 400, "whole number of fen"),
        ("negative amount", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": -5 }).to_string(), 400, "whole number of fen"),
        ("fractional amount", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 9.99 }).to_string(), 400, "whole number of fen"),
        ("huge amount", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 1_000_001 }).to_string(), 400, "whole number of fen"),
        ("amount as string", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": "100" }).to_string(), 400, "whole number of fen"),
        ("overlong description", vec![("X-Internal-Secret", SECRET)], json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 100, "description": "x".repeat(200) }).to_string(), 400, "description"),
        ("oversized body", user.to_vec(), json!({ "type": "wxpay_order", "packageType": "basic", "pad": "x".repeat(70_000) }).to_string(), 413, "larger than"),
        ("callback by type", user.to_vec(), json!({ "type": "wxpay_order_callback" }).to_string(), 400, "notifications"),
    ];
    for (what, headers, body, want_status, want_msg) in cases {
        let (status, text) = h.post_raw("/pay", &headers, body).await;
        let env: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: envelope is JSON: {text}"));
        assert_eq!(status, want_status, "{what}: {text}");
        assert!(env["code"].as_i64().unwrap() >= 40000, "{what}: {text}");
        let msg = env["msg"].as_str().unwrap();
        assert!(
            msg.contains(want_msg),
            "{what}: `{msg}` should mention `{want_msg}`"
        );
        assert!(
            !msg.contains(SECRET) && !text.contains("PRIVATE"),
            "{what}: leaks a secret"
        );
    }
    assert_eq!(
        h.store.count_orders().await.unwrap(),
        0,
        "no order row written"
    );
    assert_eq!(
        h.sim.request_count("/v3/pay"),
        0,
        "nothing sent to WeChat Pay"
    );

    // Not POST: a clear 405; GET /healthz answers without touching WeChat Pay.
    let resp = h.http.get(h.pay_url()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let resp = h
        .http
        .get(format!("{}/healthz", h.router_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(h.sim.request_count(""), 0);
}

async fn prepay_failures_leave_the_order_unpayable(kind: StoreKind) {
    let Some(h) = Harness::start_impatient(kind).await else {
        return;
    };
    let order = json!({ "type": "wxpay_order", "packageType": "basic" });
    // Certificates first, so the faults below hit prepay itself.
    let first = h.create_order("o_f", "basic").await;

    // WeChat Pay's 5xx, twice: one documented retry, then a 502.
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        2,
        FaultKind::status(500, "SYSTEM_ERROR", "系统错误"),
    ));
    let (status, body) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("SYSTEM_ERROR"),
        "{body}"
    );

    // A business refusal is the caller's 400, with WeChat Pay's code in the message.
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::status(400, "PARAM_ERROR", "参数错误"),
    ));
    let (status, body) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("PARAM_ERROR"),
        "{body}"
    );

    // Too slow: 504, not a hung function.
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::Delay(Duration::from_secs(3)),
    ));
    let (status, body) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 504, "{body}");

    // An answer whose signature does not verify is never used.
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::BadSignature,
    ));
    let (status, body) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.get("data").is_none(), "no prepay handed out: {body}");
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::Unsigned,
    ));
    let (status, _) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 502);
    // Signed with RSA, but naming another algorithm: refused, not checked the wrong way.
    h.sim.inject_fault(Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        FaultKind::SignatureType("WECHATPAY2-SM2-WITH-SM3".into()),
    ));
    let (status, body) = h.call_as("o_f", order.clone()).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.get("data").is_none(), "no prepay handed out: {body}");

    // Every failed order is marked so nobody mistakes it for payable: those WeChat Pay saw
    // (delayed, badly signed, unsigned, wrongly named answers) and those it refused alike.
    assert_eq!(h.store.count_orders().await.unwrap(), 7);
    let seen_by_wechat: Vec<String> = h
        .sim
        .orders()
        .into_iter()
        .map(|o| o.out_trade_no)
        .filter(|no| *no != first)
        .collect();
    assert_eq!(seen_by_wechat.len(), 4);
    for no in &seen_by_wechat {
        assert_eq!(h.order(no).await.status, OrderStatus::Failed, "{no}");
    }
    assert_eq!(h.order(&first).await.status, OrderStatus::Pending);
}

async fn a_callfunction_event_orders_like_http(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let event = json!({
        "type": "wxpay_order",
        "packageType": "basic",
        "userInfo": { "appId": h.sim.config().appid, "openId": "o_from_miniprogram" }
    });
    let answer = wxpay_shared::runtime::handle_raw_event(&h.app, event).await;
    assert_eq!(answer["code"], 0, "{answer}");
    let no = answer["data"]["outTradeNo"].as_str().unwrap();
    assert_eq!(
        h.order(no).await.openid.as_deref(),
        Some("o_from_miniprogram")
    );

    // The secret travels in the event for trusted direct invocations; a wrong one is refused.
    let answer = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 500, "internalSecret": "nope" }),
    )
    .await;
    assert_eq!(answer["code"], 40300, "{answer}");
    let answer = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "type": "wxpay_order", "tradeType": "NATIVE", "amount": 500, "internalSecret": SECRET }),
    )
    .await;
    assert_eq!(answer["code"], 0, "{answer}");
    let answer = wxpay_shared::runtime::handle_raw_event(&h.app, json!("wxpay_order")).await;
    assert_eq!(answer["code"], 40001, "{answer}");
}

#[tokio::test]
async fn an_order_with_the_database_down_is_refused_before_wechat_pay_hears_of_it() {
    let h = Harness::start(StoreKind::Sqlite).await.unwrap();
    let config = wxpay_shared::config::Config::from_vars(h.vars.clone()).unwrap();
    let dead = wxpay_shared::store::open("mysql://root:s3cr3t-pw@127.0.0.1:1/gone").unwrap();
    let app = wxpay_shared::state::App::with_store(config, dead, wxpay_shared::handlers::ALL_TYPES);
    let answer = wxpay_shared::runtime::handle_raw_event(
        &app,
        json!({ "type": "wxpay_order", "packageType": "basic",
                "userInfo": { "appId": h.sim.config().appid, "openId": "o_db" } }),
    )
    .await;
    assert_eq!(answer["code"], 50010, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("retry"),
        "{answer}"
    );
    assert!(!answer.to_string().contains("s3cr3t-pw"));
    assert_eq!(
        h.sim.request_count("/v3/pay"),
        0,
        "no prepay without a stored order"
    );
}
