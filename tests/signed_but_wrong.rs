//! Signed is not the same as right (issue 15): validly signed notifications whose content
//! does not match what we hold change nothing, are recorded as mismatches and are answered
//! so WeChat Pay retries; identifiers match byte for byte on both stores. Each test is a
//! reproducer of a case the fuzzing run found.

mod common;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_shared::store::{OrderStatus, RefundStatus};
use wxpay_sim::{NotificationEvent, SignedNotification};

both_stores!(
    a_transaction_id_out_of_format_is_refused_not_retried_forever,
    a_refund_notification_must_match_the_refund_we_hold,
    an_unknown_refund_is_recorded_only_if_it_fits_a_paid_order_of_ours,
    identifiers_match_byte_for_byte,
);

async fn deliver(h: &Harness, n: &SignedNotification) -> (u16, String) {
    let outcome = h.sim.deliver(n, &h.pay_url()).await.expect("delivered");
    (outcome.status, outcome.body)
}

fn notification(
    h: &Harness,
    event_type: &str,
    original_type: &str,
    plaintext: Value,
) -> SignedNotification {
    h.sim.notification(NotificationEvent {
        event_type: event_type.into(),
        original_type: original_type.into(),
        plaintext,
    })
}

/// The `TRANSACTION.SUCCESS` resource WeChat Pay would send for this order.
fn paid_resource(h: &Harness, out_trade_no: &str, transaction_id: &str, total: i64) -> Value {
    let c = h.sim.config();
    json!({
        "mchid": c.mchid, "appid": c.appid, "out_trade_no": out_trade_no,
        "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "success_time": "2026-12-02T10:00:00+08:00", "payer": { "openid": "o_wrong" },
        "amount": { "total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY" }
    })
}

/// The `REFUND.SUCCESS` resource for a refund of `refund` fen of a paid order.
fn refund_resource(h: &Harness, out_trade_no: &str, out_refund_no: &str, refund: i64) -> Value {
    let sim_order = h
        .sim
        .order(out_trade_no)
        .expect("the simulator knows the order");
    json!({
        "mchid": h.sim.config().mchid, "out_trade_no": out_trade_no,
        "transaction_id": sim_order.transaction_id, "out_refund_no": out_refund_no,
        "refund_id": "50300000002026120200000000001", "refund_status": "SUCCESS",
        "success_time": "2026-12-02T12:00:00+08:00", "user_received_account": "支付用户零钱",
        "amount": { "total": 2990, "refund": refund, "payer_total": 2990, "payer_refund": refund }
    })
}

/// How many mismatch rows the order's log holds.
async fn mismatches(h: &Harness, out_trade_no: &str) -> usize {
    let logs = h.store.logs_for_order(out_trade_no).await.unwrap();
    logs.iter()
        .filter(|l| l.event_type.as_deref() == Some("MISMATCH"))
        .count()
}

async fn a_transaction_id_out_of_format_is_refused_not_retried_forever(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_txid", "premium").await;
    for transaction_id in ["4".repeat(5000), "4200 0000".into(), String::new()] {
        let n = notification(
            &h,
            "TRANSACTION.SUCCESS",
            "transaction",
            paid_resource(&h, &no, &transaction_id, 2990),
        );
        let (status, body) = deliver(&h, &n).await;
        assert_eq!(status, 400, "a 4xx, not a 500 retried forever: {body}");
        assert!(body.contains("transaction_id"), "{body}");
        assert_eq!(h.order(&no).await.status, OrderStatus::Pending);
    }
    assert_eq!(
        mismatches(&h, &no).await,
        3,
        "each one recorded for an operator"
    );
}

async fn a_refund_notification_must_match_the_refund_we_hold(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_refund_match", "premium").await;
    let other = h.create_paid_order("o_refund_match", "premium").await;
    let refund_no = h.start_refund(&no, Some(100)).await;
    let genuine = refund_resource(&h, &no, &refund_no, 100);

    let mut wrong = Vec::new();
    for amount in [-100_000_i64, 1_000_000_000_000_000, 2990, 99, 101] {
        let mut r = genuine.clone();
        r["amount"]["refund"] = json!(amount);
        r["amount"]["payer_refund"] = json!(amount);
        wrong.push((format!("amount.refund {amount}"), r));
    }
    let mut r = genuine.clone();
    r["amount"]["total"] = json!(2989);
    wrong.push(("amount.total".into(), r));
    let mut r = genuine.clone();
    r["mchid"] = json!("1900000999");
    wrong.push(("mchid".into(), r));
    let mut r = genuine.clone();
    r.as_object_mut().unwrap().remove("mchid");
    wrong.push(("no mchid".into(), r));
    let mut r = genuine.clone();
    r["transaction_id"] = json!("4200000000202612029999999999");
    wrong.push(("transaction_id".into(), r));
    let mut r = genuine.clone();
    r["out_trade_no"] = json!(other);
    r["transaction_id"] = json!(h.sim.order(&other).unwrap().transaction_id);
    wrong.push(("another order".into(), r));

    for (what, resource) in wrong {
        let (status, body) =
            deliver(&h, &notification(&h, "REFUND.SUCCESS", "refund", resource)).await;
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status} {body}"
        );
        let refund = h.store.get_refund(&refund_no).await.unwrap().unwrap();
        assert_eq!(
            (refund.status, refund.amount),
            (RefundStatus::Processing, 100),
            "{what}"
        );
        for order in [&no, &other] {
            let order = h.order(order).await;
            assert_eq!(
                (order.status, order.refunded_amount),
                (OrderStatus::Paid, 0),
                "{what}"
            );
        }
    }
    assert!(
        mismatches(&h, &no).await >= 9,
        "each recorded for an operator"
    );

    // The genuine one is applied, once.
    let n = notification(&h, "REFUND.SUCCESS", "refund", genuine);
    assert_eq!(deliver(&h, &n).await.0, 204);
    assert_eq!(deliver(&h, &n).await.0, 204);
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Success);
    assert_eq!(h.order(&no).await.refunded_amount, 100);
}

