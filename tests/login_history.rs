//! Logging in with a `wx.login()` code, paying as that user, then reading the orders back:
//! the payer lists their own orders page by page, an operator reads the totals, and nobody
//! sees another user's orders or passes a token we did not issue.

mod common;

use std::time::Duration;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_shared::session::SessionTokens;

both_stores!(
    a_user_logs_in_pays_and_lists_their_orders,
    tokens_that_are_expired_altered_or_foreign_are_refused,
    wechat_login_errors_become_clear_answers,
    pages_cover_every_order_once_and_only_the_callers,
    operators_read_totals_per_status_with_filters,
);

fn login(code: &str) -> Value {
    json!({ "type": "wxpay_login", "code": code })
}

/// Logs `openid` in through the simulator's `wx.login()` and returns the session token.
async fn log_in(h: &Harness, openid: &str) -> String {
    let code = h.sim.login_code(openid);
    let (status, body) = h.call(login(&code)).await;
    assert_eq!(status, 200, "login: {body}");
    body["data"]["sessionToken"]
        .as_str()
        .expect("sessionToken")
        .to_string()
}

async fn call_with_token(h: &Harness, token: &str, body: Value) -> (u16, Value) {
    h.call_with(&[("Authorization", &format!("Bearer {token}"))], body)
        .await
}

fn var<'a>(h: &'a Harness, name: &str) -> &'a str {
    h.vars
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .expect("variable set")
}

fn list(extra: Value) -> Value {
    let mut call = json!({ "type": "wxpay_order_list" });
    if let (Some(obj), Value::Object(more)) = (call.as_object_mut(), extra) {
        obj.extend(more);
    }
    call
}

async fn a_user_logs_in_pays_and_lists_their_orders(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let code = h.sim.login_code("o_login_user");
    let (status, body) = h.call(login(&code)).await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_object().expect("data");
    assert_eq!(data.len(), 2, "only the token and its lifetime: {body}");
    assert_eq!(body["data"]["expiresIn"], 86_400);
    assert!(!body.to_string().contains("session_key"), "{body}");
    let token = body["data"]["sessionToken"].as_str().unwrap().to_string();

    // A JSAPI order for the logged-in user, paid by the simulator.
    let order = json!({ "type": "wxpay_order", "packageType": "premium" });
    let (status, body) = call_with_token(&h, &token, order).await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap().to_string();
    assert_eq!(
        h.sim.order(&no).unwrap().payer_openid.as_deref(),
        Some("o_login_user")
    );
    assert_eq!(h.sim.pay(&no).await.unwrap().status, 204);

    // The user lists their orders over HTTP and, with the token in the event, as a raw call.
    let (status, body) = call_with_token(&h, &token, list(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let orders = body["data"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["outTradeNo"], no.as_str());
    assert_eq!(orders[0]["status"], "paid");
    assert_eq!(orders[0]["amount"], 2990);
    assert_eq!(body["data"]["nextCursor"], Value::Null);
    let raw = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "type": "wxpay_order_list", "sessionToken": token }),
    )
    .await;
    assert_eq!(raw["code"], 0, "{raw}");
    assert_eq!(raw["data"]["orders"][0]["outTradeNo"], no.as_str());

    // The same order seen through the query has the same fields.
    let query = json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no });
    let (_, queried) = call_with_token(&h, &token, query).await;
    let listed = &orders[0];
    let mut a: Vec<_> = listed.as_object().unwrap().keys().collect();
    let mut b: Vec<_> = queried["data"]["order"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // The code was good once.
    let (status, body) = h.call(login(&code)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("already used"),
        "{body}"
    );
}

