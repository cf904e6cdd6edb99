//! The rows the store reads and writes, and the outcomes of its transitions.

use serde::Serialize;
use time::OffsetDateTime;

/// What can go wrong talking to the database. Messages never carry the connection URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed for another reason (constraint, schema, bad data).
    #[error("database error: {0}")]
    Query(String),
    /// `DATABASE_URL` names something we cannot open.
    #[error("unsupported DATABASE_URL: {0}")]
    BadUrl(String),
    /// The database's schema is not one this release can serve (behind it, never migrated,
    /// or changed by a newer release in a way it cannot follow); the message says what to
    /// run. Also a failed migration.
    #[error("{0}")]
    Schema(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Paid,
    Closed,
    Failed,
    Refunded,
}

impl OrderStatus {
    /// Every status, in the order answers list them.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Closed,
        OrderStatus::Failed,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OrderStatus::Pending,
            "paid" => OrderStatus::Paid,
            "closed" => OrderStatus::Closed,
            "failed" => OrderStatus::Failed,
            "refunded" => OrderStatus::Refunded,
            _ => return None,
        })
    }

    /// Money has not moved yet: WeChat Pay may still report this order paid.
    pub fn is_unpaid(self) -> bool {
        super::rules::UNPAID.contains(&self)
    }
}

/// A row to insert into `orders`, always as `pending`.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub out_trade_no: String,
    pub openid: Option<String>,
    pub user_id: Option<String>,
    pub generation_id: Option<String>,
    pub package_type: Option<String>,
    pub business_type: Option<String>,
    pub business_id: Option<String>,
    /// Fen.
    pub amount: i64,
    pub description: String,
    pub trade_type: String,
    pub created_at: OffsetDateTime,
}

/// A row of `orders`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    pub openid: Option<String>,
    pub user_id: Option<String>,
    pub generation_id: Option<String>,
    pub package_type: Option<String>,
    pub business_type: Option<String>,
    pub business_id: Option<String>,
    pub amount: i64,
    pub paid_amount: Option<i64>,
    pub refunded_amount: i64,
    /// What refunds in flight (`processing`, `abnormal`) hold of it: the store's own
    /// bookkeeping for the refund guard, not part of any answer.
    #[serde(skip_serializing)]
    pub refund_reserved: i64,
    pub description: String,
    pub trade_type: String,
    pub status: OrderStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A row for `payment_logs`.
#[derive(Debug, Clone, Default)]
pub struct PaymentLog {
    /// `order` / `callback` / `query` / `refund` / `refund_callback` / `notify`.
    pub log_type: String,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub openid: Option<String>,
    pub package_type: Option<String>,
    pub generation_id: Option<String>,
    pub event_type: Option<String>,
    pub amount_total: Option<i64>,
    /// Free-form JSON text for an operator (never secrets).
    pub detail: Option<String>,
}

/// Everything the `pending → paid` transition writes, in one transaction.
#[derive(Debug, Clone)]
pub struct PaidTransition {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub payer_openid: Option<String>,
    pub paid_amount: i64,
    pub paid_at: OffsetDateTime,
    pub log: PaymentLog,
    /// The order's `business_type`, which picks the backend the outbox row goes to.
    pub business_type: Option<String>,
    /// JSON body for the backend notification (contract §8); stored in `notify_outbox`.
    pub outbox_payload: String,
    /// The outbox row is queued leased to the caller for this long (by the database's
    /// clock), its first attempt counted.
    pub lease_secs: i64,
    /// WeChat Pay already reports the payment refunded (`trade_state` `REFUND`): the order
    /// is recorded paid and then refunded in the same transaction, this being the second
    /// log row, so nothing ever reads it as paid for money that went back.
    pub refunded: Option<PaymentLog>,
    pub now: OffsetDateTime,
}

impl PaidTransition {
    /// The status the transition leaves the order in.
    pub fn status(&self) -> OrderStatus {
        if self.refunded.is_some() {
            OrderStatus::Refunded
        } else {
            OrderStatus::Paid
        }
    }
}

#[derive(Debug, Clone)]
pub enum PaidOutcome {
    /// This call moved the order to `paid`; `outbox` is the delivery it queued, leased to
    /// this caller.
    Transitioned { outbox: OutboxRow },
    /// The order was already paid (or refunded): nothing changed.
    AlreadyPaid(Order),
    /// No such order.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    Processing,
    Success,
    Closed,
    Abnormal,
    /// WeChat Pay refused to create it; it no longer counts against what remains.
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "processing",
            RefundStatus::Success => "success",
            RefundStatus::Closed => "closed",
            RefundStatus::Abnormal => "abnormal",
            RefundStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "processing" => RefundStatus::Processing,
            "success" => RefundStatus::Success,
            "closed" => RefundStatus::Closed,
            "abnormal" => RefundStatus::Abnormal,
            "failed" => RefundStatus::Failed,
            _ => return None,
        })
    }

    /// A state WeChat Pay reports as an outcome. `abnormal` is one, but not the last word:
    /// a re-routed abnormal refund still ends `success` or `closed`.
    pub fn is_final(self) -> bool {
        !matches!(self, RefundStatus::Processing)
    }
}