async fn an_unknown_refund_is_recorded_only_if_it_fits_a_paid_order_of_ours(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_portal", "premium").await;
    let in_flight = h.start_refund(&no, Some(1000)).await;
    let pending = h.create_order("o_portal", "premium").await;

    let refused: Vec<(&str, Value)> = vec![
        (
            "a 5,000-digit out_refund_no",
            refund_resource(&h, &no, &"7".repeat(5000), 100),
        ),
        (
            "a negative amount",
            refund_resource(&h, &no, "PORTAL-NEG-0001", -100_000),
        ),
        (
            "more than remains",
            refund_resource(&h, &no, "PORTAL-BIG-0001", 1991),
        ),
        ("an order of no one", {
            let mut r = refund_resource(&h, &no, "PORTAL-NONE-001", 100);
            r["out_trade_no"] = json!("WX20261202000000NotAnOrder000000");
            r
        }),
        ("an unpaid order", {
            let mut r = refund_resource(&h, &no, "PORTAL-UNPAID-1", 100);
            r["out_trade_no"] = json!(pending);
            r
        }),
        ("another amount.total", {
            let mut r = refund_resource(&h, &no, "PORTAL-TOTAL-01", 100);
            r["amount"]["total"] = json!(5000);
            r
        }),
    ];
    for (what, resource) in refused {
        let (status, body) =
            deliver(&h, &notification(&h, "REFUND.SUCCESS", "refund", resource)).await;
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status} {body}"
        );
        let refunds = h.store.refunds_for_order(&no).await.unwrap();
        assert_eq!(refunds.len(), 1, "{what}: only the refund in flight");
        let order = h.order(&no).await;
        assert_eq!(
            (order.status, order.refunded_amount),
            (OrderStatus::Paid, 0),
            "{what}"
        );
        assert_eq!(h.order(&pending).await.refunded_amount, 0, "{what}");
    }

    // What fits beside the 1,000 fen in flight is recorded.
    let n = notification(
        &h,
        "REFUND.SUCCESS",
        "refund",
        refund_resource(&h, &no, "PORTAL-OK-00001", 1990),
    );
    assert_eq!(deliver(&h, &n).await.0, 204);
    let portal = h
        .store
        .get_refund("PORTAL-OK-00001")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(
        (portal.status, portal.amount),
        (RefundStatus::Success, 1990)
    );
    assert_eq!(h.order(&no).await.refunded_amount, 1990);
    assert_eq!(h.refund_status(&in_flight).await, RefundStatus::Processing);
}

async fn identifiers_match_byte_for_byte(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    // A payment naming the order in the other letter case pays nothing.
    let no = h.create_order("o_case", "premium").await;
    let lower = no.to_ascii_lowercase();
    let n = notification(
        &h,
        "TRANSACTION.SUCCESS",
        "transaction",
        paid_resource(&h, &lower, "4200000000202612020000000777", 2990),
    );
    let (status, body) = deliver(&h, &n).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(h.order(&no).await.status, OrderStatus::Pending);
    assert!(h.store.get_order(&lower).await.unwrap().is_none());
    assert!(h
        .store
        .get_order(&format!("{no} "))
        .await
        .unwrap()
        .is_none());

    // Nor does a query name it.
    let paid = h.create_paid_order("o_case", "premium").await;
    let query =
        |no: String| json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no });
    let (status, body) = h.call_trusted(query(paid.to_ascii_lowercase())).await;
    assert_eq!(status, 404, "{body}");
    let transaction_id = h.order(&paid).await.transaction_id.unwrap();
    assert!(h
        .store
        .get_order_by_transaction_id(&format!("{transaction_id} "))
        .await
        .unwrap()
        .is_none());

    // A refund number in the other case is another refund, not the first one again.
    let refund = |out_refund_no: &str| json!({ "type": "wxpay_refund", "outTradeNo": paid, "amount": 100, "outRefundNo": out_refund_no });
    let (status, first) = h.call_trusted(refund("caseRefund01")).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = h.call_trusted(refund("CASEREFUND01")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["data"]["outRefundNo"], "CASEREFUND01", "{second}");
    assert_eq!(h.store.refunds_for_order(&paid).await.unwrap().len(), 2);
    assert!(h.store.get_refund("casereFund01").await.unwrap().is_none());
}
