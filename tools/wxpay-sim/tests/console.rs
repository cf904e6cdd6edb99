//! The console and the cashier over plain HTTP: what they render is escaped, other web
//! pages cannot press their buttons, and the cashier verifies like the WeChat client.
//! (tests/sandbox_console.rs at the workspace root drives them in a real browser.)

mod common;

use common::*;
use serde_json::{json, Value};
use wxpay_sim::PlatformMode;

const NO_RECEIVER: &str = "http://127.0.0.1:9/unused";

async fn get(sim: &wxpay_sim::Simulator, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}{path}", sim.base_url()))
        .await
        .expect("console answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn post(
    sim: &wxpay_sim::Simulator,
    path: &str,
    headers: &[(&str, String)],
    form: Option<&[(&str, &str)]>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", sim.base_url()));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(form) = form {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let r = req.send().await.expect("answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn everything_the_console_shows_is_escaped() {
    let sim = start(PlatformMode::Certificate).await;
    let mut merchant = Scripted::start(vec![Answer::with_body(
        500,
        "<script>alert('answer')</script>",
    )])
    .await;
    let body = json!({
        "appid": sim.config().appid, "mchid": sim.config().mchid,
        "description": "<script>alert('description')</script>",
        "attach": "<img src=x onerror=alert('attach')>",
        "out_trade_no": "ORDER_xss_0001", "notify_url": merchant.url,
        "amount": {"total": 2990}, "payer": {"openid": "o<b>evil</b>"},
    })
    .to_string();
    let r = call(&sim, "POST", "/v3/pay/transactions/jsapi", Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sim.pay("ORDER_xss_0001").await.unwrap().status, 500);
    merchant.next().await;

    for path in ["/", "/console/live"] {
        let (status, page) = get(&sim, path).await;
        assert_eq!(status, 200);
        assert!(page.contains("ORDER_xss_0001"), "{path}");
        assert!(page.contains("29.90"), "{path}: the amount in yuan");
        for raw in ["<script>alert(", "<img src=x", "<b>evil</b>"] {
            assert!(!page.contains(raw), "{path} renders {raw} as markup");
        }
        for escaped in [
            "&lt;script&gt;alert('description')",
            "&lt;img src=x onerror=alert('attach')&gt;",
            "&lt;script&gt;alert('answer')&lt;/script&gt;",
            "o&lt;b&gt;evil&lt;/b&gt;",
        ] {
            assert!(page.contains(escaped), "{path} does not show {escaped}");
        }
    }
    let (_, page) = get(&sim, "/").await;
    assert!(page.contains("No money moves"), "the sandbox banner");
}

#[tokio::test]
async fn other_web_pages_cannot_press_the_buttons() {
    let sim = start(PlatformMode::Certificate).await;
    prepay_jsapi(&sim, "ORDER_csrf_0001", 1, NO_RECEIVER).await;
    let host = sim.addr().to_string();
    let own = format!("http://{host}");

    // A page elsewhere POSTs with the browser's own headers; a rebound DNS name too.
    for headers in [
        vec![
            ("Origin", "https://evil.example".to_string()),
            ("Sec-Fetch-Site", "cross-site".to_string()),
        ],
        vec![("Origin", "null".to_string())],
        vec![
            ("Host", format!("evil.example:{}", sim.addr().port())),
            (
                "Origin",
                format!("http://evil.example:{}", sim.addr().port()),
            ),
            ("Sec-Fetch-Site", "same-origin".to_string()),
        ],
    ] {
        let (status, body) = post(&sim, "/sim/pay/ORDER_csrf_0001", &headers, None).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        let (status, _) = post(&sim, "/cashier/pay", &headers, Some(&[("params", "{}")])).await;
        assert_eq!(status, 403, "{headers:?}");
    }
    assert_eq!(sim.order("ORDER_csrf_0001").unwrap().trade_state, "NOTPAY");

    // The console's own button, and curl (no browser headers), still work.
    let (status, body) = post(
        &sim,
        "/sim/fail/ORDER_csrf_0001",
        &[("Origin", own), ("Sec-Fetch-Site", "same-origin".into())],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.order("ORDER_csrf_0001").unwrap().trade_state,
        "PAYERROR"
    );
    prepay_jsapi(&sim, "ORDER_csrf_0002", 1, NO_RECEIVER).await;
    let (status, _) = post(&sim, "/sim/close/ORDER_csrf_0002", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(sim.order("ORDER_csrf_0002").unwrap().trade_state, "CLOSED");
    let (status, _) = post(&sim, "/sim/close/ORDER_csrf_0002", &[], None).await;
    assert_eq!(status, 409, "only NOTPAY orders close");
    assert_eq!(
        sim.request_count(""),
        2,
        "console traffic is not merchant traffic"
    );
}

/// What a merchant hands `wx.requestPayment` (JSAPI) for a prepay id.
fn jsapi_params(sim: &wxpay_sim::Simulator, prepay_id: &str, private_pem: &str) -> Value {
    let appid = sim.config().appid.clone();
    let ts = now().to_string();
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let package = format!("prepay_id={prepay_id}");
    let sig = sign_with(
        private_pem,
        format!("{appid}\n{ts}\n{nonce}\n{package}\n").as_bytes(),
    );
    json!({"appId": appid, "timeStamp": ts, "nonceStr": nonce, "package": package,
           "signType": "RSA", "paySign": sig})
}

fn reasons(page: &str) -> Vec<String> {
    page.split("<li class=\"reason\">")
        .skip(1)
        .filter_map(|s| s.split("</li>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_cashier_verifies_like_the_wechat_client_then_pays() {
    let sim = start(PlatformMode::Certificate).await;
    let mut merchant = Scripted::start(vec![Answer::status(204)]).await;
    let r = prepay_jsapi(&sim, "ORDER_cashier_01", 2990, &merchant.url).await;
    let prepay_id = r.json()["prepay_id"].as_str().unwrap().to_string();
    let good = jsapi_params(&sim, &prepay_id, &keys().private_key_pem);

    let check = |params: Value| {
        let sim = sim.clone();
        async move {
            let text = params.to_string();
            post(&sim, "/cashier", &[], Some(&[("params", text.as_str())])).await
        }
    };
    // Each way it can be wrong is named.
    let other_key = wxpay_sim::keys::generate_rsa_pkcs8_pem();
    let mut tampered = good.clone();
    tampered["paySign"] = jsapi_params(&sim, &prepay_id, &other_key)["paySign"].clone();
    let mut wrong_app = good.clone();
    wrong_app["appId"] = json!("wx0000000000000000");
    let mut unknown = good.clone();
    unknown["package"] = json!("prepay_id=wx_never_issued");
    let mut millis = good.clone();
    millis["timeStamp"] = json!(format!("{}000", now()));
    for (params, expected) in [
        (tampered, "does not verify under the merchant's API key"),
        (wrong_app, "wrong appid"),
        (unknown, "unknown prepay id"),
        (millis, "milliseconds"),
        (json!({"appId": "x"}), "neither"),
        (json!("not an object"), "JSON object"),
    ] {
        let (status, page) = check(params.clone()).await;
        assert_eq!(status, 422, "{params}");
        assert!(page.contains("does not verify"), "{params}");
        assert!(!page.contains("id=\"pay\""), "no way to pay: {params}");
        let why = reasons(&page).join(" | ");
        assert!(why.contains(expected), "{params}: {why}");
    }
    assert_eq!(sim.order("ORDER_cashier_01").unwrap().trade_state, "NOTPAY");

    let (status, page) = check(good.clone()).await;
    assert_eq!(status, 200, "{}", reasons(&page).join(" | "));
    assert!(page.contains("The signature verifies"));
    assert!(page.contains("¥29.90"));
    assert!(page.contains("测试商品"), "the description");
    let (status, page) = post(
        &sim,
        "/cashier/pay",
        &[],
        Some(&[("params", good.to_string().as_str())]),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("the merchant answered 204"), "{page}");
    merchant.next().await;
    assert_eq!(
        sim.order("ORDER_cashier_01").unwrap().trade_state,
        "SUCCESS"
    );

    // Paid: the same parameters no longer pay.
    let (status, page) = check(good).await;
    assert_eq!(status, 422);
    assert!(reasons(&page).join(" ").contains("is SUCCESS"), "{page}");
}

#[tokio::test]
async fn the_cashier_takes_app_parameters_too() {
    let sim = start(PlatformMode::Certificate).await;
    let c = sim.config().clone();
    let body = json!({
        "appid": c.appid, "mchid": c.mchid, "description": "App 商品",
        "out_trade_no": "ORDER_cashier_app", "notify_url": NO_RECEIVER, "amount": {"total": 1},
    })
    .to_string();
    let r = call(&sim, "POST", "/v3/pay/transactions/app", Some(&body)).await;
    let prepay_id = r.json()["prepay_id"].as_str().unwrap().to_string();
    let ts = now().to_string();
    let nonce = "1101000000140429eb40476f8896f4c9";
    let sign = sign_with(
        &keys().private_key_pem,
        format!("{}\n{ts}\n{nonce}\n{prepay_id}\n", c.appid).as_bytes(),
    );
    let params = json!({"appid": c.appid, "partnerid": c.mchid, "prepayid": prepay_id,
        "package": "Sign=WXPay", "noncestr": nonce, "timestamp": ts, "sign": sign});
    let (status, page) = post(
        &sim,
        "/cashier",
        &[],
        Some(&[("params", params.to_string().as_str())]),
    )
    .await;
    assert_eq!(status, 200, "{}", reasons(&page).join(" | "));
    assert!(page.contains("App payment"));
    assert!(page.contains("¥0.01"));

    let mut wrong = params.clone();
    wrong["partnerid"] = json!("1900000002");
    wrong["package"] = json!("prepay_id=x");
    let (status, page) = post(
        &sim,
        "/cashier",
        &[],
        Some(&[("params", wrong.to_string().as_str())]),
    )
    .await;
    assert_eq!(status, 422);
    let why = reasons(&page).join(" | ");
    assert!(
        why.contains("partnerid") && why.contains("Sign=WXPay"),
        "{why}"
    );
}

#[tokio::test]
async fn each_kind_of_order_and_refund_shows_what_moves_it_on() {
    let sim = start(PlatformMode::Certificate).await;
    let c = sim.config().clone();
    let base = json!({"appid": c.appid, "mchid": c.mchid, "description": "d",
        "notify_url": NO_RECEIVER, "amount": {"total": 100}});
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
        Some(&with("ORDER_kind_nat", json!({}))),
    )
    .await;
    let code_url = r.json()["code_url"].as_str().unwrap().to_string();
    let h5 = json!({"scene_info": {"payer_client_ip": "203.0.113.9", "h5_info": {"type": "Wap"}}});
    let r = call(
        &sim,
        "POST",
        "/v3/pay/transactions/h5",
        Some(&with("ORDER_kind_h5x", h5)),
    )
    .await;
    let h5_url = r.json()["h5_url"].as_str().unwrap().to_string();
    prepay_jsapi(&sim, "ORDER_kind_paid", 100, NO_RECEIVER).await;
    sim.mark_paid_silently("ORDER_kind_paid").await.unwrap();
    let body = json!({"out_trade_no": "ORDER_kind_paid", "out_refund_no": "RF_kind_01",
        "amount": {"refund": 30, "total": 100, "currency": "CNY"}})
    .to_string();
    assert_eq!(
        call(&sim, "POST", "/v3/refund/domestic/refunds", Some(&body))
            .await
            .status,
        200
    );

    let (_, page) = get(&sim, "/console/live").await;
    let card = |attr: &str, no: &str| -> String {
        let start = page.find(&format!("{attr}=\"{no}\"")).expect(no);
        let end = page[start + 1..]
            .find("<div class=\"card")
            .map_or(page.len(), |e| start + 1 + e);
        page[start..end].to_string()
    };
    let native = card("data-out-trade-no", "ORDER_kind_nat");
    assert!(
        native.contains("<svg") && native.contains(&code_url),
        "{native}"
    );
    for label in [">Pay<", ">Pay silently<", ">Fail<", ">Close<"] {
        assert!(native.contains(label), "{label}");
    }
    let h5 = card("data-out-trade-no", "ORDER_kind_h5x");
    assert!(h5.contains(&h5_url.replace('&', "&amp;")), "{h5}");
    assert!(!h5.contains("<svg"));
    let paid = card("data-out-trade-no", "ORDER_kind_paid");
    assert!(paid.contains("REFUND") && !paid.contains(">Pay<"), "{paid}");
    let refund = card("data-out-refund-no", "RF_kind_01");
    assert!(
        refund.contains("/sim/refunds/RF_kind_01/complete?status=SUCCESS"),
        "{refund}"
    );
    for label in [">Complete<", ">Abnormal<", ">Close<"] {
        assert!(refund.contains(label), "{label}");
    }
    // Newest first.
    let at = |no: &str| page.find(no).unwrap();
    assert!(
        at("ORDER_kind_paid") < at("ORDER_kind_h5x") && at("ORDER_kind_h5x") < at("ORDER_kind_nat")
    );
}
