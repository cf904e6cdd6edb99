//! Query, close and refund end to end, seen by the order's owner, a trusted backend and an
//! attacker: owners see their own orders, only trusted callers refund, a missed notification
//! is caught up by a query exactly once, and no combination of requests refunds more than
//! was paid.

mod common;

use std::time::Duration;

use common::{Harness, StoreKind, SECRET};
use serde_json::json;
use wxpay_shared::store::{OrderStatus, RefundStatus};
use wxpay_sim::{Fault, FaultKind, RefundOutcome};

both_stores!(
    owners_see_their_orders_and_nobody_else_learns_they_exist,
    a_query_catches_up_a_missed_notification_exactly_once,
    closing_an_unpaid_order_and_refusing_to_close_a_paid_one,
    refunds_are_for_trusted_callers_and_never_exceed_what_was_paid,
    concurrent_refunds_cannot_together_exceed_the_order,
    wechat_pay_refusals_and_timeouts_leave_a_state_a_retry_resolves,
    a_refund_query_syncs_a_refund_whose_notification_was_lost,
);

fn query(no: &str) -> serde_json::Value {
    json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no })
}

async fn owners_see_their_orders_and_nobody_else_learns_they_exist(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_owner", "premium").await;

    let (status, body) = h.call_as("o_owner", query(&no)).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["tradeState"], "SUCCESS");
    assert_eq!(d["amount"], 2990);
    assert_eq!(
        d["transactionId"].as_str(),
        h.sim.order(&no).unwrap().transaction_id.as_deref()
    );
    assert!(d["successTime"].is_string());
    assert_eq!(d["order"]["status"], "paid");
    assert_eq!(d["order"]["outTradeNo"], no.as_str());

    // Another user, and a made-up order, get the same answer.
    let (s1, other) = h.call_as("o_attacker", query(&no)).await;
    let (s2, missing) = h.call_as("o_attacker", query("WXDOESNOTEXIST0001")).await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(other["code"], missing["code"]);
    assert_eq!(
        other["msg"].as_str().unwrap().replace(&no, "N"),
        missing["msg"]
            .as_str()
            .unwrap()
            .replace("WXDOESNOTEXIST0001", "N")
    );
    // A forged userInfo in an HTTP body is not an identity.
    let mut forged = query(&no);
    forged["userInfo"] = json!({ "openId": "o_owner" });
    let (status, _) = h.call(forged).await;
    assert_eq!(status, 401);
    // Nor is an openid field, unless the caller is trusted.
    let mut claimed = query(&no);
    claimed["openid"] = json!("o_owner");
    assert_eq!(h.call_as("o_attacker", claimed).await.0, 403);
    assert_eq!(
        h.call_with(&[("X-Internal-Secret", "wrong")], query(&no))
            .await
            .0,
        403
    );
    assert_eq!(h.call_trusted(query(&no)).await.0, 200);

    // By transaction id: trusted only.
    let tid = h.sim.order(&no).unwrap().transaction_id.unwrap();
    let by_tid = json!({ "type": "wxpay_query_order_by_transaction_id", "transactionId": tid });
    assert_eq!(h.call_as("o_owner", by_tid.clone()).await.0, 403);
    let (status, body) = h.call_trusted(by_tid).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["outTradeNo"], no.as_str());
    let (status, _) = h
        .call_trusted(json!({ "type": "wxpay_query_order_by_transaction_id", "transactionId": "4200000000000000000000000000" }))
        .await;
    assert_eq!(status, 404);
}

