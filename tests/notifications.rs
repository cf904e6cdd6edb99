//! Notifications end to end: WeChat Pay says money moved; the order is marked paid exactly
//! once and the backend hears of it exactly once. Forged, stale, probing or undecryptable
//! notifications change nothing and are answered so that WeChat Pay retries.

mod common;

use std::sync::Arc;

use common::{Harness, StoreKind, SECRET};
use serde_json::{json, Value};
use wxpay_shared::store::{OrderStatus, OutboxStatus, RefundStatus};
use wxpay_sim::{NotificationEvent, PlatformMode, RefundOutcome, SignedNotification};

both_stores!(
    a_payment_marks_the_order_paid_and_tells_the_backend,
    twenty_concurrent_duplicates_change_nothing_twice,
    two_instances_racing_on_one_store_record_once,
    forged_stale_probing_and_garbage_notifications_change_nothing,
    a_payment_that_does_not_match_the_order_is_refused_loudly,
    backend_down_means_paid_now_delivered_later_exactly_once,
    a_later_notification_delivers_what_is_due,
    refund_notifications_record_the_final_state_once,
    a_refund_made_in_the_merchant_portal_is_recorded,
    public_key_mode_needs_no_certificates,
    mixed_certificate_and_public_key_serials_both_verify,
    a_rotated_certificate_is_fetched_once_and_forged_serials_cannot_hammer,
);

fn transaction_plaintext(h: &Harness, no: &str, total: i64) -> Value {
    let c = h.sim.config();
    json!({
        "mchid": c.mchid, "appid": c.appid, "out_trade_no": no,
        "transaction_id": "4200000000202611230000000001", "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "success_time": "2026-11-23T10:00:00+08:00", "payer": { "openid": "o_n" },
        "amount": { "total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY" }
    })
}

async fn deliver(h: &Harness, n: &SignedNotification) -> (u16, String) {
    let outcome = h.sim.deliver(n, &h.pay_url()).await.expect("delivered");
    (outcome.status, outcome.body)
}

/// Nothing about the order moved: still pending, no outbox row, no delivery.
async fn assert_untouched(h: &Harness, no: &str) {
    let order = h.order(no).await;
    assert_eq!(
        order.status,
        OrderStatus::Pending,
        "order must stay pending"
    );
    assert!(order.transaction_id.is_none());
    assert!(h.store.outbox_for_order(no).await.unwrap().is_empty());
    assert_eq!(h.backend.deliveries_for(no), 0);
}

async fn a_payment_marks_the_order_paid_and_tells_the_backend(kind: StoreKind) {
    // The order names businessType "video": its own backend prices it and is told.
    let video = common::business_backend().await;
    let Some(h) = Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("API_BASE_URL_VIDEO".into(), video.url()))
    })
    .await
    else {
        return;
    };
    let (status, body) = h
        .call_as("o_buyer", json!({ "type": "wxpay_order", "packageType": "premium", "userId": "u-1", "generationId": "g-1", "businessType": "video", "businessId": "b-9" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap().to_string();

    let outcome = h.sim.pay(&no).await.unwrap();
    assert_eq!(outcome.status, 204, "handled with no body");
    assert!(outcome.body.is_empty());

    let order = h.order(&no).await;
    let sim = h.sim.order(&no).unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.transaction_id, sim.transaction_id);
    assert_eq!(order.paid_amount, Some(2990));
    assert!(order.paid_at.is_some());
    let logs = h.store.logs_for_order(&no).await.unwrap();
    assert_eq!(
        logs.iter().filter(|l| l.log_type == "callback").count(),
        1,
        "{logs:?}"
    );

    let outbox = h.store.outbox_for_order(&no).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].status, OutboxStatus::Delivered);
    assert_eq!(
        h.backend.deliveries().len(),
        0,
        "API_BASE_URL is not video's"
    );
    let deliveries = video.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert!(d.secret_ok, "X-Internal-Secret sent");
    assert_eq!(d.payload["outTradeNo"], no.as_str());
    assert_eq!(d.payload["status"], "paid");
    assert_eq!(
        d.payload["transactionId"].as_str(),
        sim.transaction_id.as_deref()
    );
    assert_eq!(d.payload["amount"], 2990);
    assert_eq!(d.payload["openid"], "o_buyer");
    assert_eq!(d.payload["userId"], "u-1");
    assert_eq!(d.payload["generationId"], "g-1");
    assert_eq!(d.payload["businessType"], "video");
    assert_eq!(d.payload["businessId"], "b-9");
    assert_eq!(d.payload["packageType"], "premium");
}