async fn tokens_that_are_expired_altered_or_foreign_are_refused(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let victim = log_in(&h, "o_victim").await;
    let victims_order = {
        let order = json!({ "type": "wxpay_order", "packageType": "basic" });
        let (_, body) = call_with_token(&h, &victim, order).await;
        body["data"]["outTradeNo"].as_str().unwrap().to_string()
    };
    let appid = var(&h, "WECHAT_APPID").to_string();
    let secret = var(&h, "SESSION_SECRET").as_bytes().to_vec();
    let now = time::OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);

    let expired =
        SessionTokens::new(&secret, &appid, day).issue("o_victim", now - time::Duration::days(2));
    let foreign = SessionTokens::new(b"some-other-deployment-secret-0000", &appid, day)
        .issue("o_victim", now);
    let other_app = SessionTokens::new(&secret, "wx0000000000000000", day).issue("o_victim", now);
    // The attacker's own token with the victim's claims pasted in.
    let attacker = log_in(&h, "o_attacker").await;
    let (_, attacker_mac) = attacker.rsplit_once('.').unwrap();
    let (victim_signed, _) = victim.rsplit_once('.').unwrap();
    let spliced = format!("{victim_signed}.{attacker_mac}");

    let query = json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": victims_order });
    for (token, why) in [
        (expired.as_str(), "expired"),
        (foreign.as_str(), "not issued by this deployment"),
        (other_app.as_str(), "another app"),
        (spliced.as_str(), "not issued by this deployment"),
        ("garbage", "malformed"),
    ] {
        for call in [query.clone(), list(json!({}))] {
            let (status, body) = call_with_token(&h, token, call).await;
            assert_eq!(status, 401, "{why}: {body}");
            assert_eq!(body["code"], 40110, "{body}");
            assert!(body["msg"].as_str().unwrap().contains(why), "{why}: {body}");
        }
        let raw = wxpay_shared::runtime::handle_raw_event(
            &h.app,
            json!({ "type": "wxpay_order_list", "sessionToken": token }),
        )
        .await;
        assert_eq!(raw["code"], 40110, "{why}: {raw}");
    }

    // The victim's genuine token still works; a platform identity that disagrees with it
    // is refused rather than either one winning.
    assert_eq!(call_with_token(&h, &victim, query.clone()).await.0, 200);
    let raw = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "type": "wxpay_order_list", "sessionToken": attacker,
                "userInfo": { "appId": h.sim.config().appid, "openId": "o_victim" } }),
    )
    .await;
    assert_eq!(raw["code"], 40300, "{raw}");
    assert!(
        raw["msg"].as_str().unwrap().contains("different users"),
        "{raw}"
    );
}

async fn wechat_login_errors_become_clear_answers(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let cases = [
        (
            h.sim.failing_login_code("o_u", 40226),
            403,
            40320,
            "high-risk",
        ),
        (
            h.sim.failing_login_code("o_u", 45011),
            502,
            50212,
            "rate-limiting",
        ),
        (
            "never-issued-code".to_string(),
            400,
            40020,
            "invalid or expired",
        ),
    ];
    for (code, status, envelope, words) in cases {
        let (s, body) = h.call(login(&code)).await;
        assert_eq!(
            (s, body["code"].as_i64().unwrap()),
            (status, envelope),
            "{body}"
        );
        assert!(body["msg"].as_str().unwrap().contains(words), "{body}");
    }
    let (status, body) = h.call(json!({ "type": "wxpay_login" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("code"), "{body}");
    let (status, _) = h.call(login("bad code\n")).await;
    assert_eq!(status, 400);

    // A wrong app secret is the operator's problem, said without the secret.
    let wrong = "0000000000000000wrongwrongsecret";
    let Some(h2) = Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("WECHAT_APP_SECRET".into(), wrong.into()));
    })
    .await
    else {
        return;
    };
    let (status, body) = h2.call(login(&h2.sim.login_code("o_u"))).await;
    assert_eq!(
        (status, body["code"].as_i64().unwrap()),
        (502, 50211),
        "{body}"
    );
    assert!(
        body["msg"].as_str().unwrap().contains("WECHAT_APP_SECRET"),
        "{body}"
    );
    assert!(!body.to_string().contains(wrong), "{body}");

    // Without SESSION_SECRET login is off, and says which settings turn it on.
    let Some(h3) = Harness::start_with(kind, |o| {
        o.extra_vars.push(("SESSION_SECRET".into(), String::new()));
    })
    .await
    else {
        return;
    };
    let (status, body) = h3.call(login(&h3.sim.login_code("o_u"))).await;
    assert_eq!(
        (status, body["code"].as_i64().unwrap()),
        (503, 50310),
        "{body}"
    );
    let msg = body["msg"].as_str().unwrap();
    assert!(
        msg.contains("WECHAT_APP_SECRET") && msg.contains("SESSION_SECRET"),
        "{body}"
    );
}