/// A row of `refunds`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: Option<String>,
    pub amount: i64,
    pub status: RefundStatus,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub success_at: Option<OffsetDateTime>,
}

/// A refund the caller asks for, before WeChat Pay is called.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    /// Fen; `None` means "whatever remains".
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub now: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub enum RefundReservation {
    /// A new `processing` row was written.
    Created(Refund),
    /// This call moved a `failed` refund back to `processing` and reserved its amount
    /// again. Of concurrent revivals of one refund exactly one gets this; the others get
    /// `Existing` with the row as the winner left it.
    Revived(Refund),
    /// `out_refund_no` was already known for this order: the same refund, retried.
    Existing(Refund),
    /// `out_refund_no` is already used by another order.
    OtherOrder(Refund),
    OrderNotFound,
    /// The order is not paid (or already fully refunded).
    NotRefundable(OrderStatus),
    /// The amount is above what remains after refunds made and in flight (`processing`,
    /// and `abnormal`, whose money WeChat Pay still holds until it is re-routed).
    Exceeds {
        requested: i64,
        remaining: i64,
    },
}

/// A refund's final state, from a notification or a query.
#[derive(Debug, Clone)]
pub struct RefundResult {
    pub out_refund_no: String,
    pub out_trade_no: String,
    /// The payment WeChat Pay says was refunded; must be the order's.
    pub transaction_id: Option<String>,
    pub refund_id: Option<String>,
    /// Fen refunded (the refund's own amount).
    pub amount: i64,
    /// `amount.total`: what WeChat Pay says the order was paid; must be what we recorded.
    pub order_total: i64,
    /// Final: success, closed or abnormal.
    pub status: RefundStatus,
    pub success_at: Option<OffsetDateTime>,
    pub log: PaymentLog,
    /// The backend hears the outcome: queued with the transition that records it, so each
    /// outcome is delivered once. `None`: nobody is told.
    pub delivery: Option<RefundDelivery>,
    pub now: OffsetDateTime,
}

/// How a recorded refund outcome is told to the backend: its body, built from the order
/// and the refund as the transition leaves them, queued leased to the recorder.
#[derive(Debug, Clone, Copy)]
pub struct RefundDelivery {
    pub payload: fn(&Order, &Refund) -> String,
    pub lease_secs: i64,
}

/// What `finish_refund_queued` did, and the delivery it queued (leased to the caller).
#[derive(Debug, Clone)]
pub struct FinishedRefund {
    pub outcome: RefundOutcome,
    pub outbox: Option<OutboxRow>,
}

impl From<RefundOutcome> for FinishedRefund {
    fn from(outcome: RefundOutcome) -> Self {
        FinishedRefund {
            outcome,
            outbox: None,
        }
    }
}

/// What `finish_refund` did with a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The refund's state (and on success the order's refunded amount) changed.
    Applied,
    /// Already recorded, or no longer open: nothing changed.
    Unchanged,
    /// The result contradicts the rows we hold: nothing changed.
    Mismatch(RefundMismatch),
}

/// Why a verified refund result does not match the refund and order we hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundMismatch {
    #[error("no order {0} in the store")]
    UnknownOrder(String),
    #[error("refund {out_refund_no} belongs to order {stored}, not {got}")]
    OtherOrder {
        out_refund_no: String,
        stored: String,
        got: String,
    },
    #[error("transaction_id {got:?} is not the order's {expected:?}")]
    Transaction {
        expected: Option<String>,
        got: Option<String>,
    },
    #[error("amount.total {got} is not what the order was paid ({expected})")]
    Total { expected: i64, got: i64 },
    #[error("amount.refund {got} is not the refund's amount {expected}")]
    Amount { expected: i64, got: i64 },
    #[error("order is {0}, not a paid order a new refund could belong to")]
    NotRefundable(&'static str),
    #[error("amount.refund {requested} does not fit what remains ({remaining})")]
    Exceeds { requested: i64, remaining: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Pending,
    Delivered,
}

impl OutboxStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OutboxStatus::Pending),
            "delivered" => Some(OutboxStatus::Delivered),
            _ => None,
        }
    }
}

/// A row of `notify_outbox`: one delivery to the business backend.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub out_trade_no: String,
    pub business_type: Option<String>,
    /// JSON body to POST.
    pub payload: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_try_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
    /// The lease this instance holds on the row (from its claim or its `mark_paid`); every
    /// write that ends the delivery names it.
    pub lease: Option<String>,
}
