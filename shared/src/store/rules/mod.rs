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
pub(super) mod tests;
