//! A refund retry never frees an amount WeChat Pay may still hold. The story the tests
//! tell: WeChat Pay accepts a refund but answers after the backend gave up; the backend
//! retries with the same outRefundNo and WeChat Pay, which wants refund requests for one
//! order a minute apart, answers 429. That refusal must not free the amount, or a second
//! refund with another number pays the customer twice.

mod common;

use std::time::Duration;

use common::{Harness, StoreKind};
use serde_json::json;
use wxpay_shared::store::RefundStatus;
use wxpay_sim::{Fault, FaultKind};

both_stores!(
    a_rate_limited_retry_of_an_accepted_refund_records_it_and_frees_nothing,
    a_refusal_nobody_can_confirm_keeps_the_amount_reserved_until_the_same_number_settles_it,
    a_refusal_that_proves_nothing_was_accepted_frees_the_amount_for_a_retry_with_the_same_number,
    a_refused_retry_of_a_refund_an_earlier_call_left_in_flight_frees_nothing,
    a_timed_out_refund_names_the_number_it_generated_and_its_retry_pays_once,
);

/// WeChat Pay calls time out after 700 ms, and WeChat Pay's one-minute spacing between
/// refund requests of one order is on.
async fn start(kind: StoreKind, spacing: Duration) -> Option<Harness> {
    Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("WECHATPAY_TIMEOUT_MS".into(), "700".into()));
        o.refund_frequency_window = spacing;
    })
    .await
}

fn refund(no: &str, amount: i64, out_refund_no: &str) -> serde_json::Value {
    json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": amount, "outRefundNo": out_refund_no })
}

async fn a_rate_limited_retry_of_an_accepted_refund_records_it_and_frees_nothing(kind: StoreKind) {
    let Some(h) = start(kind, Duration::from_secs(60)).await else {
        return;
    };
    let no = h.create_paid_order("o_late", "premium").await; // 2990 fen

    // WeChat Pay accepts the refund but answers after the backend has given up.
    h.sim.answer_refunds_late(Duration::from_secs(3), 1);
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-LATE-00001")).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    assert_eq!(h.sim.refunds().len(), 1, "WeChat Pay holds the refund");

    // The retry within the minute: WeChat Pay answers 429 FREQUENCY_LIMITED, yet the
    // refund it holds is found and recorded, not freed.
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-LATE-00001")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "PROCESSING", "{body}");
    assert!(body["data"]["refundId"].is_string(), "{body}");
    assert_eq!(
        h.refund_status("RF-LATE-00001").await,
        RefundStatus::Processing
    );

    // Its 1000 fen still count: a second refund of the whole order is refused before
    // WeChat Pay hears of it.
    let (status, body) = h.call_trusted(refund(&no, 2990, "RF-AGAIN-0001")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(h.sim.refunds().len(), 1, "the customer is refunded once");
}

async fn a_refusal_nobody_can_confirm_keeps_the_amount_reserved_until_the_same_number_settles_it(
    kind: StoreKind,
) {
    let Some(h) = start(kind, Duration::ZERO).await else {
        return;
    };
    let no = h.create_paid_order("o_busy", "premium").await;

    // 429 on the refund and on the query that follows it: nobody knows whether WeChat Pay
    // holds the refund.
    h.sim.inject_fault(Fault::new(
        "/v3/refund/domestic/refunds",
        2,
        FaultKind::status(429, "FREQUENCY_LIMITED", "频率限制"),
    ));
    let (status, body) = h.call_trusted(refund(&no, 2990, "RF-BUSY-00001")).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    let msg = body["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("same outRefundNo") && msg.contains("RF-BUSY-00001"),
        "{msg}"
    );
    assert_eq!(
        h.refund_status("RF-BUSY-00001").await,
        RefundStatus::Processing
    );
    let (status, _) = h.call_trusted(refund(&no, 1, "RF-OTHER-0001")).await;
    assert_eq!(
        status, 409,
        "nothing of the order is free while it is unsettled"
    );

    // The retry the message asks for settles it, once.
    let (status, body) = h.call_trusted(refund(&no, 2990, "RF-BUSY-00001")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.refunds().len(), 1);
}

async fn a_refusal_that_proves_nothing_was_accepted_frees_the_amount_for_a_retry_with_the_same_number(
    kind: StoreKind,
) {
    let Some(h) = start(kind, Duration::ZERO).await else {
        return;
    };
    let no = h.create_paid_order("o_poor", "premium").await;

    // The merchant's balance cannot pay it: a signed 403 NOT_ENOUGH, and WeChat Pay has no
    // such refund. The refund is failed and its amount free.
    h.sim.set_merchant_balance(Some(0));
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-POOR-00001")).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (409, Some(40910)),
        "{body}"
    );
    assert!(body["msg"]
        .as_str()
        .unwrap_or_default()
        .contains("NOT_ENOUGH"));
    assert_eq!(h.refund_status("RF-POOR-00001").await, RefundStatus::Failed);

    // Topped up, the same outRefundNo is retried, as WeChat Pay advises.
    h.sim.set_merchant_balance(None);
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-POOR-00001")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.refund_status("RF-POOR-00001").await,
        RefundStatus::Processing
    );
    assert_eq!(h.sim.refunds().len(), 1);

    // A failed refund whose amount no longer fits is not retried.
    h.sim.set_merchant_balance(Some(0));
    let (status, _) = h.call_trusted(refund(&no, 1990, "RF-POOR-00002")).await;
    assert_eq!(status, 409);
    h.sim.set_merchant_balance(None);
    let (status, _) = h.call_trusted(refund(&no, 1990, "RF-TAKES-0001")).await;
    assert_eq!(status, 200);
    let (status, body) = h.call_trusted(refund(&no, 1990, "RF-POOR-00002")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("no longer fits"),
        "{body}"
    );
    assert_eq!(h.sim.refunds().len(), 2);
}