async fn pages_cover_every_order_once_and_only_the_callers(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let alice = log_in(&h, "o_alice").await;
    let bob = log_in(&h, "o_bob").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        let order = json!({ "type": "wxpay_order", "packageType": "basic" });
        let (status, body) = call_with_token(&h, &alice, order).await;
        assert_eq!(status, 200, "{body}");
        created.push(body["data"]["outTradeNo"].as_str().unwrap().to_string());
    }
    let bobs = h.create_order("o_bob", "basic").await;
    h.sim.pay(&created[1]).await.unwrap();

    // Pages of two, newest first, every order exactly once.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    for page in 0.. {
        assert!(page < 5, "pagination does not end");
        let (status, body) =
            call_with_token(&h, &alice, list(json!({ "limit": 2, "cursor": cursor }))).await;
        assert_eq!(status, 200, "{body}");
        for o in body["data"]["orders"].as_array().unwrap() {
            seen.push(o["outTradeNo"].as_str().unwrap().to_string());
        }
        cursor = body["data"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // A status filter.
    let (_, body) = call_with_token(&h, &alice, list(json!({ "status": "paid" }))).await;
    let paid: Vec<_> = body["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outTradeNo"].clone())
        .collect();
    assert_eq!(paid, vec![json!(created[1])]);

    // Bob sees only his own order, whatever he asks for.
    let (_, body) = call_with_token(&h, &bob, list(json!({}))).await;
    assert_eq!(body["data"]["orders"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["orders"][0]["outTradeNo"], bobs.as_str());
    let (status, _) = call_with_token(&h, &bob, list(json!({ "openid": "o_alice" }))).await;
    assert_eq!(status, 403);
    let (status, _) = h.call(list(json!({}))).await;
    assert_eq!(status, 401);
    // A cursor from Alice's pages does not open Alice's orders to Bob.
    let (_, first) = call_with_token(&h, &alice, list(json!({ "limit": 1 }))).await;
    let alices_cursor = first["data"]["nextCursor"].clone();
    let (status, body) = call_with_token(&h, &bob, list(json!({ "cursor": alices_cursor }))).await;
    assert_eq!(status, 200);
    assert!(
        body["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["openid"] == "o_bob"),
        "{body}"
    );

    // A trusted caller may list anyone's orders.
    let (status, body) = h
        .call_trusted(list(json!({ "openid": "o_alice", "limit": 50 })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["orders"].as_array().unwrap().len(), 5);
    assert_eq!(h.call_trusted(list(json!({}))).await.0, 400);

    // Bad input is named.
    for (bad, field) in [
        (json!({ "limit": 0 }), "limit"),
        (json!({ "limit": 51 }), "limit"),
        (json!({ "limit": "ten" }), "limit"),
        (json!({ "cursor": "not-a-cursor" }), "cursor"),
        (json!({ "status": "PAID!" }), "status"),
    ] {
        let (status, body) = call_with_token(&h, &alice, list(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["msg"].as_str().unwrap().contains(field), "{body}");
    }
}

async fn operators_read_totals_per_status_with_filters(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let paid = h.create_paid_order("o_stats", "premium").await;
    let _pending = h.create_order("o_stats", "basic").await;
    let closed = h.create_order("o_stats", "basic").await;
    let close = json!({ "type": "wxpay_close_order", "outTradeNo": closed });
    assert_eq!(h.call_trusted(close).await.0, 200);
    let refund = h.start_refund(&paid, Some(990)).await;
    h.finish_refund(&refund, wxpay_sim::RefundOutcome::Success)
        .await;
    let other_business = json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "NATIVE", "businessType": "vip", "amount": 1 });
    assert_eq!(h.call_trusted(other_business).await.0, 200);

    let stats = json!({ "type": "wxpay_stats" });
    let (status, body) = h.call_trusted(stats.clone()).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(
        d["total"],
        json!({ "count": 4, "amount": 2990 + 1 + 1 + 1 })
    );
    assert_eq!(d["byStatus"]["paid"], json!({ "count": 1, "amount": 2990 }));
    assert_eq!(d["byStatus"]["pending"], json!({ "count": 2, "amount": 2 }));
    assert_eq!(d["byStatus"]["closed"], json!({ "count": 1, "amount": 1 }));
    assert_eq!(d["byStatus"]["failed"], json!({ "count": 0, "amount": 0 }));
    assert_eq!(
        d["byStatus"]["refunded"],
        json!({ "count": 0, "amount": 0 })
    );
    assert_eq!(d["refundedAmount"], 990);

    // Filters: a business, and a period that holds nothing.
    let (_, body) = h
        .call_trusted(json!({ "type": "wxpay_stats", "businessType": "vip" }))
        .await;
    assert_eq!(
        body["data"]["total"],
        json!({ "count": 1, "amount": 1 }),
        "{body}"
    );
    let (_, body) = h
        .call_trusted(json!({ "type": "wxpay_stats", "from": "2020-01-01T00:00:00+08:00", "to": "2020-02-01T00:00:00+08:00" }))
        .await;
    assert_eq!(
        body["data"]["total"],
        json!({ "count": 0, "amount": 0 }),
        "{body}"
    );
    let (_, body) = h
        .call_trusted(json!({ "type": "wxpay_stats", "from": "2020-01-01T00:00:00Z" }))
        .await;
    assert_eq!(body["data"]["total"]["count"], 4, "{body}");

    // Operators only; bad filters are named.
    assert_eq!(h.call_as("o_stats", stats.clone()).await.0, 403);
    assert_eq!(h.call(stats).await.0, 403);
    for (bad, field) in [
        (
            json!({ "type": "wxpay_stats", "from": "yesterday" }),
            "from",
        ),
        (
            json!({ "type": "wxpay_stats", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z" }),
            "from",
        ),
    ] {
        let (status, body) = h.call_trusted(bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["msg"].as_str().unwrap().contains(field), "{body}");
    }
}
