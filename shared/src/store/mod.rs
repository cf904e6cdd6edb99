//! Where orders, logs, refunds and the backend outbox live.
//!
//! Handlers only see the [`Store`] trait; whether it is MySQL (production) or the embedded
//! SQLite (local runs) is decided once, from `DATABASE_URL`, by [`open`].
//!
//! Every state change is a guarded update (`... WHERE status = 'pending'` or equivalent)
//! inside one transaction, so duplicate and concurrent callers change nothing twice.

mod mysql;
mod reconciliation;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

pub use mysql::MySqlStore;
pub use reconciliation::{Reconciliation, ReconciliationItem, ReconciliationStore};
pub use sqlite::SqliteStore;

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
        matches!(
            self,
            OrderStatus::Pending | OrderStatus::Failed | OrderStatus::Closed
        )
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
    /// JSON body for the backend notification (SPEC §8); stored in `notify_outbox`.
    pub outbox_payload: String,
    pub now: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub enum PaidOutcome {
    /// This call moved the order to `paid`; `outbox_id` is the delivery it queued.
    Transitioned { order: Order, outbox_id: i64 },
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
    pub refund_id: Option<String>,
    /// Fen refunded (the refund's own amount).
    pub amount: i64,
    /// Final: success, closed or abnormal.
    pub status: RefundStatus,
    pub success_at: Option<OffsetDateTime>,
    pub log: PaymentLog,
    pub now: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Pending,
    Delivered,
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
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Create or migrate the schema (idempotent DDL). Implementations also call it lazily.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Cheap round trip, for health and for proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError>;
    /// How many orders exist (operators, and tests proving nothing was written).
    async fn count_orders(&self) -> Result<i64, StoreError>;
    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError>;
    async fn get_order_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Option<Order>, StoreError>;

    /// `pending → failed` (prepay did not succeed). Returns whether the row changed.
    async fn mark_order_failed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// `pending|failed|closed → paid`, plus a `payment_logs` row and a `notify_outbox` row,
    /// in one transaction. Exactly one of any number of concurrent callers gets
    /// `Transitioned`.
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError>;

    /// `pending|failed → closed`. Returns whether the row changed.
    async fn mark_closed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError>;

    /// Checks and writes a `processing` refund in one transaction (the order row is locked,
    /// so two concurrent refunds cannot both pass the "what remains" check).
    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError>;

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError>;

    /// Remember WeChat Pay's `refund_id` for a refund it accepted.
    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError>;

    /// `processing → failed` when WeChat Pay refused to create the refund.
    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError>;

    /// `failed → processing`, for a refused refund retried with its own `out_refund_no` (as
    /// WeChat Pay advises), with the checks of [`Store::reserve_refund`] in one transaction:
    /// the order is paid and the refund's amount still fits. Answers `Existing` with the
    /// row as it now is (also when it was not `failed`).
    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError>;

    /// Records a refund's final state once. On `success` adds the amount to the order's
    /// `refunded_amount` and sets `refunded` when nothing remains. A refund the store does
    /// not know (made in the merchant portal) is inserted from `result`. Returns whether
    /// anything changed.
    async fn finish_refund(&self, result: &RefundResult) -> Result<bool, StoreError>;

    /// Claims one outbox row for delivery (sets a lease, counts the attempt). `None` when it
    /// is delivered or another instance holds it.
    async fn claim_notification(
        &self,
        id: i64,
        now: OffsetDateTime,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError>;

    /// Claims up to `limit` pending rows that are due (`force`: every pending row not
    /// leased by someone else).
    async fn claim_due_notifications(
        &self,
        now: OffsetDateTime,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    async fn mark_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), StoreError>;

    /// Releases the lease and schedules the next try.
    async fn mark_delivery_failed(
        &self,
        id: i64,
        error: &str,
        next_try_at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Outbox rows for one order, oldest first (operators and tests).
    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError>;

    /// Log rows for one order, oldest first (operators and tests).
    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError>;

    /// Refund rows for one order, oldest first.
    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError>;

    /// The daily reconciliation's tables.
    fn reconciliations(&self) -> &dyn ReconciliationStore;
}

/// Opens the store named by a `DATABASE_URL`: `mysql://…` or `sqlite://PATH`
/// (`sqlite::memory:` for a private in-memory database). Connecting to MySQL is lazy:
/// nothing touches the network until the first query.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("mysql://") {
        Ok(Arc::new(MySqlStore::new(url)?))
    } else if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteStore::open_in_memory()?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteStore::open(path)?))
    } else {
        Err(StoreError::BadUrl(
            "expected mysql://… or sqlite://PATH".to_string(),
        ))
    }
}