/// The first call's fate is unknown (WeChat Pay failed it with a 5xx, or it timed out);
/// the retry with the same outRefundNo is refused with a signed 4xx and WeChat Pay does not
/// (yet) list the refund. Only this retry was shown refused: the first request may still
/// land, so the amount stays reserved and the caller is told to retry the same number.
async fn a_refused_retry_of_a_refund_an_earlier_call_left_in_flight_frees_nothing(kind: StoreKind) {
    let Some(h) = start(kind, Duration::ZERO).await else {
        return;
    };
    let no = h.create_paid_order("o_in_flight", "premium").await;
    let refunds = "/v3/refund/domestic/refunds";
    // Twice: the client retries a 5xx once.
    h.sim.inject_fault(Fault::new(
        refunds,
        2,
        FaultKind::status(500, "SYSTEM_ERROR", "系统繁忙"),
    ));
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-INFLIGHT01")).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    assert_eq!(
        h.refund_status("RF-INFLIGHT01").await,
        RefundStatus::Processing
    );

    h.sim.inject_fault(Fault::new(
        refunds,
        1,
        FaultKind::status(400, "PARAM_ERROR", "参数错误"),
    ));
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-INFLIGHT01")).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("RF-INFLIGHT01"),
        "{body}"
    );
    assert_eq!(
        h.refund_status("RF-INFLIGHT01").await,
        RefundStatus::Processing,
        "the amount stays reserved"
    );
    // What it holds is not free for another refund number.
    let (status, _) = h.call_trusted(refund(&no, 1991, "RF-SECOND-001")).await;
    assert_eq!(status, 409);
    // The same number, retried once WeChat Pay answers again, settles it.
    let (status, body) = h.call_trusted(refund(&no, 1000, "RF-INFLIGHT01")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.refunds().len(), 1);
}

