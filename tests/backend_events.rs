//! What the business backend hears (contract §8): a `payment` event when an order is paid,
//! a `refund` event for each refund outcome, and never "paid" alone for money that WeChat
//! Pay has already given back.

mod common;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_shared::store::{OrderStatus, RefundStatus};
use wxpay_sim::RefundOutcome;

both_stores!(
    a_payment_learned_after_its_refund_is_told_refunded_not_paid,
    a_payment_event_keeps_the_fields_backends_read_today,
    each_refund_outcome_is_told_once,
    a_refund_synced_by_query_is_told,
    reconciliation_tells_the_same_truth,
);

fn query(no: &str) -> Value {
    json!({ "type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no })
}

/// What the backend received about one order, oldest first.
fn told(h: &Harness, no: &str) -> Vec<Value> {
    h.backend
        .deliveries()
        .into_iter()
        .filter(|d| d.payload["outTradeNo"] == no)
        .map(|d| d.payload)
        .collect()
}

async fn a_payment_learned_after_its_refund_is_told_refunded_not_paid(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    // Paid, the notification lost, then refunded in full in the merchant portal.
    let no = h.create_order("o_portal", "premium").await;
    h.sim.mark_paid_silently(&no).await.unwrap();
    h.sim.portal_refund(&no, 2990).unwrap();

    // The payer asks; only now do we hear of the payment.
    let (status, body) = h.call_as("o_portal", query(&no)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tradeState"], "REFUND");
    assert_eq!(body["data"]["order"]["status"], "refunded", "{body}");

    let events = told(&h, &no);
    assert_eq!(events.len(), 1, "one delivery: {events:?}");
    let e = &events[0];
    assert_eq!(e["event"], "payment");
    assert_eq!(
        e["status"], "refunded",
        "never `paid` for money that went back"
    );
    assert_eq!(e["orderStatus"], "refunded");
    assert_eq!(e["paidAmount"], 2990);
    assert_eq!(
        e["refundedAmount"],
        Value::Null,
        "WeChat Pay did not say how much"
    );

    let order = h.order(&no).await;
    assert_eq!(order.status, OrderStatus::Refunded);
    assert_eq!(order.paid_amount, Some(2990));
    let logs: Vec<_> = h
        .store
        .logs_for_order(&no)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|l| l.event_type)
        .collect();
    let paid = logs.iter().position(|e| e == "TRANSACTION.SUCCESS");
    let refunded = logs.iter().position(|e| e == "TRANSACTION.REFUND");
    assert!(
        matches!((paid, refunded), (Some(p), Some(r)) if p < r),
        "paid, then refunded: {logs:?}"
    );

    // Nothing more goes out from our side, and asking again tells nothing new.
    let (status, _) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no }))
        .await;
    assert_eq!(status, 409, "the order is refunded");
    h.call_as("o_portal", query(&no)).await;
    assert_eq!(told(&h, &no).len(), 1);
}

async fn a_payment_event_keeps_the_fields_backends_read_today(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_pay", "premium").await;
    let events = told(&h, &no);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    for (field, want) in [
        ("event", json!("payment")),
        ("status", json!("paid")),
        ("amount", json!(2990)),
        ("paidAmount", json!(2990)),
        ("refundedAmount", json!(0)),
        ("orderStatus", json!("paid")),
        ("packageType", json!("premium")),
        ("openid", json!("o_pay")),
    ] {
        assert_eq!(e[field], want, "{field} in {e}");
    }
    assert!(e["transactionId"].is_string(), "{e}");
}

