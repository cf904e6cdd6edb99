//! Every call answers before its deadline: WeChat Pay stalling on prepay, query, refund or
//! the certificate download is answered 504/503 before `FUNCTION_TIMEOUT_MS`, and a
//! notification is answered within WeChat Pay's 5 s; its later retry records the payment
//! exactly once.
//!
//! The fault: the simulator's `delay` fault, which processes the request and holds the
//! answer back for 10 s, longer than the function may wait.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, StoreKind};
use serde_json::json;
use wxpay_shared::store::OrderStatus;
use wxpay_sim::{Fault, FaultKind};

both_stores!(
    a_stalled_prepay_is_answered_504_before_the_deadline,
    a_stalled_query_is_answered_before_the_deadline,
    a_stalled_refund_is_answered_503_before_the_deadline_and_stays_reserved,
    a_stalled_certificate_download_is_answered_503_before_the_deadline,
    a_notification_stalled_on_certificates_is_refused_in_time_and_its_retry_records_once,
);

/// The function's deadline in these tests; WeChat Pay's per-attempt limit stays at its
/// 4 s default, longer than the deadline, so only the deadline can cut a stalled call.
const DEADLINE_MS: u64 = 2500;

async fn with_deadline(kind: StoreKind, sqlite_file: Option<&str>) -> Option<Harness> {
    Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("FUNCTION_TIMEOUT_MS".into(), DEADLINE_MS.to_string()));
        if let (StoreKind::Sqlite, Some(path)) = (kind, sqlite_file) {
            o.database_url = format!("sqlite://{path}");
        }
    })
    .await
}

fn stall(h: &Harness, path: &str) {
    h.sim.inject_fault(Fault::new(
        path,
        1,
        FaultKind::Delay(Duration::from_secs(10)),
    ));
}

fn assert_in_time(started: Instant, limit_ms: u64, what: &str) {
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(limit_ms),
        "{what} took {took:?}, past the {limit_ms} ms deadline"
    );
}

async fn a_stalled_prepay_is_answered_504_before_the_deadline(kind: StoreKind) {
    let Some(h) = with_deadline(kind, None).await else {
        return;
    };
    h.create_order("o_slow", "basic").await; // certificates are cached
    stall(&h, "/v3/pay/transactions/jsapi");
    let started = Instant::now();
    let (status, body) = h
        .call_as(
            "o_slow",
            json!({ "type": "wxpay_order", "packageType": "basic" }),
        )
        .await;
    assert_in_time(started, DEADLINE_MS, "a stalled prepay");
    assert_eq!(status, 504, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("retry"), "{body}");
}

async fn a_stalled_query_is_answered_before_the_deadline(kind: StoreKind) {
    let Some(h) = with_deadline(kind, None).await else {
        return;
    };
    let no = h.create_order("o_slowq", "basic").await;
    stall(&h, "/v3/pay/transactions/out-trade-no/");
    let started = Instant::now();
    let (status, body) = h
        .call_as(
            "o_slowq",
            json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no }),
        )
        .await;
    assert_in_time(started, DEADLINE_MS, "a stalled query");
    assert!(status == 504 || status == 503, "{status} {body}");
}

async fn a_stalled_refund_is_answered_503_before_the_deadline_and_stays_reserved(kind: StoreKind) {
    let Some(h) = with_deadline(kind, None).await else {
        return;
    };
    let no = h.create_paid_order("o_slowr", "basic").await;
    stall(&h, "/v3/refund/domestic/refunds");
    let started = Instant::now();
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no }))
        .await;
    assert_in_time(started, DEADLINE_MS, "a stalled refund");
    assert!(status == 503 || status == 504, "{status} {body}");
    // WeChat Pay accepted it (the delay only holds the answer back): the amount stays
    // reserved, so a second full refund cannot start.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no }))
        .await;
    assert_ne!(
        status, 200,
        "nothing left to refund while one is unsettled: {body}"
    );
}

async fn a_stalled_certificate_download_is_answered_503_before_the_deadline(kind: StoreKind) {
    let Some(h) = with_deadline(kind, None).await else {
        return;
    };
    // A fresh instance has no certificates: verifying the prepay answer downloads them.
    stall(&h, "/v3/certificates");
    let started = Instant::now();
    let (status, body) = h
        .call_as(
            "o_certs",
            json!({ "type": "wxpay_order", "packageType": "basic" }),
        )
        .await;
    assert_in_time(started, DEADLINE_MS, "a stalled certificate download");
    assert!(status == 503 || status == 504, "{status} {body}");
}

async fn a_notification_stalled_on_certificates_is_refused_in_time_and_its_retry_records_once(
    kind: StoreKind,
) {
    // SQLite instances share a file; MySQL instances each get their own pool.
    let Some((h, _dir)) = common::start_on_shared_store(kind, "deadline", |o| {
        // An operator's per-attempt limit longer than WeChat Pay waits for a notification.
        o.extra_vars
            .push(("WECHATPAY_TIMEOUT_MS".into(), "8000".into()));
    })
    .await
    else {
        return;
    };
    let no = h.create_order("o_notify", "basic").await;
    // WeChat Pay signs with a certificate this instance has not seen, and stalls the
    // download the instance then needs.
    h.sim.add_platform_certificate().unwrap();
    stall(&h, "/v3/certificates");
    let started = Instant::now();
    let outcome = h.sim.pay(&no).await.unwrap();
    assert_in_time(started, 5000, "a notification");
    assert!(outcome.status >= 300, "not acknowledged: {outcome:?}");
    assert_eq!(h.order(&no).await.status, OrderStatus::Pending);

    // WeChat Pay retries later; another instance (this one waits a minute before it
    // downloads again) answers, and a duplicate changes nothing.
    let config = wxpay_shared::config::Config::from_vars(h.vars.clone()).unwrap();
    let second =
        Arc::new(wxpay_shared::state::App::new(config, wxpay_shared::handlers::ALL_TYPES).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}/pay", listener.local_addr().unwrap());
    tokio::spawn(wxpay_shared::runtime::serve(second, listener));
    h.retries_record_once(&no, &second_url).await;
}