/// Issue 22 item 3: two retries of one refused refund race. The test holds the order row,
/// so both retries' reservations queue behind it and both read the refund `failed`; then
/// both try to revive it, and exactly one does. WeChat Pay accepts the winner's request but
/// answers late. The loser is not the one that reserved the amount: it sends no second
/// request (a refusal of one plus "not found" for the other could free an amount WeChat Pay
/// is processing) and answers 50300 naming the number. The store and WeChat Pay agree that
/// the refund is in flight, and nothing more of the order can be refunded. (Before, both
/// counted as fresh and both asked WeChat Pay.) MySQL only: InnoDB's lock queue orders the
/// race; SQLite's busy wait does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_retries_of_a_refused_refund_revive_it_once_and_ask_wechat_pay_once() {
    let Some(h) = start(StoreKind::Mysql, Duration::ZERO).await else {
        return;
    };
    let no = h.create_paid_order("o_race", "premium").await; // 2990 fen
    let refunds = "/v3/refund/domestic/refunds";
    h.sim.inject_fault(Fault::new(
        refunds,
        1,
        FaultKind::status(400, "PARAM_ERROR", "参数错误"),
    ));
    let (status, body) = h.call_trusted(refund(&no, 2990, "RF-RACE-00001")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(h.refund_status("RF-RACE-00001").await, RefundStatus::Failed);

    use mysql_async::prelude::Queryable;
    let mut holder = mysql_async::Conn::from_url(h.database_url().as_str())
        .await
        .unwrap();
    holder.query_drop("START TRANSACTION").await.unwrap();
    let _: Option<Vec<u8>> = holder
        .exec_first(
            "SELECT out_trade_no FROM orders WHERE out_trade_no = ? FOR UPDATE",
            (no.as_str(),),
        )
        .await
        .unwrap();
    h.sim.answer_refunds_late(Duration::from_secs(3), 1);
    let asked_before = h.sim.request_count(refunds);
    let retries: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (h.pay_url(), refund(&no, 2990, "RF-RACE-00001"));
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(url)
                    .header("X-Internal-Secret", common::SECRET)
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("answered");
                let status = resp.status().as_u16();
                let body: serde_json::Value =
                    serde_json::from_str(&resp.text().await.unwrap()).unwrap();
                (status, body)
            })
        })
        .collect();
    // Both wait for the order row before the test lets it go.
    let mut queued = 0;
    for _ in 0..200 {
        let n: Option<i64> = holder
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND DB = DATABASE() AND INFO LIKE '%FOR UPDATE'",
            )
            .await
            .unwrap();
        queued = n.unwrap_or(0);
        if queued == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queued, 2, "both retries wait for the order row");
    holder.query_drop("ROLLBACK").await.unwrap();
    let _ = holder.disconnect().await;

    let mut answers = Vec::new();
    for r in retries {
        answers.push(r.await.unwrap());
    }
    answers.sort_by_key(|(status, _)| *status);
    let codes: Vec<(u16, i64)> = answers
        .iter()
        .map(|(s, b)| (*s, b["code"].as_i64().unwrap_or_default()))
        .collect();
    // The winner's request was accepted but answered late (503 naming the number); the
    // loser is told the refund is being retried right now, under the same number.
    assert_eq!(codes, [(503, 50300), (503, 50300)], "{answers:?}");
    let loser = answers
        .iter()
        .map(|(_, b)| b["msg"].as_str().unwrap_or_default())
        .find(|m| m.contains("retrying"))
        .unwrap_or_default();
    assert!(
        loser.contains("RF-RACE-00001") && loser.contains("retrying"),
        "{loser}"
    );
    assert_eq!(
        h.sim.request_count(refunds) - asked_before,
        1,
        "WeChat Pay was asked once"
    );
    assert_eq!(
        h.refund_status("RF-RACE-00001").await,
        RefundStatus::Processing,
        "WeChat Pay holds it, and so does the store"
    );
    assert!(h.sim.refund("RF-RACE-00001").is_some());
    let (status, body) = h.call_trusted(refund(&no, 2990, "RF-RACE-00002")).await;
    assert_eq!(status, 409, "nothing more to refund: {body}");
}

async fn a_timed_out_refund_names_the_number_it_generated_and_its_retry_pays_once(kind: StoreKind) {
    let Some(h) = start(kind, Duration::ZERO).await else {
        return;
    };
    let no = h.create_paid_order("o_gen", "premium").await;
    // No outRefundNo given: the function makes one, and WeChat Pay answers too late.
    h.sim.answer_refunds_late(Duration::from_secs(3), 1);
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 1000 }))
        .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (503, Some(50300)),
        "{body}"
    );
    let held = h.sim.refunds();
    assert_eq!(held.len(), 1, "WeChat Pay took it");
    let generated = held[0].out_refund_no.clone();
    let msg = body["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&generated),
        "the answer names {generated}: {msg}"
    );

    // The caller retries with that number: the same refund, never a second one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = h.call_trusted(refund(&no, 1000, &generated)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.sim.refunds().len(), 1);
    assert_eq!(h.order(&no).await.refund_reserved, 1000);
}