async fn a_query_catches_up_a_missed_notification_exactly_once(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_sync", "basic").await;
    let (_, body) = h.call_as("o_sync", query(&no)).await;
    assert_eq!(body["data"]["tradeState"], "NOTPAY");
    assert_eq!(body["data"]["synced"], false);

    h.sim.mark_paid_silently(&no).await.unwrap();
    let (status, body) = h.call_as("o_sync", query(&no)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["synced"], true);
    assert_eq!(body["data"]["order"]["status"], "paid");
    assert_eq!(h.backend.deliveries_for(&no), 1);

    // The late notification and further queries change nothing.
    let late = h.sim.build_transaction_notification(&no).unwrap();
    assert_eq!(
        h.sim.deliver(&late, &h.pay_url()).await.unwrap().status,
        204
    );
    let (_, body) = h.call_as("o_sync", query(&no)).await;
    assert_eq!(body["data"]["synced"], false);
    assert_eq!(h.backend.deliveries_for(&no), 1);
    assert_eq!(h.store.outbox_for_order(&no).await.unwrap().len(), 1);
}

async fn closing_an_unpaid_order_and_refusing_to_close_a_paid_one(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let close = |no: &str| json!({ "type": "wxpay_close_order", "outTradeNo": no });
    let open = h.create_order("o_close", "basic").await;
    assert_eq!(
        h.call_as("o_other", close(&open)).await.0,
        404,
        "not yours to close"
    );
    let (status, body) = h.call_as("o_close", close(&open)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "closed");
    assert_eq!(h.order(&open).await.status, OrderStatus::Closed);
    assert_eq!(h.sim.order(&open).unwrap().trade_state, "CLOSED");
    assert_eq!(
        h.call_as("o_close", close(&open)).await.0,
        200,
        "closing twice is fine"
    );

    let paid = h.create_paid_order("o_close", "basic").await;
    let (status, body) = h.call_as("o_close", close(&paid)).await;
    assert_eq!(status, 409);
    assert!(
        body["msg"].as_str().unwrap().contains("refund it instead"),
        "{body}"
    );

    // Paid at WeChat Pay but we had not heard: closing finds out and records the payment.
    let racing = h.create_order("o_close", "basic").await;
    h.sim.mark_paid_silently(&racing).await.unwrap();
    let (status, body) = h.call_as("o_close", close(&racing)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(h.order(&racing).await.status, OrderStatus::Paid);
    assert_eq!(h.backend.deliveries_for(&racing), 1);
}

async fn refunds_are_for_trusted_callers_and_never_exceed_what_was_paid(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_r", "premium").await;
    let refund =
        |amount: i64| json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": amount });

    assert_eq!(
        h.call_as("o_r", refund(100)).await.0,
        403,
        "even the owner is not trusted"
    );
    assert_eq!(h.call(refund(100)).await.0, 403);
    assert_eq!(
        h.call_with(&[("X-Internal-Secret", "wrong")], refund(100))
            .await
            .0,
        403
    );
    let forged = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 100,
                "userInfo": { "appId": h.sim.config().appid, "openId": "o_r" } }),
    )
    .await;
    assert_eq!(forged["code"], 40300);

    let before = h.sim.request_count("/v3/refund");
    let (status, body) = h.call_trusted(refund(2991)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("2990"), "{body}");
    for bad in [json!(0), json!(-1), json!(1.5), json!("10")] {
        let (status, _) = h
            .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": bad }))
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    let unpaid = h.create_order("o_r", "basic").await;
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": unpaid }))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        h.call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": "WXNOSUCHORDER0001" }))
            .await
            .0,
        404
    );
    assert_eq!(
        h.sim.request_count("/v3/refund"),
        before,
        "refused before calling WeChat Pay"
    );

    // The same outRefundNo retried is the same refund.
    let mine = json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 1000, "outRefundNo": "RF-SAME-0001", "reason": "changed mind" });
    let (s1, a) = h.call_trusted(mine.clone()).await;
    let (s2, b) = h.call_trusted(mine).await;
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_eq!(a["data"]["refundId"], b["data"]["refundId"]);
    assert_eq!(h.sim.refunds().len(), 1);
    assert_eq!(h.store.refunds_for_order(&no).await.unwrap().len(), 1);
    // In flight counts: only 1990 remain to refund.
    let (status, body) = h.call_trusted(refund(1991)).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = h.call_trusted(refund(1990)).await;
    assert_eq!(status, 200, "{body}");
    let _ = SECRET;
}