async fn each_refund_outcome_is_told_once(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_rf", "premium").await;
    let first = h.start_refund(&no, Some(1000)).await;
    h.finish_refund(&first, RefundOutcome::Success).await;

    let refunds = |h: &Harness| -> Vec<Value> {
        told(h, &no)
            .into_iter()
            .filter(|e| e["event"] == "refund")
            .collect()
    };
    let got = refunds(&h);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e["outTradeNo"], no.as_str());
    assert_eq!(e["outRefundNo"], first.as_str());
    assert!(e["refundId"].is_string(), "{e}");
    assert_eq!(e["status"], "success");
    assert_eq!(e["amount"], 1000);
    assert_eq!(e["refundedAmount"], 1000);
    assert_eq!(e["orderStatus"], "paid");

    // The same outcome again (a duplicate notification, a query) tells nothing new.
    let replay = h.sim.build_refund_notification(&first).unwrap();
    let refund_url = h.sim.refund(&first).unwrap().notify_url.unwrap();
    assert_eq!(
        h.sim.deliver(&replay, &refund_url).await.unwrap().status,
        204
    );
    let (status, _) = h
        .call_trusted(json!({ "type": "wxpay_refund_query", "outRefundNo": first }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(refunds(&h).len(), 1);

    // Abnormal, then re-routed and successful: two outcomes, each told once.
    let second = h.start_refund(&no, Some(990)).await;
    h.finish_refund(&second, RefundOutcome::Abnormal).await;
    h.finish_refund(&second, RefundOutcome::Success).await;
    // Closed: the money stays with the merchant.
    let third = h.start_refund(&no, None).await;
    h.finish_refund(&third, RefundOutcome::Closed).await;

    let got = refunds(&h);
    let summary: Vec<_> = got
        .iter()
        .map(|e| {
            (
                e["outRefundNo"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["refundedAmount"].as_i64().unwrap(),
                e["orderStatus"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |rf: &str, s: &str, refunded: i64, order: &str| {
        (rf.to_string(), s.to_string(), refunded, order.to_string())
    };
    assert_eq!(
        summary,
        vec![
            row(&first, "success", 1000, "paid"),
            row(&second, "abnormal", 1000, "paid"),
            row(&second, "success", 1990, "paid"),
            row(&third, "closed", 1990, "paid"),
        ]
    );
    assert_eq!(got[3]["amount"], 1000);
    assert!(h.backend.deliveries().iter().all(|d| d.secret_ok));
}

async fn a_refund_synced_by_query_is_told(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_rq", "premium").await;
    let rf = h.start_refund(&no, None).await;
    h.sim
        .complete_refund_silently(&rf, RefundOutcome::Success)
        .unwrap();
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund_query", "outRefundNo": rf }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.refund_status(&rf).await, RefundStatus::Success);
    let got: Vec<_> = told(&h, &no)
        .into_iter()
        .filter(|e| e["event"] == "refund")
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["status"], "success");
    assert_eq!(got[0]["refundedAmount"], 2990);
    assert_eq!(got[0]["orderStatus"], "refunded");
}

async fn reconciliation_tells_the_same_truth(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    // Paid, the notification lost, refunded in the merchant portal the same day.
    let gone = h.create_order("o_rec_gone", "premium").await;
    h.sim.mark_paid_silently(&gone).await.unwrap();
    h.sim.portal_refund(&gone, 2990).unwrap();
    // A refund that succeeded without its notification.
    let kept = h.create_paid_order("o_rec_kept", "premium").await;
    let rf = h.start_refund(&kept, Some(1000)).await;
    h.sim
        .complete_refund_silently(&rf, RefundOutcome::Success)
        .unwrap();

    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap())
        .date()
        .to_string();
    let run = json!({ "type": "wxpay_reconcile", "billDate": today, "early": true });
    let (status, body) = h.call_trusted(run.clone()).await;
    assert_eq!(status, 200, "{body}");

    let told = told(&h, &gone);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["event"], "payment");
    assert_eq!(
        told[0]["status"], "refunded",
        "never `paid` for money that went back"
    );
    assert_eq!(h.order(&gone).await.status, OrderStatus::Refunded);

    let refunds = h.backend.events_for(&kept, "refund");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["outRefundNo"], rf.as_str());
    assert_eq!(refunds[0]["status"], "success");
    assert_eq!(refunds[0]["refundedAmount"], 1000);

    // A second run tells nothing again.
    h.call_trusted(run).await;
    assert_eq!(self::told(&h, &gone).len(), 1);
    assert_eq!(h.backend.events_for(&kept, "refund").len(), 1);
}
