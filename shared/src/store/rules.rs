//! The decisions both stores make, as pure functions: what counts as unpaid, how much of an
//! order may still be refunded, which refund results still apply, and how each refund
//! transition moves its order's totals. The dialects only read the rows these need and
//! write what they decide, each write guarded by the condition the decision rested on.

use once_cell::sync::Lazy;
use time::OffsetDateTime;

use super::rows::stored;
use super::{
    NewRefund, Order, OrderStatus, OutboxRow, OutboxStatus, PaidTransition, Refund,
    RefundReservation, RefundResult, RefundStatus, StoreError,
};

/// Money has not moved yet: WeChat Pay may still report these orders paid.
pub const UNPAID: &[OrderStatus] = &[
    OrderStatus::Pending,
    OrderStatus::Failed,
    OrderStatus::Closed,
];

/// A prepay that did not succeed may fail an order only while nothing else happened to it.
pub const FAILABLE: &[OrderStatus] = &[OrderStatus::Pending];

/// An order nobody paid may be closed; a failed one too (its prepay may exist after all).
pub const CLOSABLE: &[OrderStatus] = &[OrderStatus::Pending, OrderStatus::Failed];

/// Refunds whose money WeChat Pay holds or may still pay out: `processing`, and `abnormal`
/// until the merchant re-routes it. They count against what remains.
pub const IN_FLIGHT: &[RefundStatus] = &[RefundStatus::Processing, RefundStatus::Abnormal];

/// Refunds a final result may still change. `failed` is one: WeChat Pay may have created the
/// refund after all (a timeout we took for a refusal), and its word wins. So is `abnormal`:
/// a re-routed abnormal refund still ends `success` or `closed`.
pub const OPEN: &[RefundStatus] = &[
    RefundStatus::Processing,
    RefundStatus::Failed,
    RefundStatus::Abnormal,
];

/// `'pending', 'failed', 'closed'`: a status set as an SQL list, for guarded updates.
pub fn sql_list<S: Copy>(statuses: &[S], name: fn(S) -> &'static str) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", name(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub static UNPAID_SQL: Lazy<String> = Lazy::new(|| sql_list(UNPAID, OrderStatus::as_str));
pub static FAILABLE_SQL: Lazy<String> = Lazy::new(|| sql_list(FAILABLE, OrderStatus::as_str));
pub static CLOSABLE_SQL: Lazy<String> = Lazy::new(|| sql_list(CLOSABLE, OrderStatus::as_str));
pub static IN_FLIGHT_SQL: Lazy<String> = Lazy::new(|| sql_list(IN_FLIGHT, RefundStatus::as_str));
pub static OPEN_SQL: Lazy<String> = Lazy::new(|| sql_list(OPEN, RefundStatus::as_str));

/// What the order was paid (the paid amount once known, the order amount before).
pub fn paid_total(order: &Order) -> i64 {
    order.paid_amount.unwrap_or(order.amount)
}

/// Why a refund may not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotRefundable(OrderStatus),
    Exceeds { requested: i64, remaining: i64 },
}

impl From<Refusal> for RefundReservation {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotRefundable(status) => RefundReservation::NotRefundable(status),
            Refusal::Exceeds {
                requested,
                remaining,
            } => RefundReservation::Exceeds {
                requested,
                remaining,
            },
        }
    }
}

/// The refund to reserve on `order`: `requested` (or everything that remains when `None`),
/// where `remaining = paid − refunded − reserved` (what refunds in flight hold, kept on the
/// order row). The store then writes the reservation as an update of that row guarded by
/// the same condition ([`super::sql::GUARDED_ORDER_DELTA`]), so the decision holds even if
/// the row changed after it was read.
pub fn reserve(order: &Order, requested: Option<i64>) -> Result<i64, Refusal> {
    if order.status != OrderStatus::Paid {
        return Err(Refusal::NotRefundable(order.status));
    }
    let remaining = paid_total(order) - order.refunded_amount - order.refund_reserved;
    let requested = requested.unwrap_or(remaining);
    if requested < 1 || requested > remaining {
        return Err(Refusal::Exceeds {
            requested,
            remaining,
        });
    }
    Ok(requested)
}

/// What a refund in `status` holds of its order: (refunded, reserved). Money WeChat Pay paid
/// out is refunded; money it holds or may still pay out (`processing`, `abnormal`) is
/// reserved; a `closed` or `failed` refund holds nothing.
pub fn holds(status: RefundStatus, amount: i64) -> (i64, i64) {
    match status {
        RefundStatus::Success => (amount, 0),
        s if IN_FLIGHT.contains(&s) => (0, amount),
        _ => (0, 0),
    }
}

/// How a refund's transition moves its order's `refunded_amount` and `refund_reserved`.
/// Every transition — reserved, revived, refused, finished, a portal refund recorded —
/// goes through this one rule, so the counter stays the sum of the refunds in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrderDelta {
    pub refunded: i64,
    pub reserved: i64,
}

impl OrderDelta {
    /// `before`: the refund's (status, amount) as it was, `None` for a new row.
    pub fn of(before: Option<(RefundStatus, i64)>, after: (RefundStatus, i64)) -> Self {
        let (r0, h0) = before.map_or((0, 0), |(s, a)| holds(s, a));
        let (r1, h1) = holds(after.0, after.1);
        OrderDelta {
            refunded: r1 - r0,
            reserved: h1 - h0,
        }
    }