async fn twenty_concurrent_duplicates_change_nothing_twice(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_dup", "basic").await;
    h.sim.mark_paid_silently(&no).await.unwrap();
    let n = Arc::new(h.sim.build_transaction_notification(&no).unwrap());
    let url = h.pay_url();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (sim, n, url) = (h.sim.clone(), n.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            sim.deliver(&n, &url).await.unwrap().status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204, "every duplicate is acknowledged");
    }
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
    assert_eq!(
        h.store.outbox_for_order(&no).await.unwrap().len(),
        1,
        "one outbox row"
    );
    assert_eq!(h.backend.deliveries_for(&no), 1, "one backend delivery");
    let paid_logs = h
        .store
        .logs_for_order(&no)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.log_type == "callback")
        .count();
    assert_eq!(paid_logs, 1, "one transition logged");
    // Later duplicates still get 2xx so WeChat Pay stops retrying.
    assert_eq!(deliver(&h, &n).await.0, 204);
    assert_eq!(h.backend.deliveries_for(&no), 1);
}

async fn two_instances_racing_on_one_store_record_once(kind: StoreKind) {
    // SQLite instances share a file; MySQL instances each get their own pool.
    let dir = std::env::temp_dir().join(format!("wxpay-race-{}-{:?}", std::process::id(), kind));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite_url = format!("sqlite://{}", dir.join("race.db").display());
    let Some(h) = Harness::start_with(kind, |o| {
        if kind == StoreKind::Sqlite {
            o.database_url = sqlite_url.clone();
        }
    })
    .await
    else {
        return;
    };
    // A second instance: same configuration and database, its own process state.
    let db_url = h
        .vars
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let config = wxpay_shared::config::Config::from_vars(h.vars.clone()).unwrap();
    let second =
        Arc::new(wxpay_shared::state::App::new(config, wxpay_shared::handlers::ALL_TYPES).unwrap());
    assert!(db_url.starts_with("sqlite://") || db_url.starts_with("mysql://"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}/pay", listener.local_addr().unwrap());
    tokio::spawn(wxpay_shared::runtime::serve(second, listener));

    for round in 0..3 {
        let no = h.create_order("o_race", "basic").await;
        h.sim.mark_paid_silently(&no).await.unwrap();
        let n = Arc::new(h.sim.build_transaction_notification(&no).unwrap());
        let mut tasks = Vec::new();
        for i in 0..10 {
            let url = if i % 2 == 0 {
                h.pay_url()
            } else {
                second_url.clone()
            };
            let (sim, n) = (h.sim.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                sim.deliver(&n, &url).await.unwrap().status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 204, "round {round}");
        }
        assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
        assert_eq!(
            h.store.outbox_for_order(&no).await.unwrap().len(),
            1,
            "round {round}"
        );
        assert_eq!(
            h.backend.deliveries_for(&no),
            1,
            "round {round}: one delivery across instances"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn forged_stale_probing_and_garbage_notifications_change_nothing(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_forge", "premium").await;
    h.sim.mark_paid_silently(&no).await.unwrap();
    let genuine = h.sim.build_transaction_notification(&no).unwrap();
    let downloads_before = h.sim.request_count("/v3/certificates");

    // A SIGNTEST probe is refused before any certificate work.
    let (status, body) = deliver(&h, &genuine.clone().as_sign_test_probe()).await;
    assert!((400..600).contains(&status), "{status} {body}");
    assert!(body.contains("FAIL"), "{body}");
    assert_eq!(h.sim.request_count("/v3/certificates"), downloads_before);

    let forged_body = genuine
        .body
        .replace("\"ciphertext\":\"", "\"ciphertext\":\"AAAA");
    let mut garbage_signed = genuine
        .clone()
        .with_body("{\"not\":\"a notification\"}".into());
    garbage_signed.resign();
    let mut undecryptable = genuine.clone().with_body(forged_body.clone());
    undecryptable.resign();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cases: Vec<(&str, SignedNotification, u16)> = vec![
        ("forged body", genuine.clone().with_body(forged_body), 401),
        ("wrong key", genuine.clone().signed_by_foreign_key(), 401),
        (
            "unknown serial",
            genuine
                .clone()
                .with_serial("0123456789ABCDEF0123456789ABCDEF01234567"),
            401,
        ),
        (
            "unknown public key id",
            genuine
                .clone()
                .with_serial("PUB_KEY_ID_0000000000000000000000000000000000"),
            401,
        ),
        (
            "stale timestamp",
            genuine.clone().with_timestamp(now - 400),
            401,
        ),
        (
            "future timestamp",
            genuine.clone().with_timestamp(now + 400),
            401,
        ),
        (
            "no signature",
            genuine.clone().without_header("Wechatpay-Timestamp"),
            401,
        ),
        (
            "a signature algorithm we do not verify",
            genuine
                .clone()
                .with_header("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"),
            401,
        ),
        (
            "no signature algorithm named",
            genuine.clone().without_header("Wechatpay-Signature-Type"),
            401,
        ),
        (
            "garbage body, unsigned",
            genuine.clone().with_body("garbage".into()),
            401,
        ),
        ("garbage body, signed", garbage_signed, 400),
        ("undecryptable resource", undecryptable, 400),
    ];
    for (what, n, want) in cases {
        let (status, body) = deliver(&h, &n).await;
        assert_eq!(status, want, "{what}: {body}");
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
        assert_eq!(answer["code"], "FAIL", "{what}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_untouched(&h, &no).await;
    }
    // The genuine one still works afterwards.
    assert_eq!(deliver(&h, &genuine).await.0, 204);
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
}

async fn a_payment_that_does_not_match_the_order_is_refused_loudly(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_mm", "premium").await;
    let event = |plaintext| NotificationEvent {
        event_type: "TRANSACTION.SUCCESS".into(),
        original_type: "transaction".into(),
        plaintext,
    };
    // One fen paid for a 29.90 order.
    let (status, body) = deliver(
        &h,
        &h.sim.notification(event(transaction_plaintext(&h, &no, 1))),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("amount"), "{body}");
    assert_untouched(&h, &no).await;
    let logs = h.store.logs_for_order(&no).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.event_type.as_deref() == Some("MISMATCH")),
        "operator can see it: {logs:?}"
    );

    // Another merchant's transaction.
    let mut other = transaction_plaintext(&h, &no, 2990);
    other["mchid"] = json!("1999999999");
    let (status, _) = deliver(&h, &h.sim.notification(event(other))).await;
    assert_eq!(status, 409);
    assert_untouched(&h, &no).await;

    // An order we never created.
    let (status, _) = deliver(
        &h,
        &h.sim
            .notification(event(transaction_plaintext(&h, "WXNOSUCHORDER123", 2990))),
    )
    .await;
    assert_eq!(status, 404);
}

async fn backend_down_means_paid_now_delivered_later_exactly_once(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.backend.set_up(false);
    let no = h.create_paid_order("o_down", "basic").await;
    assert_eq!(
        h.order(&no).await.status,
        OrderStatus::Paid,
        "the order never depends on the backend"
    );
    let outbox = h.store.outbox_for_order(&no).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].status, OutboxStatus::Pending);
    assert_eq!(outbox[0].attempts, 1);
    assert!(
        outbox[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("503"),
        "{outbox:?}"
    );
    assert!(
        outbox[0].next_try_at > time::OffsetDateTime::now_utc(),
        "backed off"
    );

    // Only trusted callers or schedules may trigger deliveries.
    let (status, _) = h
        .call_as(
            "o_down",
            json!({ "type": "wxpay_notify_retry", "all": true }),
        )
        .await;
    assert_eq!(status, 403);
    // A schedule only sends what is due; nothing is due yet.
    let report = wxpay_shared::runtime::handle_raw_event(
        &h.app,
        json!({ "source": "aws.events", "detail-type": "Scheduled Event" }),
    )
    .await;
    assert_eq!(report["data"]["attempted"], 0, "{report}");

    h.backend.set_up(true);
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_notify_retry", "all": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["delivered"], 1, "{body}");
    let (_, body) = h
        .call_trusted(json!({ "type": "wxpay_notify_retry", "all": true }))
        .await;
    assert_eq!(
        body["data"]["attempted"], 0,
        "a delivered row is never sent again: {body}"
    );
    assert_eq!(h.backend.deliveries_for(&no), 1);
    let outbox = h.store.outbox_for_order(&no).await.unwrap();
    assert_eq!(outbox[0].status, OutboxStatus::Delivered);
    assert!(outbox[0].delivered_at.is_some());
}

async fn a_later_notification_delivers_what_is_due(kind: StoreKind) {
    let Some(h) = Harness::start_with(kind, |o| {
        // Look for due rows after every notification (the default is every 30 s).
        o.extra_vars
            .push(("OUTBOX_SWEEP_INTERVAL_SECS".into(), "0".into()));
    })
    .await
    else {
        return;
    };
    h.backend.set_up(false);
    let first = h.create_paid_order("o_later", "basic").await;
    let row = h.store.outbox_for_order(&first).await.unwrap().remove(0);
    // Its backoff has run out by the time the next payment arrives (an operator's forced
    // claim, released unsent, then rescheduled into the past).
    let held = h
        .store
        .claim_notification(row.id, 30)
        .await
        .unwrap()
        .expect("claimable");
    assert!(h
        .store
        .mark_delivery_failed(&held, "backend down", 0)
        .await
        .unwrap());
    h.backend.set_up(true);
    let second = h.create_paid_order("o_later", "basic").await;
    assert_eq!(h.backend.deliveries_for(&second), 1);
    assert_eq!(
        h.backend.deliveries_for(&first),
        1,
        "delivered with the spare notification budget"
    );
    let row = h.store.outbox_for_order(&first).await.unwrap().remove(0);
    assert_eq!(row.status, OutboxStatus::Delivered);
    // The failed try, the forced claim that rescheduled it, the sweep's delivery.
    assert_eq!(row.attempts, 3);
}

async fn refund_notifications_record_the_final_state_once(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_refund", "premium").await;
    let first = h.start_refund(&no, Some(990)).await;
    h.finish_refund(&first, RefundOutcome::Success).await;
    let refund = h.store.get_refund(&first).await.unwrap().unwrap();
    assert_eq!(refund.status, RefundStatus::Success);
    assert!(refund.success_at.is_some());
    let order = h.order(&no).await;
    assert_eq!(order.refunded_amount, 990);
    assert_eq!(
        order.status,
        OrderStatus::Paid,
        "partly refunded stays paid"
    );

    // The same notification again adds nothing.
    let again = h.sim.build_refund_notification(&first).unwrap();
    assert_eq!(deliver(&h, &again).await.0, 204);
    assert_eq!(deliver(&h, &again).await.0, 204);
    assert_eq!(h.order(&no).await.refunded_amount, 990);

    // An abnormal refund and a closed one refund nothing.
    let abnormal = h.start_refund(&no, Some(1000)).await;
    h.finish_refund(&abnormal, RefundOutcome::Abnormal).await;
    assert_eq!(h.refund_status(&abnormal).await, RefundStatus::Abnormal);
    let closed = h.start_refund(&no, Some(500)).await;
    h.finish_refund(&closed, RefundOutcome::Closed).await;
    assert_eq!(h.refund_status(&closed).await, RefundStatus::Closed);
    assert_eq!(h.order(&no).await.refunded_amount, 990);

    // The abnormal refund still holds its 1000 fen at WeChat Pay: only 1000 remain.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 1001 }))
        .await;
    assert_eq!(status, 409, "{body}");
    let rest = h.start_refund(&no, None).await;
    assert_eq!(
        h.store.get_refund(&rest).await.unwrap().unwrap().amount,
        1000
    );
    h.finish_refund(&rest, RefundOutcome::Success).await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);

    // The merchant re-routes the abnormal refund; it succeeds and the order is refunded.
    h.finish_refund(&abnormal, RefundOutcome::Success).await;
    assert_eq!(h.refund_status(&abnormal).await, RefundStatus::Success);
    let order = h.order(&no).await;
    assert_eq!(order.refunded_amount, 2990);
    assert_eq!(order.status, OrderStatus::Refunded);
}

async fn a_refund_made_in_the_merchant_portal_is_recorded(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_portal", "premium").await;
    let sim_order = h.sim.order(&no).unwrap();
    let c = h.sim.config();
    let n = h.sim.notification(NotificationEvent {
        event_type: "REFUND.SUCCESS".into(),
        original_type: "refund".into(),
        plaintext: json!({
            "mchid": c.mchid, "out_trade_no": no, "transaction_id": sim_order.transaction_id,
            "out_refund_no": "PORTAL-REFUND-0001", "refund_id": "50300000000000000000000000001",
            "refund_status": "SUCCESS", "success_time": "2026-11-23T12:00:00+08:00",
            "user_received_account": "支付用户零钱",
            "amount": { "total": 2990, "refund": 2990, "payer_total": 2990, "payer_refund": 2990 }
        }),
    });
    assert_eq!(deliver(&h, &n).await.0, 204);
    let refund = h
        .store
        .get_refund("PORTAL-REFUND-0001")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(refund.status, RefundStatus::Success);
    assert_eq!(refund.amount, 2990);
    let order = h.order(&no).await;
    assert_eq!(order.refunded_amount, 2990);
    assert_eq!(order.status, OrderStatus::Refunded);
}

async fn public_key_mode_needs_no_certificates(kind: StoreKind) {
    let Some(h) = Harness::start_with(kind, |o| {
        o.mode = PlatformMode::PublicKey;
        o.configure_public_key = true;
    })
    .await
    else {
        return;
    };
    let no = h.create_paid_order("o_pk", "basic").await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
    assert_eq!(
        h.sim.request_count("/v3/certificates"),
        0,
        "no certificate download in public-key mode"
    );
    let n = h.sim.build_transaction_notification(&no).unwrap();
    assert!(n
        .header("Wechatpay-Serial")
        .unwrap()
        .starts_with("PUB_KEY_ID_"));
}

async fn mixed_certificate_and_public_key_serials_both_verify(kind: StoreKind) {
    let Some(h) = Harness::start_with(kind, |o| {
        o.mode = PlatformMode::Mixed;
        o.configure_public_key = true;
    })
    .await
    else {
        return;
    };
    // The simulator alternates keys per signature, so two notifications built back to back
    // carry one serial of each kind.
    let a = h.create_order("o_mix", "basic").await;
    let b = h.create_order("o_mix", "basic").await;
    h.sim.mark_paid_silently(&a).await.unwrap();
    h.sim.mark_paid_silently(&b).await.unwrap();
    let na = h.sim.build_transaction_notification(&a).unwrap();
    let nb = h.sim.build_transaction_notification(&b).unwrap();
    let kinds: std::collections::BTreeSet<bool> = [&na, &nb]
        .iter()
        .map(|n| {
            n.header("Wechatpay-Serial")
                .unwrap()
                .starts_with("PUB_KEY_ID_")
        })
        .collect();
    assert_eq!(
        kinds.len(),
        2,
        "one certificate serial and one public key id"
    );
    for (no, n) in [(&a, &na), (&b, &nb)] {
        assert_eq!(deliver(&h, n).await.0, 204);
        assert_eq!(h.order(no).await.status, OrderStatus::Paid);
    }
}

async fn a_rotated_certificate_is_fetched_once_and_forged_serials_cannot_hammer(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.create_paid_order("o_rot", "basic").await;
    let downloads = h.sim.request_count("/v3/certificates");
    assert_eq!(downloads, 1, "certificates downloaded once, then kept warm");

    // WeChat Pay rotates: the new serial triggers one forced refresh.
    h.sim.add_platform_certificate().unwrap();
    let no = h.create_paid_order("o_rot", "basic").await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
    assert_eq!(h.sim.request_count("/v3/certificates"), downloads + 1);

    // Forged serials within the minute cause no further downloads.
    let n = h.sim.build_transaction_notification(&no).unwrap();
    for i in 0..5 {
        let forged = n.clone().with_serial(format!("{:040X}", 0xABCDEFu64 + i));
        assert_eq!(deliver(&h, &forged).await.0, 401);
    }
    assert_eq!(h.sim.request_count("/v3/certificates"), downloads + 1);
    let _ = SECRET;
}

#[tokio::test]
async fn a_database_outage_is_a_5xx_never_a_2xx() {
    let h = Harness::start(StoreKind::Sqlite).await.unwrap();
    let no = h.create_order("o_db", "basic").await;
    h.sim.mark_paid_silently(&no).await.unwrap();
    let n = h.sim.build_transaction_notification(&no).unwrap();
    // The same function, but its database is gone.
    let config = wxpay_shared::config::Config::from_vars(h.vars.clone()).unwrap();
    let dead = wxpay_shared::store::open("mysql://root:s3cr3t-pw@127.0.0.1:1/gone").unwrap();
    let app = wxpay_shared::state::App::with_store(config, dead, wxpay_shared::handlers::ALL_TYPES);
    let mut headers = http::HeaderMap::new();
    for (k, v) in &n.headers {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let answer = wxpay_shared::notify::handle(&app, &headers, n.body.as_bytes()).await;
    assert_eq!(answer.status, 500, "{answer:?}");
    assert!(!answer.message.unwrap_or_default().contains("s3cr3t-pw"));
    // WeChat Pay retries later and the healthy instance records it.
    assert_eq!(deliver(&h, &n).await.0, 204);
}
