//! A refund whose call died stays `processing` no longer than `REFUND_RESOLVE_AFTER_SECS`:
//! the scheduled sweep (`wxpay_notify_retry` with `all`) asks WeChat Pay about it. Not
//! there: failed, its amount free again; there: its outcome recorded and told to the
//! backend once; WeChat Pay not answering: left reserved. A retry with the same
//! `outRefundNo` still revives a refund the sweep failed.
//!
//! "Killed between the reservation and the call" is the state such a kill leaves: the
//! reservation written to the store, WeChat Pay never asked. "Killed after the call reached
//! WeChat Pay" is a call WeChat Pay processed but whose answer never came back (the
//! simulator holds it past the function's WeChat Pay timeout).

mod common;

use std::time::Duration;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use wxpay_shared::store::{NewRefund, RefundReservation, RefundStatus};
use wxpay_sim::{Fault, FaultKind, RefundOutcome};

both_stores!(
    a_refund_whose_call_never_reached_wechat_pay_is_failed_and_its_amount_freed,
    a_refund_wechat_pay_took_before_the_call_died_is_synced_and_told,
    a_refund_is_left_reserved_while_wechat_pay_does_not_answer,
);

const RESOLVE_AFTER: Duration = Duration::from_secs(1);

async fn harness(kind: StoreKind) -> Option<Harness> {
    Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("REFUND_RESOLVE_AFTER_SECS".into(), "1".into()));
        // WeChat Pay answers slower than this are timeouts.
        o.extra_vars
            .push(("WECHATPAY_TIMEOUT_MS".into(), "700".into()));
    })
    .await
}

async fn sweep(h: &Harness) -> Value {
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_notify_retry", "all": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["refunds"].clone()
}

/// What an instance killed right after reserving leaves behind.
async fn reserved_then_killed(h: &Harness, no: &str, out_refund_no: &str, amount: i64) {
    let reserved = h
        .store
        .reserve_refund(&NewRefund {
            out_refund_no: out_refund_no.into(),
            out_trade_no: no.into(),
            amount: Some(amount),
            reason: None,
            now: wxpay_shared::util::now_utc(),
        })
        .await
        .unwrap();
    assert!(matches!(reserved, RefundReservation::Created(_)));
}

fn refund_events(h: &Harness, no: &str) -> Vec<Value> {
    h.backend.events_for(no, "refund")
}

async fn a_refund_whose_call_never_reached_wechat_pay_is_failed_and_its_amount_freed(
    kind: StoreKind,
) {
    let Some(h) = harness(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_sw1", "premium").await;
    reserved_then_killed(&h, &no, "RF-KILLED-0001", 2990).await;
    assert_eq!(h.order(&no).await.refund_reserved, 2990);

    // Young: a call may still be on its way, so the sweep does not ask.
    let report = sweep(&h).await;
    assert_eq!(report["lookedAt"], 0, "{report}");
    assert_eq!(
        h.refund_status("RF-KILLED-0001").await,
        RefundStatus::Processing
    );

    tokio::time::sleep(RESOLVE_AFTER + Duration::from_millis(200)).await;
    let report = sweep(&h).await;
    assert_eq!(
        (report["lookedAt"].as_i64(), report["failed"].as_i64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        h.refund_status("RF-KILLED-0001").await,
        RefundStatus::Failed
    );
    assert_eq!(
        h.order(&no).await.refund_reserved,
        0,
        "the amount is free again"
    );
    assert!(
        refund_events(&h, &no).is_empty(),
        "nothing happened to tell"
    );
    // Once resolved, it is not asked about again.
    assert_eq!(sweep(&h).await["lookedAt"], 0);

    // The caller's retry with the same number revives it, and WeChat Pay does it.
    let (status, body) = h
        .call_trusted(
            json!({ "type": "wxpay_refund", "outTradeNo": no, "outRefundNo": "RF-KILLED-0001" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.refund_status("RF-KILLED-0001").await,
        RefundStatus::Processing
    );
    assert!(h.sim.refund("RF-KILLED-0001").is_some());
    // Revived just now: the sweep leaves it to its call.
    assert_eq!(sweep(&h).await["lookedAt"], 0);
    h.finish_refund("RF-KILLED-0001", RefundOutcome::Success)
        .await;
    assert_eq!(h.order(&no).await.refunded_amount, 2990);
}

async fn a_refund_wechat_pay_took_before_the_call_died_is_synced_and_told(kind: StoreKind) {
    let Some(h) = harness(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_sw2", "premium").await;
    // WeChat Pay takes the refund; its answer never comes back in time.
    h.sim.inject_fault(Fault::new(
        "/v3/refund/domestic/refunds",
        1,
        FaultKind::Delay(Duration::from_secs(3)),
    ));
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 1000, "outRefundNo": "RF-STALLED-001" }))
        .await;
    assert_eq!(status / 100, 5, "{body}");
    assert!(
        h.sim.refund("RF-STALLED-001").is_some(),
        "WeChat Pay has it"
    );
    // It succeeds there, and its notification is lost.
    h.sim
        .complete_refund_silently("RF-STALLED-001", RefundOutcome::Success)
        .unwrap();
    assert_eq!(
        h.refund_status("RF-STALLED-001").await,
        RefundStatus::Processing
    );

    tokio::time::sleep(RESOLVE_AFTER + Duration::from_millis(200)).await;
    let report = sweep(&h).await;
    assert_eq!(
        (report["lookedAt"].as_i64(), report["synced"].as_i64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        h.refund_status("RF-STALLED-001").await,
        RefundStatus::Success
    );
    let order = h.order(&no).await;
    assert_eq!((order.refunded_amount, order.refund_reserved), (1000, 0));
    let told = refund_events(&h, &no);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["outRefundNo"], "RF-STALLED-001");
    assert_eq!(told[0]["status"], "success");
    assert_eq!(told[0]["refundedAmount"], 1000);
    // Told once, however often the sweep runs.
    sweep(&h).await;
    assert_eq!(refund_events(&h, &no).len(), 1);
}

async fn a_refund_is_left_reserved_while_wechat_pay_does_not_answer(kind: StoreKind) {
    let Some(h) = harness(kind).await else {
        return;
    };
    let no = h.create_paid_order("o_sw3", "premium").await;
    reserved_then_killed(&h, &no, "RF-UNKNOWN-001", 500).await;
    tokio::time::sleep(RESOLVE_AFTER + Duration::from_millis(200)).await;
    for kind in [
        FaultKind::status(500, "SYSTEM_ERROR", "系统错误"),
        FaultKind::status(429, "FREQUENCY_LIMITED", "频率限制"),
        FaultKind::Delay(Duration::from_secs(2)),
        FaultKind::Disconnect,
    ] {
        // Every try of the lookup (the client retries a 5xx once) meets the fault.
        h.sim.inject_fault(Fault::new(
            "/v3/refund/domestic/refunds/RF-UNKNOWN-001",
            2,
            kind,
        ));
        let report = sweep(&h).await;
        h.sim.clear_faults();
        assert_eq!(report["left"], 1, "{report}");
        assert_eq!(
            h.refund_status("RF-UNKNOWN-001").await,
            RefundStatus::Processing
        );
        assert_eq!(h.order(&no).await.refund_reserved, 500, "fail closed");
    }
    // WeChat Pay answers again: not there, so the amount is freed.
    assert_eq!(sweep(&h).await["failed"], 1);
    assert_eq!(h.order(&no).await.refund_reserved, 0);
}