    pub fn is_zero(self) -> bool {
        self == OrderDelta::default()
    }

    /// What the transition newly takes from what remains of the order, when it is this
    /// store's decision (a reservation, a revival, a refund we did not know): the guard of
    /// the write.
    pub fn takes(self) -> i64 {
        self.refunded + self.reserved
    }
}

/// An `out_refund_no` that already exists: the same refund retried, or another order's.
pub fn existing_reservation(existing: Refund, out_trade_no: &str) -> RefundReservation {
    if existing.out_trade_no == out_trade_no {
        RefundReservation::Existing(existing)
    } else {
        RefundReservation::OtherOrder(existing)
    }
}

pub use super::refund_check::check_result;

/// Whether a final result still changes a known refund: it must name the same order, the
/// refund must be open, and the state must differ.
pub fn result_applies(known: &Refund, result: &RefundResult) -> bool {
    if known.out_trade_no != result.out_trade_no {
        tracing::warn!(
            out_refund_no = %result.out_refund_no,
            "refund result names another order than the one recorded; ignored"
        );
        return false;
    }
    OPEN.contains(&known.status) && known.status != result.status
}

/// The refund a successful reservation writes: `processing`, WeChat Pay not yet asked.
pub fn reserved_refund(refund: &NewRefund, amount: i64) -> Refund {
    Refund {
        out_refund_no: refund.out_refund_no.clone(),
        out_trade_no: refund.out_trade_no.clone(),
        refund_id: None,
        amount,
        status: RefundStatus::Processing,
        reason: refund.reason.clone(),
        created_at: stored(refund.now),
        success_at: None,
    }
}

/// When a refund succeeded: as reported, or now when WeChat Pay did not say.
fn success_at(result: &RefundResult) -> Option<OffsetDateTime> {
    (result.status == RefundStatus::Success)
        .then(|| stored(result.success_at.unwrap_or(result.now)))
}

/// A refund we did not reserve (made in the merchant portal, or our reservation was lost),
/// recorded as WeChat Pay reports it.
pub fn reported_refund(result: &RefundResult) -> Refund {
    Refund {
        out_refund_no: result.out_refund_no.clone(),
        out_trade_no: result.out_trade_no.clone(),
        refund_id: result.refund_id.clone(),
        amount: result.amount,
        status: result.status,
        reason: None,
        created_at: stored(result.now),
        success_at: success_at(result),
    }
}

/// A known refund after a result that applies: the new state, WeChat Pay's `refund_id`
/// when it gave one, and on success the amount it actually refunded.
pub fn applied_result(known: &Refund, result: &RefundResult) -> Refund {
    Refund {
        refund_id: result.refund_id.clone().or_else(|| known.refund_id.clone()),
        amount: if result.status == RefundStatus::Success {
            result.amount
        } else {
            known.amount
        },
        status: result.status,
        success_at: success_at(result),
        ..known.clone()
    }
}

/// The delivery `mark_paid` queues, as stored: leased to the payer's instance, its first
/// attempt counted, due now should the lease lapse.
pub fn leased_outbox_row(id: i64, paid: &PaidTransition, lease: String) -> OutboxRow {
    leased_row(
        id,
        &paid.out_trade_no,
        paid.business_type.clone(),
        paid.outbox_payload.clone(),
        lease,
        paid.now,
    )
}

/// A delivery as queued leased to the instance that recorded what it tells.
pub fn leased_row(
    id: i64,
    out_trade_no: &str,
    business_type: Option<String>,
    payload: String,
    lease: String,
    now: OffsetDateTime,
) -> OutboxRow {
    OutboxRow {
        id,
        out_trade_no: out_trade_no.to_string(),
        business_type,
        payload,
        status: OutboxStatus::Pending,
        attempts: 1,
        last_error: None,
        next_try_at: stored(now),
        created_at: stored(now),
        delivered_at: None,
        lease: Some(lease),
    }
}

/// Whether an order may hold a refund we did not reserve (made in the merchant portal): a
/// paid order, or one recorded `refunded` because WeChat Pay reported its payment already
/// refunded (`trade_state` `REFUND`) before we heard of the refunds themselves. What
/// remains is counted the same way for both.
pub fn reserve_reported(order: &Order, amount: i64) -> Result<i64, Refusal> {
    if order.status == OrderStatus::Refunded {
        let as_paid = Order {
            status: OrderStatus::Paid,
            ..order.clone()
        };
        return reserve(&as_paid, Some(amount));
    }
    reserve(order, Some(amount))
}

/// A fresh lease token: who holds a claimed delivery.
pub fn new_lease_token() -> String {
    crate::util::random_alnum(32)
}

/// A result `finish_refund` accepts: only outcomes are recorded.
pub fn require_final(result: &RefundResult) -> Result<(), StoreError> {
    if result.status.is_final() {
        Ok(())
    } else {
        Err(StoreError::Query(format!(
            "finish_refund needs a final status, got {}",
            result.status.as_str()
        )))
    }
}

#[cfg(test)]
pub(super) mod tests {
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
}
