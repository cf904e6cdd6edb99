//! An attacker against the local runner as it starts by default (no gateway in front,
//! `TRUST_OPENID_HEADER` off): the victim's openid in `X-WX-OPENID`, in a forged
//! `userInfo`, in a dressed-up event, or with a wrong secret. None of them acts as the
//! victim. And the payer's IP for H5 orders is the one the platform's edge saw.

mod common;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_shared::runtime::handle_lambda_event;
use wxpay_shared::store::OrderStatus;

both_stores!(nobody_acts_as_the_victim_on_the_local_runner);

const VICTIM: &str = "o_victim_0000000000000001";

/// The local runner as `cargo run -p wxpay-local` starts it: header trust off.
async fn local_runner(kind: StoreKind) -> Option<Harness> {
    Harness::start_with(kind, |o| {
        o.extra_vars.retain(|(k, _)| k != "TRUST_OPENID_HEADER");
    })
    .await
}

async fn nobody_acts_as_the_victim_on_the_local_runner(kind: StoreKind) {
    let Some(h) = local_runner(kind).await else {
        return;
    };
    // The victim's order, made for them by the trusted backend.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_order", "packageType": "basic", "openid": VICTIM }))
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap().to_string();
    let query = json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no });
    let close = json!({ "type": "wxpay_close_order", "outTradeNo": no });

    // 1. The header: refused, naming the setting.
    for call in [&query, &close] {
        let (status, body) = h.call_as(VICTIM, call.clone()).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (403, Some(40300)),
            "{body}"
        );
        assert!(body["msg"]
            .as_str()
            .unwrap()
            .contains("TRUST_OPENID_HEADER"));
        assert!(body.get("data").is_none());
    }
    // ... a JSAPI order "for" the victim too.
    let (status, _) = h
        .call_as(
            VICTIM,
            json!({ "type": "wxpay_order", "packageType": "basic" }),
        )
        .await;
    assert_eq!(status, 403);

    // 2. A forged userInfo in the body is no identity.
    let mut forged = close.clone();
    forged["userInfo"] = json!({ "appId": wxpay_sim::DEFAULT_APPID, "openId": VICTIM });
    let (status, body) = h.call(forged).await;
    assert_eq!(status, 401, "{body}");

    // 3. A dressed-up event posted over HTTP is just a body with odd fields.
    let dressed = json!({
        "type": "wxpay_close_order", "outTradeNo": no,
        "httpMethod": "POST", "path": "/pay", "requestContext": { "identity": {} },
        "headers": { "x-wx-openid": VICTIM },
    });
    let (status, body) = h.call(dressed).await;
    assert_eq!(status, 401, "{body}");

    // 4. A wrong secret naming the victim: refused, not downgraded.
    let mut claim = close.clone();
    claim["openid"] = json!(VICTIM);
    let (status, body) = h
        .call_with(&[("X-Internal-Secret", "guessed-secret-000000000")], claim)
        .await;
    assert_eq!(status, 403, "{body}");

    assert_eq!(h.order(&no).await.status, OrderStatus::Pending, "untouched");
    assert_eq!(
        h.sim.request_count("/v3/pay/transactions/out-trade-no"),
        0,
        "nobody reached WeChat Pay about the victim's order"
    );
}

fn h5_order_body() -> String {
    json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "H5" }).to_string()
}

async fn payer_ip_of(h: &Harness, answer: Value) -> Option<String> {
    let body: Value = match &answer["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        _ => answer.clone(),
    };
    let no = body["data"]["outTradeNo"]
        .as_str()
        .unwrap_or_else(|| panic!("an H5 order: {answer}"));
    h.sim.order(no).unwrap().payer_client_ip
}

/// Each shape's payer IP comes from what its platform vouches for; the first
/// `X-Forwarded-For` entry, which the client writes, is never it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_h5_payer_ip_is_the_one_the_platform_saw() {
    let h = Harness::start(StoreKind::Sqlite).await.expect("harness");
    let forged = "6.6.6.6, 203.0.113.9";

    // ALB appends the address it saw as the last entry.
    let alb = json!({
        "requestContext": { "elb": { "targetGroupArn": "arn:aws:elasticloadbalancing:ap-east-1:123456789012:targetgroup/wxpay/0123456789abcdef" } },
        "httpMethod": "POST", "path": "/pay", "queryStringParameters": {},
        "headers": { "content-type": "application/json", "x-forwarded-for": forged },
        "body": h5_order_body(), "isBase64Encoded": false
    });
    let answer = handle_lambda_event(&h.app, alb).await;
    assert_eq!(
        payer_ip_of(&h, answer).await.as_deref(),
        Some("203.0.113.9")
    );

    // API Gateway v2: requestContext.http.sourceIp, whatever the headers say.
    let v2 = json!({
        "version": "2.0", "routeKey": "POST /pay", "rawPath": "/pay", "rawQueryString": "",
        "headers": { "content-type": "application/json", "x-forwarded-for": "6.6.6.6" },
        "requestContext": { "http": { "method": "POST", "path": "/pay", "protocol": "HTTP/1.1", "sourceIp": "198.51.100.24", "userAgent": "x" },
            "accountId": "123456789012", "apiId": "a1", "domainName": "a1.example", "domainPrefix": "a1",
            "requestId": "r1", "routeKey": "POST /pay", "stage": "$default", "time": "12/Mar/2026:08:00:00 +0000", "timeEpoch": 1773302400000u64 },
        "body": h5_order_body(), "isBase64Encoded": false
    });
    let answer = handle_lambda_event(&h.app, v2).await;
    assert_eq!(
        payer_ip_of(&h, answer).await.as_deref(),
        Some("198.51.100.24")
    );

    // Local HTTP behind the platform's proxy (a loopback peer): the entry it appended.
    let (status, body) = h
        .call_with(
            &[("X-Forwarded-For", forged)],
            serde_json::from_str(&h5_order_body()).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(payer_ip_of(&h, body).await.as_deref(), Some("203.0.113.9"));
}
