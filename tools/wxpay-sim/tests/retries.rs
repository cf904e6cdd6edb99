//! Notifications are sent again the way WeChat Pay documents: until the merchant answers
//! 200 or 204, on the schedule 15s/15s/30s/3m/10m/…/6h (scaled here), each attempt recorded
//! and freshly signed; "retry now" sends the next attempt at once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use wxpay_sim::{DeliveryState, PlatformMode, RefundOutcome};

async fn control(sim: &wxpay_sim::Simulator, method: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", sim.base_url()))
        .send()
        .await
        .expect("control API answers");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_refused_notification_is_retried_on_the_scaled_schedule_until_acknowledged() {
    let sim = start(PlatformMode::Certificate).await;
    sim.set_notification_retry_scale(0.01).unwrap();
    let mut merchant = Scripted::start(vec![
        Answer::with_body(
            500,
            r#"{"code":"FAIL","message":"<script>db down</script>"}"#,
        ),
        Answer::status(500),
        Answer::status(204),
    ])
    .await;
    assert_eq!(
        prepay_jsapi(&sim, "ORDER_retry_0001", 2990, &merchant.url)
            .await
            .status,
        200
    );

    // The first attempt's answer is what pay() returns, as before.
    let first = sim.pay("ORDER_retry_0001").await.expect("answered");
    assert_eq!(first.status, 500);
    let (t1, n1) = merchant.next().await;
    let (t2, n2) = merchant.next().await;
    let (t3, n3) = merchant.next().await;
    // 15 s and 15 s, scaled by 0.01.
    for (gap, what) in [(t2 - t1, "1st → 2nd"), (t3 - t2, "2nd → 3rd")] {
        assert!(
            gap >= Duration::from_millis(140) && gap < Duration::from_millis(1500),
            "{what}: {gap:?}"
        );
    }
    assert!(
        merchant.quiet_for(Duration::from_millis(600)).await,
        "acknowledged: no 4th"
    );

    // The same notification each time, signed anew, and each one verifies.
    let ids: Vec<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| {
            open_notification(&sim, n).0["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_ne!(n1.header("Wechatpay-Nonce"), n2.header("Wechatpay-Nonce"));

    let log = sim.notification_deliveries_for("ORDER_retry_0001");
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(d.event_type, "TRANSACTION.SUCCESS");
    assert_eq!(d.state, DeliveryState::Acknowledged);
    let statuses: Vec<Option<u16>> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(204)]);
    assert_eq!(
        d.attempts[0].answer,
        r#"{"code":"FAIL","message":"<script>db down</script>"}"#
    );
    assert!(d.attempts[0].next_retry_at.is_some() && d.attempts[1].next_retry_at.is_some());
    assert_eq!(d.attempts[2].next_retry_at, None);
    assert_eq!(d.next_retry_at, None);

    // The control API lists the same.
    let (status, v) = control(&sim, "GET", "/sim/notifications?about=ORDER_retry_0001").await;
    assert_eq!(status, 200);
    assert_eq!(v[0]["state"], "ACKNOWLEDGED");
    assert_eq!(v[0]["attempts"][2]["status"], 204);
    assert_eq!(v[0]["attempts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_acknowledged_notification_is_sent_once() {
    let sim = start(PlatformMode::Certificate).await;
    sim.set_notification_retry_scale(0.001).unwrap();
    let mut merchant = Scripted::start(vec![Answer::status(200)]).await;
    prepay_jsapi(&sim, "ORDER_retry_once", 1, &merchant.url).await;
    assert_eq!(sim.pay("ORDER_retry_once").await.unwrap().status, 200);
    merchant.next().await;
    assert!(merchant.quiet_for(Duration::from_millis(300)).await);
    let log = sim.notification_deliveries_for("ORDER_retry_once");
    assert_eq!(log[0].attempts.len(), 1);
    assert_eq!(log[0].state, DeliveryState::Acknowledged);
}

#[tokio::test]
async fn only_200_and_204_acknowledge_and_the_schedule_ends_after_16_attempts() {
    let sim = start(PlatformMode::Certificate).await;
    // 24h4m in about 1.7 s.
    sim.set_notification_retry_scale(0.00002).unwrap();
    // 202 is a 2xx, but WeChat Pay documents only 200 and 204 as "received".
    let mut merchant = Scripted::start(vec![Answer::status(202)]).await;
    prepay_jsapi(&sim, "ORDER_retry_spent", 1, &merchant.url).await;
    assert_eq!(sim.pay("ORDER_retry_spent").await.unwrap().status, 202);
    for _ in 0..16 {
        merchant.next().await;
    }
    eventually("the chain gives up", || {
        sim.notification_deliveries_for("ORDER_retry_spent")[0].state == DeliveryState::GaveUp
    })
    .await;
    assert!(
        merchant.quiet_for(Duration::from_millis(500)).await,
        "16 attempts, no 17th"
    );
    let d = &sim.notification_deliveries_for("ORDER_retry_spent")[0];
    assert_eq!(d.attempts.len(), 16);
    assert!(d
        .attempts
        .iter()
        .all(|a| a.status == Some(202) && !a.acknowledged));
}

#[tokio::test]
async fn retry_now_sends_the_next_attempt_at_once_and_the_schedule_goes_on() {
    let sim = start(PlatformMode::Certificate).await;
    // The real schedule: nothing would happen for 15 s without "retry now".
    let mut merchant = Scripted::start(vec![
        Answer::status(503),
        Answer::status(503),
        Answer::status(204),
    ])
    .await;
    prepay_jsapi(&sim, "ORDER_retry_now1", 1, &merchant.url).await;
    assert_eq!(sim.pay("ORDER_retry_now1").await.unwrap().status, 503);
    merchant.next().await;
    let id = sim.notification_deliveries_for("ORDER_retry_now1")[0].id;

    let (status, attempt) = control(&sim, "POST", &format!("/sim/notifications/{id}/retry")).await;
    assert_eq!(status, 200, "{attempt}");
    assert_eq!(
        (attempt["number"].as_u64(), attempt["status"].as_u64()),
        (Some(2), Some(503))
    );
    merchant.next().await;
    let d = &sim.notification_deliveries_for("ORDER_retry_now1")[0];
    assert_eq!(d.state, DeliveryState::Retrying);
    assert!(d.next_retry_at.is_some(), "the schedule goes on");

    let third = sim.retry_notification_now(id).await.unwrap();
    assert_eq!(
        (third.number, third.status, third.acknowledged),
        (3, Some(204), true)
    );
    merchant.next().await;
    let (status, v) = control(&sim, "POST", &format!("/sim/notifications/{id}/retry")).await;
    assert_eq!(status, 409, "acknowledged already: {v}");
    let (status, _) = control(&sim, "POST", "/sim/notifications/999999/retry").await;
    assert_eq!(status, 404);
    assert!(merchant.quiet_for(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn no_answer_within_5_seconds_is_a_failed_attempt() {
    let sim = start(PlatformMode::Certificate).await;
    let merchant = Scripted::start(vec![Answer {
        stall: Duration::from_secs(8),
        ..Answer::status(204)
    }])
    .await;
    prepay_jsapi(&sim, "ORDER_retry_slow", 1, &merchant.url).await;
    let started = std::time::Instant::now();
    let err = sim.pay("ORDER_retry_slow").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_millis(6500),
        "{took:?}"
    );
    assert!(err.to_string().contains("no answer within 5 s"), "{err}");
    assert!(sim.order("ORDER_retry_slow").unwrap().trade_state == "SUCCESS");
    let d = &sim.notification_deliveries_for("ORDER_retry_slow")[0];
    assert_eq!(d.attempts[0].status, None);
    assert_eq!(d.state, DeliveryState::Retrying);
}

#[tokio::test]
async fn refund_notifications_are_retried_too() {
    let sim = start(PlatformMode::Certificate).await;
    sim.set_notification_retry_scale(0.01).unwrap();
    let mut payer_side = Scripted::start(vec![Answer::status(204)]).await;
    prepay_jsapi(&sim, "ORDER_retry_rf01", 100, &payer_side.url).await;
    sim.pay("ORDER_retry_rf01").await.unwrap();
    payer_side.next().await;
    let mut refunds = Scripted::start(vec![Answer::status(500), Answer::status(204)]).await;
    let body = serde_json::json!({
        "out_trade_no": "ORDER_retry_rf01", "out_refund_no": "RF_retry_01",
        "notify_url": refunds.url, "amount": {"refund": 40, "total": 100, "currency": "CNY"},
    })
    .to_string();
    let r = call(&sim, "POST", "/v3/refund/domestic/refunds", Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = sim
        .complete_refund("RF_retry_01", RefundOutcome::Success)
        .await
        .unwrap();
    assert_eq!(first.status, 500);
    refunds.next().await;
    let (_, again) = refunds.next().await;
    assert_eq!(
        open_notification(&sim, &again).0["event_type"],
        "REFUND.SUCCESS"
    );
    eventually("acknowledged", || {
        sim.notification_deliveries_for("RF_retry_01")
            .first()
            .is_some_and(|d| d.state == DeliveryState::Acknowledged)
    })
    .await;
}

#[tokio::test]
async fn sim_retry_scale_is_read_at_start_and_a_bad_one_stops_it() {
    let exe = env!("CARGO_BIN_EXE_wxpay-sim");
    let dir = std::env::temp_dir().join(format!("wxpay-sim-scale-{}", std::process::id()));
    let bad = std::process::Command::new(exe)
        .args(["--out", &dir.to_string_lossy()])
        .env("SIM_ADDR", "127.0.0.1:0")
        .env("SIM_RETRY_SCALE", "fast")
        .output()
        .expect("wxpay-sim runs");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("SIM_RETRY_SCALE"), "{stderr}");

    let config = {
        let mut c = wxpay_sim::SimConfig::for_merchant(keys());
        c.mode = PlatformMode::Certificate;
        c
    };
    // In process: the variable is read by start (set here for this one start only would
    // race other tests, so the binary above is what proves the variable is read).
    let sim = wxpay_sim::Simulator::start(config).await.unwrap();
    assert!(sim.notification_retry_scale() > 0.0);
    assert!(sim.set_notification_retry_scale(0.0).is_err());
    assert!(sim.set_notification_retry_scale(f64::NAN).is_err());
    let (status, v) = control(&sim, "POST", "/sim/notifications/retry-scale?scale=0.5").await;
    assert_eq!((status, v["scale"].as_f64()), (200, Some(0.5)));
    let (status, _) = control(&sim, "POST", "/sim/notifications/retry-scale?scale=-1").await;
    assert_eq!(status, 400);
    let _ = std::fs::remove_dir_all(dir);
}