async fn concurrent_refunds_cannot_together_exceed_the_order(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_cc", "premium").await;
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let h = h.clone();
        let no = no.clone();
        tasks.push(tokio::spawn(async move {
            h.call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 2000 }))
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 409]);
    assert_eq!(h.sim.refunds().len(), 1, "one refund reached WeChat Pay");
}

async fn wechat_pay_refusals_and_timeouts_leave_a_state_a_retry_resolves(kind: StoreKind) {
    let Some(h) = Harness::start_impatient(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_w", "premium").await;

    // A verified refusal: 409 with WeChat Pay's code, and the amount is free again.
    h.sim.inject_fault(Fault::new(
        "/v3/refund/domestic/refunds",
        1,
        FaultKind::status(400, "NOT_ENOUGH", "基本账户余额不足"),
    ));
    let (status, body) = h
        .call_trusted(
            json!({ "type": "wxpay_refund", "outTradeNo": no, "outRefundNo": "RF-REFUSED-01" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("NOT_ENOUGH"),
        "{body}"
    );
    assert_eq!(
        h.store
            .get_refund("RF-REFUSED-01")
            .await
            .unwrap()
            .unwrap()
            .status,
        RefundStatus::Failed
    );

    // WeChat Pay's 5xx: 503 naming the number to retry with, the refund stays processing.
    h.sim.inject_fault(Fault::new(
        "/v3/refund/domestic/refunds",
        2,
        FaultKind::status(500, "SYSTEM_ERROR", "系统繁忙"),
    ));
    let retry = json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 1000, "outRefundNo": "RF-RETRY-0001" });
    let (status, body) = h.call_trusted(retry.clone()).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    assert_eq!(
        h.store
            .get_refund("RF-RETRY-0001")
            .await
            .unwrap()
            .unwrap()
            .status,
        RefundStatus::Processing
    );

    // A timeout after WeChat Pay accepted it: 503 naming the number to retry with; the
    // retry finds the same refund.
    h.sim.inject_fault(Fault::new(
        "/v3/refund/domestic/refunds",
        1,
        FaultKind::Delay(Duration::from_secs(3)),
    ));
    let (status, body) = h.call_trusted(retry.clone()).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("RF-RETRY-0001"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = h.call_trusted(retry).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.sim
            .refunds()
            .iter()
            .filter(|r| r.out_refund_no == "RF-RETRY-0001")
            .count(),
        1
    );
    assert!(body["data"]["refundId"].is_string());
}

async fn a_refund_query_syncs_a_refund_whose_notification_was_lost(kind: StoreKind) {
    let Some(h) = Harness::start_with(kind, |o| {
        // Refund notifications go nowhere: only the query can learn the outcome.
        o.extra_vars.push((
            "WECHAT_REFUND_NOTIFY_URL".into(),
            "http://127.0.0.1:9/lost".into(),
        ));
    })
    .await
    else {
        return;
    };
    let no = h.create_paid_order("o_q", "premium").await;
    let (_, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 990 }))
        .await;
    let rf = body["data"]["outRefundNo"].as_str().unwrap().to_string();
    assert!(
        h.sim
            .complete_refund(&rf, RefundOutcome::Success)
            .await
            .is_err(),
        "notification lost"
    );
    assert_eq!(
        h.store.get_refund(&rf).await.unwrap().unwrap().status,
        RefundStatus::Processing
    );

    let q = json!({ "type": "wxpay_refund_query", "outRefundNo": rf });
    assert_eq!(h.call_as("o_q", q.clone()).await.0, 403);
    let (status, body) = h.call_trusted(q.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "SUCCESS");
    assert_eq!(body["data"]["refund"]["status"], "success");
    assert_eq!(h.order(&no).await.refunded_amount, 990);
    // Asking again applies nothing twice.
    h.call_trusted(q).await;
    assert_eq!(h.order(&no).await.refunded_amount, 990);
    let (status, _) = h
        .call_trusted(json!({ "type": "wxpay_refund_query", "outRefundNo": "RF-NOPE-000001" }))
        .await;
    assert_eq!(status, 404);
}
