use time::macros::datetime;

use super::*;

pub(in crate::store) fn order(
    status: OrderStatus,
    amount: i64,
    paid: Option<i64>,
    refunded: i64,
) -> Order {
    let t = datetime!(2026-11-01 10:00 UTC);
    Order {
        out_trade_no: "WX1".into(),
        transaction_id: None,
        openid: None,
        user_id: None,
        generation_id: None,
        package_type: None,
        business_type: None,
        business_id: None,
        amount,
        paid_amount: paid,
        refunded_amount: refunded,
        refund_reserved: 0,
        description: String::new(),
        trade_type: "JSAPI".into(),
        status,
        paid_at: None,
        created_at: t,
        updated_at: t,
    }
}

pub(in crate::store) fn refund(order: &str, status: RefundStatus) -> Refund {
    Refund {
        out_refund_no: "RF1".into(),
        out_trade_no: order.into(),
        refund_id: None,
        amount: 100,
        status,
        reason: None,
        created_at: datetime!(2026-11-01 10:00 UTC),
        success_at: None,
    }
}

pub(in crate::store) fn result(order: &str, status: RefundStatus) -> RefundResult {
    RefundResult {
        out_refund_no: "RF1".into(),
        out_trade_no: order.into(),
        transaction_id: Some("TX1".into()),
        refund_id: None,
        amount: 100,
        order_total: 1000,
        status,
        success_at: None,
        log: Default::default(),
        delivery: None,
        now: datetime!(2026-11-01 10:00 UTC),
    }
}

#[test]
fn unpaid_is_what_a_payment_may_still_change() {
    for s in [
        OrderStatus::Pending,
        OrderStatus::Failed,
        OrderStatus::Closed,
    ] {
        assert!(UNPAID.contains(&s) && s.is_unpaid());
    }
    for s in [OrderStatus::Paid, OrderStatus::Refunded] {
        assert!(!UNPAID.contains(&s) && !s.is_unpaid());
    }
    assert_eq!(*UNPAID_SQL, "'pending', 'failed', 'closed'");
    assert_eq!(*IN_FLIGHT_SQL, "'processing', 'abnormal'");
}

#[test]
fn what_remains_is_paid_minus_refunded_minus_reserved() {
    let mut o = order(OrderStatus::Paid, 1000, Some(900), 200);
    o.refund_reserved = 300;
    assert_eq!(reserve(&o, None).ok(), Some(400));
    assert_eq!(reserve(&o, Some(400)).ok(), Some(400));
    assert!(matches!(
        reserve(&o, Some(401)),
        Err(Refusal::Exceeds {
            requested: 401,
            remaining: 400
        })
    ));
    assert!(matches!(
        reserve(&o, Some(0)),
        Err(Refusal::Exceeds { requested: 0, .. })
    ));
    // Everything reserved: "the rest" is nothing, and nothing is not a refund.
    o.refund_reserved = 700;
    assert!(matches!(
        reserve(&o, None),
        Err(Refusal::Exceeds {
            requested: 0,
            remaining: 0
        })
    ));
    // Before the paid amount is known the order amount counts.
    let o = order(OrderStatus::Paid, 1000, None, 0);
    assert_eq!(reserve(&o, None).ok(), Some(1000));
}

#[test]
fn every_refund_transition_moves_the_order_totals_by_what_it_holds() {
    use RefundStatus::*;
    let d = |before, after| OrderDelta::of(before, after);
    let moved = |refunded, reserved| OrderDelta { refunded, reserved };
    // Reserved, then each way it can end.
    assert_eq!(d(None, (Processing, 60)), moved(0, 60));
    assert_eq!(d(Some((Processing, 60)), (Success, 60)), moved(60, -60));
    assert_eq!(d(Some((Processing, 60)), (Closed, 60)), moved(0, -60));
    assert_eq!(d(Some((Processing, 60)), (Failed, 60)), moved(0, -60));
    assert!(d(Some((Processing, 60)), (Abnormal, 60)).is_zero());
    assert_eq!(d(Some((Abnormal, 60)), (Success, 60)), moved(60, -60));
    assert_eq!(d(Some((Abnormal, 60)), (Closed, 60)), moved(0, -60));
    // Refused, then revived, or WeChat Pay had it after all.
    assert_eq!(d(Some((Failed, 60)), (Processing, 60)), moved(0, 60));
    assert_eq!(d(Some((Failed, 60)), (Success, 60)), moved(60, 0));
    assert!(d(Some((Failed, 60)), (Closed, 60)).is_zero());
    // A refund made in the merchant portal, first heard of as an outcome.
    assert_eq!(d(None, (Success, 30)), moved(30, 0));
    assert_eq!(d(None, (Abnormal, 30)), moved(0, 30));
    assert!(d(None, (Closed, 30)).is_zero());
    assert_eq!(d(None, (Processing, 60)).takes(), 60);
    assert_eq!(d(Some((Failed, 60)), (Processing, 60)).takes(), 60);
}

#[test]
fn only_paid_orders_are_refundable() {
    for s in [
        OrderStatus::Pending,
        OrderStatus::Failed,
        OrderStatus::Closed,
        OrderStatus::Refunded,
    ] {
        assert!(matches!(
            reserve(&order(s, 1000, Some(1000), 0), Some(1)),
            Err(Refusal::NotRefundable(got)) if got == s
        ));
    }
}

#[test]
fn results_apply_to_open_refunds_of_the_same_order_once() {
    use RefundStatus::*;
    assert!(result_applies(
        &refund("WX1", Processing),
        &result("WX1", Success)
    ));
    assert!(result_applies(
        &refund("WX1", Failed),
        &result("WX1", Success)
    ));
    assert!(result_applies(
        &refund("WX1", Abnormal),
        &result("WX1", Closed)
    ));
    assert!(!result_applies(
        &refund("WX1", Abnormal),
        &result("WX1", Abnormal)
    ));
    assert!(!result_applies(
        &refund("WX1", Success),
        &result("WX1", Closed)
    ));
    assert!(!result_applies(
        &refund("WX1", Closed),
        &result("WX1", Success)
    ));
    assert!(!result_applies(
        &refund("WX2", Processing),
        &result("WX1", Success)
    ));
    assert!(require_final(&result("WX1", Processing)).is_err());
    assert!(require_final(&result("WX1", Abnormal)).is_ok());
}

#[test]
fn existing_numbers_are_the_same_refund_only_on_the_same_order() {
    assert!(matches!(
        existing_reservation(refund("WX1", RefundStatus::Processing), "WX1"),
        RefundReservation::Existing(_)
    ));
    assert!(matches!(
        existing_reservation(refund("WX2", RefundStatus::Processing), "WX1"),
        RefundReservation::OtherOrder(_)
    ));
}
