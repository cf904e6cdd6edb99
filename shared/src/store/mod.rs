//! Where orders, logs, refunds and the backend outbox live.
//!
//! The domain sees ports, one per concern: [`Orders`], [`Logs`], [`Transitions`] (what
//! settlement does), [`Refunds`], [`OutboxStore`] and [`ReconciliationStore`]. [`Store`] is all of them plus the
//! schema; whether it is MySQL (production) or the embedded SQLite (local runs) is decided
//! once, from `DATABASE_URL`, by [`open`]. The decisions both dialects make are in
//! [`rules`], the tables and columns in `schema`; the dialect files hold only SQL and
//! connection handling.
//!
//! Every state change is a guarded update (`... WHERE status IN (...)` or equivalent) inside
//! one transaction, so duplicate and concurrent callers change nothing twice — and every
//! decision about money is a write conditional on what it rested on, to the row it guards,
//! so it holds on a multi-primary cluster as on one server.
//!
//! The schema is a numbered history ([`migrations`]), applied by `wxpay_functions migrate`
//! (or with `MIGRATE_ON_START=true`); a function only checks the version ([`OnStart`]).

pub mod history;
mod migrations;
mod model;
mod mysql;
mod outbox_sql;
mod reconciliation;
mod refund_check;
mod rows;
pub mod rules;
mod schema;
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use history::OrderHistory;
pub use migrations::{
    require_compatible, AppliedMigration, MigrationReport, SchemaVersion, MIGRATE_COMMAND,
    SCHEMA_VERSION,
};
pub use model::*;
pub use mysql::{DatabaseCa, MySqlStore, SslMode};
pub use reconciliation::{
    ItemKey, Reconciliation, ReconciliationItem, ReconciliationProgress, ReconciliationStore,
    MAX_KEYS,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Order rows: created before WeChat Pay hears of them, read, failed, closed.
#[async_trait]
pub trait Orders: Send + Sync {
    async fn insert_order(&self, order: &NewOrder) -> Result<(), StoreError>;
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

    /// `pending|failed → closed`. Returns whether the row changed.
    async fn mark_closed(
        &self,
        out_trade_no: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// `payment_logs`: what happened, for operators.
#[async_trait]
pub trait Logs: Send + Sync {
    async fn insert_log(&self, log: &PaymentLog, now: OffsetDateTime) -> Result<(), StoreError>;
}

/// The money transitions settlement makes, each in one transaction.
#[async_trait]
pub trait Transitions: Send + Sync {
    /// `pending|failed|closed → paid`, plus a `payment_logs` row and a `notify_outbox` row,
    /// in one transaction. Exactly one of any number of concurrent callers gets
    /// `Transitioned`.
    async fn mark_paid(&self, paid: &PaidTransition) -> Result<PaidOutcome, StoreError>;

    /// Records a refund's final state once. On `success` adds the amount to the order's
    /// `refunded_amount` and sets `refunded` when nothing remains. A refund the store does
    /// not know (made in the merchant portal) is inserted from `result`. A result that does
    /// not match the rows (see [`rules::check_result`]) changes nothing and says why; the
    /// check and the write share one transaction, so two results cannot both fit.
    async fn finish_refund(&self, result: &RefundResult) -> Result<RefundOutcome, StoreError> {
        Ok(self.finish_refund_queued(result).await?.outcome)
    }

    /// [`Transitions::finish_refund`], queueing `result.delivery` in the same transaction
    /// when the outcome is applied: one delivery per outcome recorded.
    async fn finish_refund_queued(
        &self,
        result: &RefundResult,
    ) -> Result<FinishedRefund, StoreError>;
}

/// Refund rows before their outcome is known.
#[async_trait]
pub trait Refunds: Send + Sync {
    /// Checks and writes a `processing` refund in one transaction: the reservation is a
    /// write to the order row guarded by "it still fits" (`refund_reserved`), so two
    /// concurrent refunds cannot both pass the "what remains" check, on one server or
    /// through two nodes of a cluster.
    async fn reserve_refund(&self, refund: &NewRefund) -> Result<RefundReservation, StoreError>;

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, StoreError>;

    /// Remember WeChat Pay's `refund_id` for a refund it accepted.
    async fn set_refund_id(&self, out_refund_no: &str, refund_id: &str) -> Result<(), StoreError>;

    /// `processing → failed` when WeChat Pay refused to create the refund; its amount is
    /// given back to the order in the same transaction.
    async fn fail_refund(&self, out_refund_no: &str) -> Result<bool, StoreError>;

    /// `processing` refunds whose amount was reserved before `before` (by this release's
    /// clock, as `created_at`), oldest first, at most `limit`: the refund sweep's work.
    async fn stale_refunds(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Refund>, StoreError>;

    /// [`Refunds::fail_refund`] for the refund sweep, only while the refund is still
    /// reserved before `before`: one revived (and sent again) since is left alone.
    async fn fail_stale_refund(
        &self,
        out_refund_no: &str,
        before: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// `failed → processing`, for a refused refund retried with its own `out_refund_no` (as
    /// WeChat Pay advises), with the checks of [`Refunds::reserve_refund`] in one
    /// transaction: the order is paid and the refund's amount still fits. `Revived` only for
    /// the one call that did it; any other (a concurrent revival lost, or the refund was
    /// not `failed`) gets `Existing` with the row as it now is.
    async fn revive_failed_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError>;
}

/// `notify_outbox`: deliveries to the business backend, leased before they are sent.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims one outbox row for delivery (leases it for `lease_secs`, counts the attempt).
    /// `None` when it is delivered or another instance holds it. Lease times are the
    /// database's clock, shared by every instance.
    async fn claim_notification(
        &self,
        id: i64,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError>;

    /// Claims up to `limit` pending rows that are due (`force`: every pending row not
    /// leased by someone else).
    async fn claim_due_notifications(
        &self,
        lease_secs: i64,
        limit: i64,
        force: bool,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Records `row` delivered, if this instance still holds its lease. `false`: the lease
    /// lapsed and another instance took the row over; nothing changed.
    async fn mark_delivered(&self, row: &OutboxRow) -> Result<bool, StoreError>;

    /// Releases the lease and schedules the next try `retry_in_secs` from the database's
    /// now, if this instance still holds the lease.
    async fn mark_delivery_failed(
        &self,
        row: &OutboxRow,
        error: &str,
        retry_in_secs: i64,
    ) -> Result<bool, StoreError>;

    /// Gives back the lease of a row that was claimed but never sent; its attempt is not
    /// counted.
    async fn release_unattempted(&self, row: &OutboxRow) -> Result<bool, StoreError>;

    /// Seconds since the oldest pending delivery was queued, by the database's clock;
    /// `None` when nothing is pending.
    async fn oldest_pending_secs(&self) -> Result<Option<i64>, StoreError>;
}

/// What settlement needs: orders to check against, the transitions, and the log.
pub trait PaymentStore: Orders + Logs + Transitions {}
impl<T: Orders + Logs + Transitions + ?Sized> PaymentStore for T {}

/// Reads for operators' tools and tests; not a port the functions use.
#[cfg(feature = "test-helpers")]
#[async_trait]
pub trait Inspect: Send + Sync {
    /// How many orders exist (tests proving nothing was written).
    async fn count_orders(&self) -> Result<i64, StoreError>;
    /// Outbox rows for one order, oldest first.
    async fn outbox_for_order(&self, out_trade_no: &str) -> Result<Vec<OutboxRow>, StoreError>;
    /// Log rows for one order, oldest first.
    async fn logs_for_order(&self, out_trade_no: &str) -> Result<Vec<PaymentLog>, StoreError>;
    /// Refund rows for one order, oldest first.
    async fn refunds_for_order(&self, out_trade_no: &str) -> Result<Vec<Refund>, StoreError>;
    /// Moves the outbox times of one order `secs` into the past (leases, retries and
    /// deliveries run on the database's clock, so tests age rows instead of passing a time).
    async fn rewind_outbox(&self, out_trade_no: &str, secs: i64) -> Result<(), StoreError>;
}

/// Without the `test-helpers` feature nothing inspects the store.
#[cfg(not(feature = "test-helpers"))]
pub trait Inspect {}
#[cfg(not(feature = "test-helpers"))]
impl<T: ?Sized> Inspect for T {}

/// Every port, and the schema.
#[async_trait]
pub trait Store:
    PaymentStore + Refunds + OutboxStore + OrderHistory + ReconciliationStore + Inspect
{
    /// Applies the migrations this release knows and the database lacks, in order, under a
    /// lock (safe to run twice, and from two places at once), and says what it did.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;

    /// What `schema_migrations` says, in one statement (no DDL).
    async fn schema_version(&self) -> Result<SchemaVersion, StoreError>;

    /// Cheap round trip, for health and for proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What a store does about the schema on its first operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStart {
    /// Applies what is missing (`MIGRATE_ON_START=true`: local runs, the tests, tools).
    Migrate,
    /// Reads the version only (one statement) and refuses a schema this release cannot
    /// serve, naming the command to run ([`require_compatible`]). What functions do.
    Check,
}

/// Opens the store named by a `DATABASE_URL`: `mysql://…` or `sqlite://PATH`
/// (`sqlite::memory:` for a private in-memory database). Connecting to MySQL is lazy:
/// nothing touches the network until the first query, which applies missing migrations
/// ([`OnStart::Migrate`]); functions use [`open_with`].
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, None, OnStart::Migrate)
}

/// [`open`], with `DATABASE_CA_PEM` for a MySQL URL's `ssl-mode=VERIFY_CA|VERIFY_IDENTITY`.
pub fn open_with_ca(url: &str, ca: Option<&DatabaseCa>) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, ca, OnStart::Migrate)
}

/// [`open`], with `DATABASE_CA_PEM` and saying what the first operation does about the
/// schema.
pub fn open_with(
    url: &str,
    ca: Option<&DatabaseCa>,
    on_start: OnStart,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("mysql://") {
        Ok(Arc::new(MySqlStore::new_with(url, ca, on_start)?))
    } else if ca.is_some() {
        Err(ca_without_mysql())
    } else if url == "sqlite::memory:" || url.starts_with("sqlite://") {
        open_sqlite(url, on_start)
    } else {
        Err(StoreError::BadUrl(
            "expected mysql://… or sqlite://PATH".to_string(),
        ))
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(url: &str, on_start: OnStart) -> Result<Arc<dyn Store>, StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) => Ok(Arc::new(SqliteStore::open_with(path, on_start)?)),
        // Private to this process: nobody else could migrate it.
        None => Ok(Arc::new(SqliteStore::open_in_memory()?)),
    }
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_url: &str, _on_start: OnStart) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::BadUrl(WITHOUT_SQLITE.into()))
}

/// Why a `sqlite://` store cannot open in a binary built without the `sqlite` feature, as
/// start-up says it.
pub const WITHOUT_SQLITE: &str = "this binary was built without SQLite (cargo feature `sqlite`, off in the deployed functions): use a mysql:// URL, or build with `--features sqlite` for a local run";

/// What [`open_with_ca`] would refuse in a MySQL URL and its CA, found without opening
/// anything (start-up checks the configuration with it).
pub fn check_mysql_url(url: &str, ca: Option<&DatabaseCa>) -> Result<(), StoreError> {
    if url.starts_with("mysql://") {
        MySqlStore::check(url, ca)
    } else if ca.is_some() {
        Err(ca_without_mysql())
    } else {
        Ok(())
    }
}

fn ca_without_mysql() -> StoreError {
    StoreError::BadUrl("DATABASE_CA_PEM is set, but only a mysql:// store uses it".into())
}
