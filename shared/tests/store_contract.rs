//! The `Store` contract: every test below runs unchanged against SQLite (in memory and on a
//! file) and MySQL, because handlers are written against the trait and must not care which
//! one they get.
//!
//! MySQL comes from `TEST_DATABASE_URL` (e.g. `mysql://root@127.0.0.1:3306/test`); each test
//! creates and drops its own database so tests run in parallel. Without the variable the
//! MySQL tests are skipped loudly, or fail when `CI=true`.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use mysql_async::prelude::Queryable;
use time::macros::datetime;
use time::{Duration, OffsetDateTime, UtcOffset};
use wxpay_shared::store::{
    open, MySqlStore, NewOrder, NewRefund, OrderStatus, Orders, OutboxStatus, PaidOutcome,
    PaidTransition, PaymentLog, Reconciliation, ReconciliationItem, RefundOutcome,
    RefundReservation, RefundResult, RefundStatus, SqliteStore, Store, StoreError,
};

type S = Arc<dyn Store>;

#[path = "store_contract/guards.rs"]
mod guards;
#[path = "store_contract/migrations.rs"]
mod migrations;

use guards::*;
use migrations::*;

// ---------------------------------------------------------------------------------------
// Backends

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_suffix() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn sqlite_memory() -> S {
    Arc::new(SqliteStore::open_in_memory().expect("open in-memory sqlite"))
}

/// A database file in the temp directory, removed (with its WAL files) when dropped.
struct TempSqlite {
    path: std::path::PathBuf,
    store: S,
}

impl TempSqlite {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("wxpay_store_{}.db", unique_suffix()));
        let url = format!("sqlite://{}", path.display());
        let store = open(&url).expect("open sqlite file");
        TempSqlite { path, store }
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(ext);
            let _ = std::fs::remove_file(p);
        }
    }
}

const MYSQL_HINT: &str =
    "MySQL contract tests need TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test";

/// A throwaway MySQL database for one test.
struct MysqlDb {
    admin_url: String,
    name: String,
    store: S,
    dropped: bool,
}

impl MysqlDb {
    /// `None` when MySQL is not configured and that is allowed (not CI).
    async fn create() -> Option<Self> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{MYSQL_HINT} (CI=true, so they may not be skipped)");
                }
                static LOUD: Once = Once::new();
                LOUD.call_once(|| {
                    // Straight to the stream: libtest captures eprintln! of passing tests.
                    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {MYSQL_HINT} ***\n");
                });
                return None;
            }
        };
        let name = format!("wxpay_t_{}", unique_suffix());
        let mut admin = admin_conn(&admin_url).await;
        admin
            .query_drop(format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            ))
            .await
            .expect("create test database");
        let _ = admin.disconnect().await;
        // Through `open` so the URL dispatch is covered too; no migrate: the schema must
        // appear lazily on first use.
        let store = open(&with_database(&admin_url, &name)).expect("open mysql store");
        Some(MysqlDb {
            admin_url,
            name,
            store,
            dropped: false,
        })
    }

    async fn cleanup(mut self) {
        drop_database(&self.admin_url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for MysqlDb {
    /// A failed test never reaches `cleanup`; drop its database from a fresh runtime on
    /// another thread (this one may be inside the test's runtime).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&url, &name));
            }
        })
        .join();
    }
}

async fn admin_conn(url: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(url).expect("TEST_DATABASE_URL is a mysql:// URL");
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to TEST_DATABASE_URL")
}

async fn drop_database(url: &str, name: &str) {
    let mut admin = admin_conn(url).await;
    let _ = admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await;
    let _ = admin.disconnect().await;
}

/// The same server and credentials, another database.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_memory()).await;
                }
            )*
        }

        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TempSqlite::new();
                    super::$name(db.store.clone()).await;
                }
            )*
        }

        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::MysqlDb::create().await else {
                        return;
                    };
                    super::$name(db.store.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

/// Cases about two store instances on one database (two pools, as two function instances
/// on two cluster nodes have). In memory there is one private database, so both are the
/// same store there. On MySQL the second store connects to `TEST_DATABASE_URL_2` when it is
/// set — another node of the cluster `TEST_DATABASE_URL` names, where the test's database
/// appears by replication — so the same cases run through two nodes:
///
/// ```sh
/// CI=true TEST_DATABASE_URL=mysql://root@127.0.0.1:4306/test \
///   TEST_DATABASE_URL_2=mysql://root@127.0.0.1:4307/test \
///   cargo test -p wxpay-shared --features test-helpers --test store_contract two_stores_mysql
/// ```
macro_rules! two_store_tests {
    ($($name:ident),* $(,)?) => {
        mod two_stores_sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::sqlite_memory();
                    super::$name(store.clone(), store).await;
                }
            )*
        }

        mod two_stores_sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TempSqlite::new();
                    let other = super::open(&format!("sqlite://{}", db.path.display()))
                        .expect("a second store on the file");
                    super::$name(db.store.clone(), other).await;
                }
            )*
        }

        mod two_stores_mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::MysqlDb::create().await else {
                        return;
                    };
                    let node = std::env::var("TEST_DATABASE_URL_2")
                        .ok()
                        .filter(|u| !u.trim().is_empty())
                        .unwrap_or_else(|| db.admin_url.clone());
                    let other = super::open(&super::with_database(&node, &db.name))
                        .expect("a second store on the database");
                    super::$name(db.store.clone(), other).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

/// Cases about a database's schema, from nothing: on a SQLite file and on MySQL.
macro_rules! migration_tests {
    (mysql_only: [$($mysql:ident),* $(,)?], $($name:ident),* $(,)?) => {
        mod migrations_sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fresh::Sqlite(super::TempSqlite::new())).await;
                }
            )*
        }

        mod migrations_mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::MysqlDb::create().await else {
                        return;
                    };
                    super::$name(super::Fresh::Mysql(db)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $mysql() {
                    let Some(db) = super::MysqlDb::create().await else {
                        return;
                    };
                    super::$mysql(super::Fresh::Mysql(db)).await;
                }
            )*
        }
    };
}

two_store_tests!(
    reservations_through_two_stores_never_exceed,
    revivals_through_two_stores_revive_once,
    portal_refunds_through_two_stores_fit_once,
    payments_through_two_stores_are_recorded_once,
);

migration_tests!(
    mysql_only: [a_held_migration_lock_is_waited_for_within_the_deadline],
    a_fresh_database_is_migrated_once_and_checked_after,
    a_schema_behind_or_ahead_is_judged_by_what_changed,
    an_old_release_database_is_upgraded_with_its_rows,
    the_previous_release_schema_is_taken_over_in_place,
    two_migrators_at_once_apply_each_migration_once,
    migrate_on_start_applies_it_at_first_use,
);

contract_tests!(
    schema_is_idempotent,
    order_round_trip,
    order_by_transaction_id,
    mark_order_failed_only_from_pending,
    mark_closed_only_from_pending_or_failed,
    mark_paid_transitions_once,
    mark_paid_concurrent_callers,
    reserve_refund_rules,
    reserve_refund_concurrent_over_refund,
    finish_refund_success_partial_then_full,
    finish_refund_closed_and_abnormal,
    finish_refund_unknown_refund,
    finish_refund_after_failed_reservation,
    revive_failed_refund_only_if_it_still_fits,
    finish_refund_concurrent_duplicates,
    outbox_claim_lease_deliver_fail,
    outbox_a_stale_lease_holder_changes_nothing,
    outbox_leases_run_on_the_database_clock,
    outbox_an_unattempted_claim_is_not_an_attempt,
    mark_paid_queues_its_delivery_leased,
    outbox_claim_due_order_and_limit,
    outbox_concurrent_claimers,
    logs_round_trip_oldest_first,
    reconciliation_rows_and_items_are_kept_once,
    refund_reserved_stays_exact_through_every_transition,
    concurrent_revivals_revive_once,
    outbox_oldest_pending_age,
);

// ---------------------------------------------------------------------------------------
// Fixtures

/// Microseconds on purpose: both stores keep milliseconds.
fn t0() -> OffsetDateTime {
    datetime!(2024-05-01 12:00:00.123456 UTC)
}

/// `t` is the database's now plus `offset_secs`, give or take a few seconds of test time.
#[track_caller]
fn assert_near_now(t: OffsetDateTime, offset_secs: i64, what: &str) {
    let expected = OffsetDateTime::now_utc() + Duration::seconds(offset_secs);
    let off = (t - expected).abs();
    assert!(
        off < Duration::seconds(5),
        "{what}: {t} is {off} from {expected}"
    );
}

fn ms(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .expect("valid nanosecond")
}

fn new_order(no: &str, amount: i64) -> NewOrder {
    NewOrder {
        out_trade_no: no.to_string(),
        openid: Some("o-payer".to_string()),
        user_id: Some("u-1".to_string()),
        generation_id: Some("gen-1".to_string()),
        package_type: Some("premium".to_string()),
        business_type: Some("photo".to_string()),
        business_id: Some("biz-1".to_string()),
        amount,
        description: "Premium package".to_string(),
        trade_type: "JSAPI".to_string(),
        created_at: t0(),
    }
}

fn paid(no: &str, amount: i64, now: OffsetDateTime) -> PaidTransition {
    PaidTransition {
        out_trade_no: no.to_string(),
        transaction_id: format!("wx-{no}"),
        payer_openid: Some("o-payer".to_string()),
        paid_amount: amount,
        paid_at: now - Duration::seconds(2),
        log: PaymentLog {
            log_type: "callback".to_string(),
            out_trade_no: Some(no.to_string()),
            transaction_id: Some(format!("wx-{no}")),
            openid: Some("o-payer".to_string()),
            package_type: Some("premium".to_string()),
            generation_id: Some("gen-1".to_string()),
            event_type: Some("TRANSACTION.SUCCESS".to_string()),
            amount_total: Some(amount),
            detail: Some(r#"{"trade_state":"SUCCESS"}"#.to_string()),
        },
        business_type: Some("photo".to_string()),
        outbox_payload: format!(r#"{{"outTradeNo":"{no}","status":"paid"}}"#),
        // The caller's lease lapses at once: the row is anybody's to claim.
        lease_secs: 0,
        refunded: None,
        now,
    }
}

/// An order that is paid in full, ready for refunds; returns its outbox id.
async fn paid_order(store: &S, no: &str, amount: i64, now: OffsetDateTime) -> i64 {
    store
        .insert_order(&new_order(no, amount))
        .await
        .expect("insert order");
    match store
        .mark_paid(&paid(no, amount, now))
        .await
        .expect("mark paid")
    {
        PaidOutcome::Transitioned { outbox } => outbox.id,
        other => panic!("expected Transitioned, got {other:?}"),
    }
}

fn refund_req(no: &str, order: &str, amount: Option<i64>, now: OffsetDateTime) -> NewRefund {
    NewRefund {
        out_refund_no: no.to_string(),
        out_trade_no: order.to_string(),
        amount,
        reason: Some("customer asked".to_string()),
        now,
    }
}

/// Records a refund result for the stored order (its paid total, as WeChat Pay reports it):
/// whether it changed anything. These tests send results that match; a mismatch fails them.
async fn finish(store: &S, mut result: RefundResult) -> Result<bool, StoreError> {
    if let Some(order) = store.get_order(&result.out_trade_no).await? {
        result.order_total = order.paid_amount.unwrap_or(order.amount);
    }
    match store.finish_refund(&result).await? {
        RefundOutcome::Applied => Ok(true),
        RefundOutcome::Unchanged => Ok(false),
        RefundOutcome::Mismatch(m) => panic!("unexpected refund mismatch: {m}"),
    }
}

/// A refund result as WeChat Pay reports it; [`finish`] fills in the order's paid total.
fn refund_result(no: &str, order: &str, amount: i64, status: RefundStatus) -> RefundResult {
    RefundResult {
        out_refund_no: no.to_string(),
        out_trade_no: order.to_string(),
        transaction_id: Some(format!("wx-{order}")),
        refund_id: Some(format!("wxr-{no}")),
        amount,
        order_total: 0,
        status,
        success_at: (status == RefundStatus::Success)
            .then(|| t0() + Duration::minutes(10) + Duration::microseconds(789)),
        log: PaymentLog {
            log_type: "refund_callback".to_string(),
            out_trade_no: Some(order.to_string()),
            event_type: Some(format!("REFUND.{}", status.as_str().to_uppercase())),
            amount_total: Some(amount),
            ..PaymentLog::default()
        },
        delivery: None,
        now: t0() + Duration::minutes(11),
    }
}

async fn reserve(store: &S, req: NewRefund) -> RefundReservation {
    store.reserve_refund(&req).await.expect("reserve_refund")
}

async fn order_state(store: &S, no: &str) -> (OrderStatus, i64) {
    let o = store
        .get_order(no)
        .await
        .expect("get")
        .expect("order exists");
    (o.status, o.refunded_amount)
}

// ---------------------------------------------------------------------------------------
// Schema and orders

async fn schema_is_idempotent(store: S) {
    store.migrate().await.expect("first migrate");
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    store
        .insert_order(&new_order("idem-1", 100))
        .await
        .expect("insert after migrate");
    store.migrate().await.expect("migrate keeps data");
    assert!(store.get_order("idem-1").await.expect("get").is_some());
}

async fn order_round_trip(store: S) {
    let mut full = new_order("rt-full", 2990);
    // Another offset and sub-millisecond digits: stored as UTC, milliseconds kept.
    full.created_at = datetime!(2024-05-01 20:00:00.987654 +08:00);
    full.description = "高级套餐 🎉 premium".to_string();
    store.insert_order(&full).await.expect("insert");

    let got = store
        .get_order("rt-full")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.out_trade_no, "rt-full");
    assert_eq!(got.transaction_id, None);
    assert_eq!(got.openid.as_deref(), Some("o-payer"));
    assert_eq!(got.user_id.as_deref(), Some("u-1"));
    assert_eq!(got.generation_id.as_deref(), Some("gen-1"));
    assert_eq!(got.package_type.as_deref(), Some("premium"));
    assert_eq!(got.business_type.as_deref(), Some("photo"));
    assert_eq!(got.business_id.as_deref(), Some("biz-1"));
    assert_eq!(got.amount, 2990);
    assert_eq!(got.paid_amount, None);
    assert_eq!(got.refunded_amount, 0);
    assert_eq!(got.description, "高级套餐 🎉 premium");
    assert_eq!(got.trade_type, "JSAPI");
    assert_eq!(got.status, OrderStatus::Pending);
    assert_eq!(got.paid_at, None);
    assert_eq!(got.created_at, datetime!(2024-05-01 12:00:00.987 UTC));
    assert_eq!(got.created_at.offset(), UtcOffset::UTC);
    assert_eq!(got.updated_at, got.created_at);

    let sparse = NewOrder {
        out_trade_no: "rt-sparse".to_string(),
        openid: None,
        user_id: None,
        generation_id: None,
        package_type: None,
        business_type: None,
        business_id: None,
        amount: 1_000_000,
        description: String::new(),
        trade_type: "NATIVE".to_string(),
        created_at: t0(),
    };
    store.insert_order(&sparse).await.expect("insert sparse");
    let got = store
        .get_order("rt-sparse")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.openid, None);
    assert_eq!(got.user_id, None);
    assert_eq!(got.generation_id, None);
    assert_eq!(got.package_type, None);
    assert_eq!(got.business_type, None);
    assert_eq!(got.business_id, None);
    assert_eq!(got.amount, 1_000_000);
    assert_eq!(got.description, "");
    assert_eq!(got.trade_type, "NATIVE");
    assert_eq!(got.created_at, ms(t0()));

    assert!(store.get_order("rt-missing").await.expect("get").is_none());
    match store.insert_order(&full).await {
        Err(StoreError::Query(_)) => {}
        other => panic!("duplicate out_trade_no must be a Query error, got {other:?}"),
    }
}

async fn order_by_transaction_id(store: S) {
    paid_order(&store, "tx-1", 100, t0()).await;
    store
        .insert_order(&new_order("tx-2", 100))
        .await
        .expect("insert");
    let got = store
        .get_order_by_transaction_id("wx-tx-1")
        .await
        .expect("get")
        .expect("found by transaction id");
    assert_eq!(got.out_trade_no, "tx-1");
    assert_eq!(got.transaction_id.as_deref(), Some("wx-tx-1"));
    assert!(store
        .get_order_by_transaction_id("wx-tx-2")
        .await
        .expect("get")
        .is_none());
}

async fn mark_order_failed_only_from_pending(store: S) {
    let t1 = t0() + Duration::seconds(5);
    store
        .insert_order(&new_order("mf-1", 100))
        .await
        .expect("insert");
    assert!(store.mark_order_failed("mf-1", t1).await.expect("fail"));
    let o = store.get_order("mf-1").await.expect("get").expect("found");
    assert_eq!(o.status, OrderStatus::Failed);
    assert_eq!(o.updated_at, ms(t1));
    assert!(!store
        .mark_order_failed("mf-1", t1 + Duration::seconds(1))
        .await
        .expect("again"));
    let o = store.get_order("mf-1").await.expect("get").expect("found");
    assert_eq!(o.updated_at, ms(t1), "a refused transition changes nothing");

    paid_order(&store, "mf-paid", 100, t0()).await;
    assert!(!store.mark_order_failed("mf-paid", t1).await.expect("paid"));
    assert_eq!(order_state(&store, "mf-paid").await.0, OrderStatus::Paid);

    store
        .insert_order(&new_order("mf-closed", 100))
        .await
        .expect("insert");
    assert!(store.mark_closed("mf-closed", t1).await.expect("close"));
    assert!(!store
        .mark_order_failed("mf-closed", t1)
        .await
        .expect("closed"));
    assert_eq!(
        order_state(&store, "mf-closed").await.0,
        OrderStatus::Closed
    );

    assert!(!store
        .mark_order_failed("mf-missing", t1)
        .await
        .expect("missing"));
}

async fn mark_closed_only_from_pending_or_failed(store: S) {
    let t1 = t0() + Duration::seconds(5);
    store
        .insert_order(&new_order("mc-pending", 100))
        .await
        .expect("insert");
    assert!(store.mark_closed("mc-pending", t1).await.expect("close"));
    let o = store
        .get_order("mc-pending")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(o.status, OrderStatus::Closed);
    assert_eq!(o.updated_at, ms(t1));
    assert!(!store.mark_closed("mc-pending", t1).await.expect("again"));

    store
        .insert_order(&new_order("mc-failed", 100))
        .await
        .expect("insert");
    assert!(store
        .mark_order_failed("mc-failed", t1)
        .await
        .expect("fail"));
    assert!(store.mark_closed("mc-failed", t1).await.expect("close"));
    assert_eq!(
        order_state(&store, "mc-failed").await.0,
        OrderStatus::Closed
    );

    paid_order(&store, "mc-paid", 100, t0()).await;
    let before = store
        .get_order("mc-paid")
        .await
        .expect("get")
        .expect("found");
    assert!(!store
        .mark_closed("mc-paid", t1 + Duration::hours(1))
        .await
        .expect("paid"));
    let after = store
        .get_order("mc-paid")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(after.status, OrderStatus::Paid);
    assert_eq!(after.updated_at, before.updated_at);

    assert!(!store.mark_closed("mc-missing", t1).await.expect("missing"));
}

// ---------------------------------------------------------------------------------------
// Payment

async fn mark_paid_transitions_once(store: S) {
    let now = t0() + Duration::minutes(3);
    // From each unpaid state; one order has no openid yet (Native), one has its own.
    store
        .insert_order(&new_order("mp-pending", 2990))
        .await
        .expect("insert");
    let mut native = new_order("mp-failed", 2990);
    native.openid = None;
    store.insert_order(&native).await.expect("insert");
    store
        .mark_order_failed("mp-failed", t0())
        .await
        .expect("fail");
    store
        .insert_order(&new_order("mp-closed", 2990))
        .await
        .expect("insert");
    store.mark_closed("mp-closed", t0()).await.expect("close");

    for no in ["mp-pending", "mp-failed", "mp-closed"] {
        let mut p = paid(no, 2990, now);
        p.payer_openid = Some("o-from-wechat".to_string());
        let queued = match store.mark_paid(&p).await.expect("mark paid") {
            PaidOutcome::Transitioned { outbox } => outbox,
            other => panic!("{no}: expected Transitioned, got {other:?}"),
        };
        let outbox_id = queued.id;
        let order = store.get_order(no).await.expect("get").expect("found");
        assert_eq!(order.status, OrderStatus::Paid, "{no}");
        assert_eq!(
            order.transaction_id.as_deref(),
            Some(format!("wx-{no}").as_str())
        );
        assert_eq!(order.paid_amount, Some(2990));
        assert_eq!(order.paid_at, Some(ms(p.paid_at)));
        assert_eq!(order.updated_at, ms(now));
        assert_eq!(order.created_at, ms(t0()));
        let expected_openid = if no == "mp-failed" {
            "o-from-wechat"
        } else {
            "o-payer"
        };
        assert_eq!(
            order.openid.as_deref(),
            Some(expected_openid),
            "{no}: openid only filled when missing"
        );
        assert_eq!(
            store
                .get_order(no)
                .await
                .expect("get")
                .expect("found")
                .status,
            OrderStatus::Paid
        );

        let outbox = store.outbox_for_order(no).await.expect("outbox");
        assert_eq!(outbox.len(), 1, "{no}: one outbox row");
        let row = &outbox[0];
        assert_eq!(row.id, outbox_id);
        assert_eq!(row.out_trade_no, no);
        assert_eq!(row.business_type.as_deref(), Some("photo"));
        assert_eq!(row.payload, p.outbox_payload);
        assert_eq!(row.status, OutboxStatus::Pending);
        assert_eq!(
            row.attempts, 1,
            "{no}: queued leased, its first attempt counted"
        );
        assert_eq!(row.last_error, None);
        assert_near_now(row.next_try_at, 0, "due at once should its lease lapse");
        assert_eq!(row.created_at, ms(now));
        assert_eq!(row.delivered_at, None);
        // What mark_paid handed back is the row as stored.
        assert_eq!(queued.payload, row.payload);
        assert_eq!(queued.business_type, row.business_type);
        assert_eq!(queued.out_trade_no, row.out_trade_no);
        assert_eq!(queued.status, row.status);
        assert_eq!(queued.attempts, row.attempts);
        assert_eq!(queued.created_at, row.created_at);

        let logs = store.logs_for_order(no).await.expect("logs");
        assert_eq!(logs.len(), 1, "{no}: one log row");
        let log = &logs[0];
        assert_eq!(log.log_type, "callback");
        assert_eq!(log.out_trade_no.as_deref(), Some(no));
        assert_eq!(log.transaction_id, p.log.transaction_id);
        assert_eq!(log.openid.as_deref(), Some("o-payer"));
        assert_eq!(log.package_type.as_deref(), Some("premium"));
        assert_eq!(log.generation_id.as_deref(), Some("gen-1"));
        assert_eq!(log.event_type.as_deref(), Some("TRANSACTION.SUCCESS"));
        assert_eq!(log.amount_total, Some(2990));
        assert_eq!(log.detail, p.log.detail);

        // The duplicate notification changes nothing.
        let mut again = paid(no, 1, now + Duration::minutes(1));
        again.transaction_id = "wx-other".to_string();
        match store.mark_paid(&again).await.expect("again") {
            PaidOutcome::AlreadyPaid(o) => {
                assert_eq!(o.status, OrderStatus::Paid);
                assert_eq!(
                    o.transaction_id.as_deref(),
                    Some(format!("wx-{no}").as_str())
                );
                assert_eq!(o.paid_amount, Some(2990));
                assert_eq!(o.updated_at, ms(now));
            }
            other => panic!("{no}: expected AlreadyPaid, got {other:?}"),
        }
        assert_eq!(store.outbox_for_order(no).await.expect("outbox").len(), 1);
        assert_eq!(store.logs_for_order(no).await.expect("logs").len(), 1);
    }

    match store
        .mark_paid(&paid("mp-missing", 100, now))
        .await
        .expect("missing")
    {
        PaidOutcome::NotFound => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(store
        .outbox_for_order("mp-missing")
        .await
        .expect("outbox")
        .is_empty());
    assert!(store
        .logs_for_order("mp-missing")
        .await
        .expect("logs")
        .is_empty());

    // A refunded order is not "unpaid": a late payment notification must not reopen it.
    paid_order(&store, "mp-refunded", 100, now).await;
    reserve(&store, refund_req("mp-r1", "mp-refunded", None, now)).await;
    assert!(finish(
        &store,
        refund_result("mp-r1", "mp-refunded", 100, RefundStatus::Success)
    )
    .await
    .expect("finish"));
    assert_eq!(
        order_state(&store, "mp-refunded").await.0,
        OrderStatus::Refunded
    );
    match store
        .mark_paid(&paid("mp-refunded", 100, now))
        .await
        .expect("late")
    {
        PaidOutcome::AlreadyPaid(o) => assert_eq!(o.status, OrderStatus::Refunded),
        other => panic!("expected AlreadyPaid, got {other:?}"),
    }
    assert_eq!(
        store
            .outbox_for_order("mp-refunded")
            .await
            .expect("outbox")
            .len(),
        1
    );
}

async fn mark_paid_concurrent_callers(store: S) {
    store
        .insert_order(&new_order("mp-race", 500))
        .await
        .expect("insert");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let p = paid("mp-race", 500, t0() + Duration::milliseconds(i));
                store.mark_paid(&p).await
            })
        })
        .collect();
    let mut transitioned = 0;
    let mut already = 0;
    for t in tasks {
        match t.await.expect("task").expect("mark_paid") {
            PaidOutcome::Transitioned { .. } => transitioned += 1,
            PaidOutcome::AlreadyPaid(o) => {
                assert_eq!(o.status, OrderStatus::Paid);
                already += 1;
            }
            PaidOutcome::NotFound => panic!("order exists"),
        }
    }
    assert_eq!(transitioned, 1, "exactly one caller transitions");
    assert_eq!(already, 19);
    assert_eq!(
        store
            .outbox_for_order("mp-race")
            .await
            .expect("outbox")
            .len(),
        1
    );
    assert_eq!(
        store.logs_for_order("mp-race").await.expect("logs").len(),
        1
    );
}

// ---------------------------------------------------------------------------------------
// Refunds

async fn reserve_refund_rules(store: S) {
    let now = t0() + Duration::minutes(5);
    match reserve(&store, refund_req("rr-x", "rr-missing", Some(1), now)).await {
        RefundReservation::OrderNotFound => {}
        other => panic!("expected OrderNotFound, got {other:?}"),
    }
    store
        .insert_order(&new_order("rr-pending", 100))
        .await
        .expect("insert");
    match reserve(&store, refund_req("rr-x", "rr-pending", Some(1), now)).await {
        RefundReservation::NotRefundable(OrderStatus::Pending) => {}
        other => panic!("expected NotRefundable(Pending), got {other:?}"),
    }
    store
        .insert_order(&new_order("rr-closed", 100))
        .await
        .expect("insert");
    store.mark_closed("rr-closed", now).await.expect("close");
    match reserve(&store, refund_req("rr-x", "rr-closed", None, now)).await {
        RefundReservation::NotRefundable(OrderStatus::Closed) => {}
        other => panic!("expected NotRefundable(Closed), got {other:?}"),
    }
    assert!(store.get_refund("rr-x").await.expect("get").is_none());

    paid_order(&store, "rr-1", 100, now).await;
    let r1 = match reserve(&store, refund_req("rr-r1", "rr-1", Some(30), now)).await {
        RefundReservation::Created(r) => r,
        other => panic!("expected Created, got {other:?}"),
    };
    assert_eq!(r1.out_refund_no, "rr-r1");
    assert_eq!(r1.out_trade_no, "rr-1");
    assert_eq!(r1.amount, 30);
    assert_eq!(r1.status, RefundStatus::Processing);
    assert_eq!(r1.reason.as_deref(), Some("customer asked"));
    assert_eq!(r1.refund_id, None);
    assert_eq!(r1.created_at, ms(now));
    assert_eq!(r1.success_at, None);
    // Reserving is not refunding: the order stays paid with nothing refunded yet.
    assert_eq!(order_state(&store, "rr-1").await, (OrderStatus::Paid, 0));

    match reserve(&store, refund_req("rr-r1", "rr-1", Some(50), now)).await {
        RefundReservation::Existing(r) => assert_eq!(r.amount, 30),
        other => panic!("expected Existing, got {other:?}"),
    }
    paid_order(&store, "rr-2", 100, now).await;
    match reserve(&store, refund_req("rr-r1", "rr-2", Some(10), now)).await {
        RefundReservation::OtherOrder(r) => assert_eq!(r.out_trade_no, "rr-1"),
        other => panic!("expected OtherOrder, got {other:?}"),
    }

    // 30 of 100 is in flight.
    for (asked, label) in [
        (Some(80), "above"),
        (Some(0), "zero"),
        (Some(-5), "negative"),
    ] {
        match reserve(&store, refund_req("rr-r2", "rr-1", asked, now)).await {
            RefundReservation::Exceeds {
                requested,
                remaining,
            } => {
                assert_eq!(Some(requested), asked, "{label}");
                assert_eq!(remaining, 70, "{label}");
            }
            other => panic!("{label}: expected Exceeds, got {other:?}"),
        }
    }
    assert!(store.get_refund("rr-r2").await.expect("get").is_none());

    let later = now + Duration::seconds(1);
    match reserve(&store, refund_req("rr-r2", "rr-1", None, later)).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 70, "None means what remains"),
        other => panic!("expected Created, got {other:?}"),
    }
    match reserve(&store, refund_req("rr-r3", "rr-1", None, later)).await {
        RefundReservation::Exceeds {
            requested: 0,
            remaining: 0,
        } => {}
        other => panic!("expected Exceeds(0, 0), got {other:?}"),
    }

    // A refused refund no longer counts against what remains.
    assert!(store.fail_refund("rr-r2").await.expect("fail"));
    assert!(!store.fail_refund("rr-r2").await.expect("fail twice"));
    assert_eq!(
        store
            .get_refund("rr-r2")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Failed
    );
    match reserve(&store, refund_req("rr-r3", "rr-1", Some(70), later)).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 70),
        other => panic!("expected Created, got {other:?}"),
    }

    store
        .set_refund_id("rr-r1", "wx-refund-1")
        .await
        .expect("set id");
    assert_eq!(
        store
            .get_refund("rr-r1")
            .await
            .expect("get")
            .expect("found")
            .refund_id
            .as_deref(),
        Some("wx-refund-1")
    );
    assert!(!store.fail_refund("rr-unknown").await.expect("unknown"));

    let listed: Vec<_> = store
        .refunds_for_order("rr-1")
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.out_refund_no)
        .collect();
    assert_eq!(listed, ["rr-r1", "rr-r2", "rr-r3"]);

    // What was paid counts, not what was asked.
    store
        .insert_order(&new_order("rr-partial", 100))
        .await
        .expect("insert");
    store
        .mark_paid(&paid("rr-partial", 90, now))
        .await
        .expect("paid");
    match reserve(&store, refund_req("rr-p1", "rr-partial", None, now)).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 90),
        other => panic!("expected Created(90), got {other:?}"),
    }
}

async fn reserve_refund_concurrent_over_refund(store: S) {
    // Two reservations that each fit but not together, several times over.
    for round in 0..5 {
        let order = format!("rc-{round}");
        paid_order(&store, &order, 100, t0()).await;
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                let req = refund_req(&format!("rc-{round}-{i}"), &order, Some(60), t0());
                tokio::spawn(async move { store.reserve_refund(&req).await })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await.expect("task").expect("reserve") {
                RefundReservation::Created(_) => created += 1,
                RefundReservation::Exceeds {
                    requested: 60,
                    remaining: 40,
                } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1, "round {round}: exactly one reservation fits");
    }

    // Ten callers, 30 each, 100 available: three fit.
    paid_order(&store, "rc-many", 100, t0()).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let req = refund_req(&format!("rc-many-{i}"), "rc-many", Some(30), t0());
            tokio::spawn(async move { store.reserve_refund(&req).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if let RefundReservation::Created(_) = t.await.expect("task").expect("reserve") {
            created += 1;
        }
    }
    assert_eq!(created, 3);
    let reserved: i64 = store
        .refunds_for_order("rc-many")
        .await
        .expect("list")
        .iter()
        .map(|r| r.amount)
        .sum();
    assert_eq!(reserved, 90);
}

async fn finish_refund_success_partial_then_full(store: S) {
    paid_order(&store, "fs-1", 100, t0()).await;
    reserve(&store, refund_req("fs-r1", "fs-1", Some(30), t0())).await;
    store
        .set_refund_id("fs-r1", "wxr-known")
        .await
        .expect("set id");

    let mut result = refund_result("fs-r1", "fs-1", 30, RefundStatus::Success);
    result.refund_id = None; // the one already stored is kept
    assert!(finish(&store, result.clone()).await.expect("finish"));
    let r = store
        .get_refund("fs-r1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(r.status, RefundStatus::Success);
    assert_eq!(r.refund_id.as_deref(), Some("wxr-known"));
    assert_eq!(r.success_at, result.success_at.map(ms));
    assert_eq!(order_state(&store, "fs-1").await, (OrderStatus::Paid, 30));
    let o = store.get_order("fs-1").await.expect("get").expect("found");
    assert_eq!(o.updated_at, ms(result.now));

    // Duplicates and contradicting late results change nothing.
    assert!(!finish(&store, result.clone()).await.expect("duplicate"));
    assert!(!finish(
        &store,
        refund_result("fs-r1", "fs-1", 30, RefundStatus::Closed)
    )
    .await
    .expect("late closed"));
    assert_eq!(order_state(&store, "fs-1").await, (OrderStatus::Paid, 30));
    assert_eq!(
        store
            .get_refund("fs-r1")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Success
    );

    let later = t0() + Duration::seconds(1);
    match reserve(&store, refund_req("fs-r2", "fs-1", None, later)).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 70),
        other => panic!("expected Created(70), got {other:?}"),
    }
    let result2 = refund_result("fs-r2", "fs-1", 70, RefundStatus::Success);
    assert!(finish(&store, result2.clone()).await.expect("finish 2"));
    let r2 = store
        .get_refund("fs-r2")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(r2.refund_id.as_deref(), Some("wxr-fs-r2"));
    assert_eq!(
        order_state(&store, "fs-1").await,
        (OrderStatus::Refunded, 100)
    );
    match reserve(&store, refund_req("fs-r3", "fs-1", None, later)).await {
        RefundReservation::NotRefundable(OrderStatus::Refunded) => {}
        other => panic!("expected NotRefundable(Refunded), got {other:?}"),
    }

    let logs = store.logs_for_order("fs-1").await.expect("logs");
    let types: Vec<_> = logs.iter().map(|l| l.log_type.as_str()).collect();
    assert_eq!(types, ["callback", "refund_callback", "refund_callback"]);
    let refunds: Vec<_> = store
        .refunds_for_order("fs-1")
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.out_refund_no, r.status))
        .collect();
    assert_eq!(
        refunds,
        [
            ("fs-r1".to_string(), RefundStatus::Success),
            ("fs-r2".to_string(), RefundStatus::Success)
        ]
    );
}

async fn finish_refund_closed_and_abnormal(store: S) {
    paid_order(&store, "fc-1", 100, t0()).await;
    reserve(&store, refund_req("fc-r1", "fc-1", Some(40), t0())).await;
    assert!(finish(
        &store,
        refund_result("fc-r1", "fc-1", 40, RefundStatus::Closed)
    )
    .await
    .expect("closed"));
    let r = store
        .get_refund("fc-r1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(r.status, RefundStatus::Closed);
    assert_eq!(r.success_at, None);
    assert_eq!(r.refund_id.as_deref(), Some("wxr-fc-r1"));
    assert_eq!(order_state(&store, "fc-1").await, (OrderStatus::Paid, 0));
    assert!(!finish(
        &store,
        refund_result("fc-r1", "fc-1", 40, RefundStatus::Success)
    )
    .await
    .expect("closed is final"));
    assert_eq!(order_state(&store, "fc-1").await, (OrderStatus::Paid, 0));

    // A closed refund releases its amount.
    match reserve(&store, refund_req("fc-r2", "fc-1", Some(100), t0())).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 100),
        other => panic!("expected Created(100), got {other:?}"),
    }
    assert!(finish(
        &store,
        refund_result("fc-r2", "fc-1", 100, RefundStatus::Abnormal)
    )
    .await
    .expect("abnormal"));
    assert_eq!(
        store
            .get_refund("fc-r2")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Abnormal
    );
    assert!(!finish(
        &store,
        refund_result("fc-r2", "fc-1", 100, RefundStatus::Abnormal)
    )
    .await
    .expect("abnormal twice"));
    // An abnormal refund still holds its money at WeChat Pay until it is re-routed…
    match reserve(&store, refund_req("fc-r9", "fc-1", Some(1), t0())).await {
        RefundReservation::Exceeds {
            requested: 1,
            remaining: 0,
        } => {}
        other => panic!("an abnormal refund holds its amount, got {other:?}"),
    }
    assert_eq!(order_state(&store, "fc-1").await, (OrderStatus::Paid, 0));
    // …after which it succeeds, exactly once.
    assert!(finish(
        &store,
        refund_result("fc-r2", "fc-1", 100, RefundStatus::Success)
    )
    .await
    .expect("re-routed abnormal refund succeeds"));
    assert!(!finish(
        &store,
        refund_result("fc-r2", "fc-1", 100, RefundStatus::Success)
    )
    .await
    .expect("success once"));
    assert_eq!(
        order_state(&store, "fc-1").await,
        (OrderStatus::Refunded, 100)
    );
    let logs = store.logs_for_order("fc-1").await.expect("logs");
    assert_eq!(logs.len(), 4, "payment + three recorded refund results");

    // Processing is not a result.
    paid_order(&store, "fc-2", 100, t0()).await;
    reserve(&store, refund_req("fc-r3", "fc-2", Some(1), t0())).await;
    assert!(finish(
        &store,
        refund_result("fc-r3", "fc-2", 1, RefundStatus::Processing)
    )
    .await
    .is_err());
    assert_eq!(
        store
            .get_refund("fc-r3")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Processing
    );
}

async fn finish_refund_unknown_refund(store: S) {
    paid_order(&store, "fu-1", 100, t0()).await;
    // Made in the merchant portal: the store never saw a reservation.
    let portal = refund_result("fu-portal", "fu-1", 25, RefundStatus::Success);
    assert!(finish(&store, portal.clone())
        .await
        .expect("unknown success"));
    let r = store
        .get_refund("fu-portal")
        .await
        .expect("get")
        .expect("recorded");
    assert_eq!(r.out_trade_no, "fu-1");
    assert_eq!(r.amount, 25);
    assert_eq!(r.status, RefundStatus::Success);
    assert_eq!(r.refund_id.as_deref(), Some("wxr-fu-portal"));
    assert_eq!(r.reason, None);
    assert_eq!(r.created_at, ms(portal.now));
    assert_eq!(r.success_at, portal.success_at.map(ms));
    assert_eq!(order_state(&store, "fu-1").await, (OrderStatus::Paid, 25));
    assert!(!finish(&store, portal.clone()).await.expect("duplicate"));
    assert_eq!(order_state(&store, "fu-1").await, (OrderStatus::Paid, 25));

    let closed = refund_result("fu-portal-2", "fu-1", 10, RefundStatus::Closed);
    assert!(finish(&store, closed.clone())
        .await
        .expect("unknown closed"));
    assert_eq!(
        store
            .get_refund("fu-portal-2")
            .await
            .expect("get")
            .expect("recorded")
            .status,
        RefundStatus::Closed
    );
    assert_eq!(order_state(&store, "fu-1").await, (OrderStatus::Paid, 25));

    match reserve(&store, refund_req("fu-r1", "fu-1", None, t0())).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 75),
        other => panic!("expected Created(75), got {other:?}"),
    }

    // A portal refund of the whole order completes it.
    paid_order(&store, "fu-2", 50, t0()).await;
    assert!(finish(
        &store,
        refund_result("fu-all", "fu-2", 50, RefundStatus::Success)
    )
    .await
    .expect("full"));
    assert_eq!(
        order_state(&store, "fu-2").await,
        (OrderStatus::Refunded, 50)
    );
}

async fn finish_refund_after_failed_reservation(store: S) {
    // We took a timeout for a refusal; WeChat Pay refunded anyway. Its word wins.
    paid_order(&store, "ff-1", 100, t0()).await;
    reserve(&store, refund_req("ff-r1", "ff-1", Some(50), t0())).await;
    assert!(store.fail_refund("ff-r1").await.expect("fail"));
    assert!(finish(
        &store,
        refund_result("ff-r1", "ff-1", 50, RefundStatus::Success)
    )
    .await
    .expect("finish"));
    assert_eq!(
        store
            .get_refund("ff-r1")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Success
    );
    assert_eq!(order_state(&store, "ff-1").await, (OrderStatus::Paid, 50));
    assert!(!store.fail_refund("ff-r1").await.expect("success is final"));
}

async fn revive_failed_refund_only_if_it_still_fits(store: S) {
    paid_order(&store, "rv-1", 100, t0()).await;
    reserve(&store, refund_req("rv-r1", "rv-1", Some(60), t0())).await;
    assert!(store.fail_refund("rv-r1").await.expect("fail"));
    // Refused: its 60 are free, and another refund takes 50 of them.
    assert!(matches!(
        reserve(&store, refund_req("rv-r2", "rv-1", Some(50), t0())).await,
        RefundReservation::Created(_)
    ));
    let revive = |no: &'static str| {
        let store = store.clone();
        async move { store.revive_failed_refund(no).await.expect("revive") }
    };
    assert!(matches!(
        revive("rv-r1").await,
        RefundReservation::Exceeds {
            requested: 60,
            remaining: 50
        }
    ));
    assert_eq!(
        store
            .get_refund("rv-r1")
            .await
            .expect("get")
            .expect("found")
            .status,
        RefundStatus::Failed,
        "a refund that does not fit stays failed"
    );
    // The other refund is refused too: now the 60 fit again, and it is processing.
    assert!(store.fail_refund("rv-r2").await.expect("fail"));
    match revive("rv-r1").await {
        RefundReservation::Revived(r) => {
            assert_eq!((r.status, r.amount), (RefundStatus::Processing, 60))
        }
        other => panic!("expected the revived refund, got {other:?}"),
    }
    // Reviving what is not failed changes nothing.
    match revive("rv-r1").await {
        RefundReservation::Existing(r) => assert_eq!(r.status, RefundStatus::Processing),
        other => panic!("expected the refund as it is, got {other:?}"),
    }
    assert!(matches!(
        revive("rv-nope").await,
        RefundReservation::OrderNotFound
    ));
}

async fn finish_refund_concurrent_duplicates(store: S) {
    paid_order(&store, "fd-1", 100, t0()).await;
    reserve(&store, refund_req("fd-r1", "fd-1", Some(100), t0())).await;
    // Known refund, and an unknown (portal) one on another order.
    paid_order(&store, "fd-2", 80, t0()).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (no, order, amount) = if i % 2 == 0 {
            ("fd-r1", "fd-1", 100)
        } else {
            ("fd-portal", "fd-2", 30)
        };
        let store = store.clone();
        let result = refund_result(no, order, amount, RefundStatus::Success);
        tasks.push(tokio::spawn(async move {
            (no, finish(&store, result.clone()).await)
        }));
    }
    let mut changed = HashSet::new();
    for t in tasks {
        let (no, outcome) = t.await.expect("task");
        if outcome.expect("finish_refund") {
            assert!(changed.insert(no), "{no} recorded twice");
        }
    }
    assert_eq!(changed.len(), 2, "each refund recorded exactly once");
    assert_eq!(
        order_state(&store, "fd-1").await,
        (OrderStatus::Refunded, 100)
    );
    assert_eq!(order_state(&store, "fd-2").await, (OrderStatus::Paid, 30));
    for order in ["fd-1", "fd-2"] {
        let refund_logs = store
            .logs_for_order(order)
            .await
            .expect("logs")
            .iter()
            .filter(|l| l.log_type == "refund_callback")
            .count();
        assert_eq!(refund_logs, 1, "{order}");
    }
}

// ---------------------------------------------------------------------------------------
// Outbox

async fn outbox_claim_lease_deliver_fail(store: S) {
    let id = paid_order(&store, "ob-1", 100, t0()).await;

    let row = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("first claim wins");
    assert_eq!(row.id, id);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.out_trade_no, "ob-1");

    // Leased: nobody else gets it until the lease ends, by the database's clock.
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());
    store.rewind_outbox("ob-1", 25).await.expect("25 s pass");
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());
    assert!(store
        .claim_due_notifications(30, 10, true)
        .await
        .expect("due")
        .is_empty());
    store.rewind_outbox("ob-1", 6).await.expect("6 s more pass");
    let row = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("an expired lease can be taken over");
    assert_eq!(row.attempts, 3);

    // Failure: lease released, next try scheduled, error kept short.
    let long_error = "é".repeat(3000);
    store
        .mark_delivery_failed(&row, &long_error, 600)
        .await
        .expect("failed");
    let rows = store.outbox_for_order("ob-1").await.expect("outbox");
    assert_near_now(
        rows[0].next_try_at,
        600,
        "next try 10 min after the failure",
    );
    let kept = rows[0].last_error.as_deref().expect("error kept");
    assert!(
        (1..=1000).contains(&kept.chars().count()),
        "last_error truncated to about 1000 characters, got {}",
        kept.chars().count()
    );
    assert!(long_error.starts_with(kept));

    assert!(store
        .claim_due_notifications(30, 10, false)
        .await
        .expect("due")
        .is_empty());
    let forced = store
        .claim_due_notifications(30, 10, true)
        .await
        .expect("forced");
    assert_eq!(forced.len(), 1, "force takes pending rows that are not due");
    assert_eq!(forced[0].id, id);
    assert_eq!(forced[0].attempts, 4);

    store
        .mark_delivery_failed(&forced[0], "502 from backend", 300)
        .await
        .expect("failed");
    store.rewind_outbox("ob-1", 240).await.expect("4 min pass");
    assert!(store
        .claim_due_notifications(30, 10, false)
        .await
        .expect("due")
        .is_empty());
    store.rewind_outbox("ob-1", 61).await.expect("1 min more");
    let due = store
        .claim_due_notifications(30, 10, false)
        .await
        .expect("due");
    assert_eq!(due.len(), 1, "due once next_try_at has passed");
    assert_eq!(due[0].attempts, 5);
    assert_eq!(due[0].last_error.as_deref(), Some("502 from backend"));

    store.mark_delivered(&due[0]).await.expect("delivered");
    let rows = store.outbox_for_order("ob-1").await.expect("outbox");
    assert_eq!(rows[0].status, OutboxStatus::Delivered);
    assert_near_now(
        rows[0].delivered_at.expect("delivered_at"),
        0,
        "delivered now",
    );
    assert_eq!(rows[0].attempts, 5);

    // Delivered is final: never claimable, not even forced or after any lease.
    store
        .rewind_outbox("ob-1", 30 * 86_400)
        .await
        .expect("30 days");
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());
    assert!(store
        .claim_due_notifications(30, 10, true)
        .await
        .expect("due")
        .is_empty());
    store
        .mark_delivery_failed(&due[0], "late failure report", 0)
        .await
        .expect("failed after delivered");
    let rows = store.outbox_for_order("ob-1").await.expect("outbox");
    assert_eq!(rows[0].status, OutboxStatus::Delivered);
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());

    assert!(store
        .claim_notification(id + 1000, 30)
        .await
        .expect("claim")
        .is_none());
}

/// Two instances share the outbox; the first pauses past its lease and the second takes the
/// row over. When the first wakes, neither its failure nor its success report changes
/// anything: the current holder's outcome stands.
async fn outbox_a_stale_lease_holder_changes_nothing(store: S) {
    let id = paid_order(&store, "ob-stale", 100, t0()).await;
    let stale = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("the first instance holds it");
    store
        .rewind_outbox("ob-stale", 31)
        .await
        .expect("31 s pass");
    let current = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("the lapsed lease is taken over");
    assert_ne!(stale.lease, current.lease);

    let wrote = store
        .mark_delivery_failed(&stale, "stale holder: timeout", 3600)
        .await
        .expect("failure report");
    assert!(!wrote, "a stale failure report changes nothing");
    let wrote = store.release_unattempted(&stale).await.expect("release");
    assert!(!wrote, "a stale release changes nothing");
    let rows = store.outbox_for_order("ob-stale").await.expect("outbox");
    assert_eq!(rows[0].last_error, None);
    assert_eq!(rows[0].attempts, 3);
    assert!(
        store
            .claim_due_notifications(30, 10, true)
            .await
            .expect("due")
            .is_empty(),
        "the current holder's lease still stands"
    );

    let wrote = store.mark_delivered(&current).await.expect("delivered");
    assert!(wrote, "the current holder records its delivery");
    let delivered_at = store.outbox_for_order("ob-stale").await.expect("outbox")[0].delivered_at;
    let wrote = store
        .mark_delivered(&stale)
        .await
        .expect("stale delivered report");
    assert!(!wrote);
    let rows = store.outbox_for_order("ob-stale").await.expect("outbox");
    assert_eq!(rows[0].status, OutboxStatus::Delivered);
    assert_eq!(
        rows[0].delivered_at, delivered_at,
        "the current holder's time stands"
    );
}

/// Lease times are the database's, not the caller's: an instance whose clock runs ahead
/// cannot see a live lease as lapsed, because it never states a time at all.
async fn outbox_leases_run_on_the_database_clock(store: S) {
    let id = paid_order(&store, "ob-clock", 100, t0()).await;
    let held = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("claimed");
    // The row's times are near the database's now, not near the 2024 `t0()` the order was
    // paid at by the caller's reckoning.
    let rows = store.outbox_for_order("ob-clock").await.expect("outbox");
    assert_near_now(rows[0].next_try_at, 0, "queued due at the database's now");
    for _ in 0..3 {
        assert!(store
            .claim_notification(id, 30)
            .await
            .expect("claim")
            .is_none());
    }
    assert!(store.mark_delivered(&held).await.expect("delivered"));
}

/// A delivery claimed but never sent (the invocation ran out of time) gives its lease back
/// without counting an attempt.
async fn outbox_an_unattempted_claim_is_not_an_attempt(store: S) {
    let id = paid_order(&store, "ob-unsent", 100, t0()).await;
    let row = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(row.attempts, 2);
    assert!(store.release_unattempted(&row).await.expect("release"));
    let again = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("released at once, claimable again");
    assert_eq!(again.attempts, 2, "the unsent claim was not counted");
}

/// The payer's instance delivers the row it queued: nobody else may claim it until the
/// lease it was inserted with lapses.
async fn mark_paid_queues_its_delivery_leased(store: S) {
    store
        .insert_order(&new_order("ol-1", 100))
        .await
        .expect("insert");
    let mut p = paid("ol-1", 100, t0());
    p.lease_secs = 30;
    let id = match store.mark_paid(&p).await.expect("mark paid") {
        PaidOutcome::Transitioned { outbox } => {
            assert_eq!(outbox.attempts, 1);
            outbox.id
        }
        other => panic!("expected Transitioned, got {other:?}"),
    };
    store.rewind_outbox("ol-1", 25).await.expect("25 s pass");
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());
    assert!(store
        .claim_due_notifications(30, 10, true)
        .await
        .expect("due")
        .is_empty());
    store.rewind_outbox("ol-1", 6).await.expect("6 s more");
    let row = store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .expect("a lapsed lease can be taken over");
    assert_eq!(row.attempts, 2);
}

async fn outbox_claim_due_order_and_limit(store: S) {
    let mut ids = Vec::new();
    for i in 0..3 {
        let no = format!("od-{i}");
        ids.push(paid_order(&store, &no, 100, t0() + Duration::seconds(i)).await);
    }
    let first = store
        .claim_due_notifications(60, 2, false)
        .await
        .expect("due");
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[..2],
        "oldest first, at most `limit`"
    );
    assert!(first.iter().all(|r| r.attempts == 2));
    let second = store
        .claim_due_notifications(60, 2, false)
        .await
        .expect("due");
    assert_eq!(second.iter().map(|r| r.id).collect::<Vec<_>>(), ids[2..]);
    assert!(store
        .claim_due_notifications(60, 2, false)
        .await
        .expect("due")
        .is_empty());
    // Not due before its next try.
    store
        .mark_delivery_failed(&first[0], "x", 3600)
        .await
        .expect("failed");
    assert!(store
        .claim_due_notifications(60, 10, false)
        .await
        .expect("due")
        .is_empty());
}

async fn outbox_concurrent_claimers(store: S) {
    let id = paid_order(&store, "oc-1", 100, t0()).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_notification(id, 60).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.expect("task").expect("claim"));
    }
    let winners_rows = winners;
    let winners = winners_rows.len();
    assert_eq!(winners, 1, "exactly one claimer holds the lease");
    let rows = store.outbox_for_order("oc-1").await.expect("outbox");
    assert_eq!(rows[0].attempts, 2);

    let mut all = HashSet::from([id]);
    for i in 0..5 {
        all.insert(paid_order(&store, &format!("oc-many-{i}"), 100, t0()).await);
    }
    store
        .mark_delivery_failed(&winners_rows[0], "retry", 0)
        .await
        .expect("release");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due_notifications(60, 10, true).await })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for row in t.await.expect("task").expect("claim due") {
            assert!(seen.insert(row.id), "row {} claimed twice", row.id);
        }
    }
    assert_eq!(seen, all, "every pending row claimed by exactly one caller");
}

async fn logs_round_trip_oldest_first(store: S) {
    let full = PaymentLog {
        log_type: "query".to_string(),
        out_trade_no: Some("lg-1".to_string()),
        transaction_id: Some("wx-lg".to_string()),
        openid: Some("o-1".to_string()),
        package_type: Some("basic".to_string()),
        generation_id: Some("g".to_string()),
        event_type: Some("SUCCESS".to_string()),
        amount_total: Some(1),
        detail: Some(r#"{"a":"中文"}"#.to_string()),
    };
    let sparse = PaymentLog {
        log_type: "order".to_string(),
        out_trade_no: Some("lg-1".to_string()),
        ..PaymentLog::default()
    };
    let notify = PaymentLog {
        log_type: "notify".to_string(),
        out_trade_no: Some("lg-1".to_string()),
        detail: Some("delivered".to_string()),
        ..PaymentLog::default()
    };
    store
        .insert_log(&full, t0() + Duration::seconds(1))
        .await
        .expect("log");
    store.insert_log(&sparse, t0()).await.expect("log");
    store
        .insert_log(&notify, t0() + Duration::seconds(2))
        .await
        .expect("log");
    store
        .insert_log(
            &PaymentLog {
                log_type: "order".to_string(),
                out_trade_no: Some("lg-other".to_string()),
                ..PaymentLog::default()
            },
            t0(),
        )
        .await
        .expect("log");

    let logs = store.logs_for_order("lg-1").await.expect("logs");
    assert_eq!(
        logs.iter().map(|l| l.log_type.as_str()).collect::<Vec<_>>(),
        ["order", "query", "notify"]
    );
    let got = &logs[1];
    assert_eq!(got.out_trade_no, full.out_trade_no);
    assert_eq!(got.transaction_id, full.transaction_id);
    assert_eq!(got.openid, full.openid);
    assert_eq!(got.package_type, full.package_type);
    assert_eq!(got.generation_id, full.generation_id);
    assert_eq!(got.event_type, full.event_type);
    assert_eq!(got.amount_total, full.amount_total);
    assert_eq!(got.detail, full.detail);
    assert_eq!(logs[0].transaction_id, None);
    assert_eq!(logs[0].amount_total, None);
    assert_eq!(logs[0].detail, None);
}

// ---------------------------------------------------------------------------------------
// Backend-specific

const SECRET_URL: &str = "mysql://root:s3cr3t-pw@127.0.0.1:1/x";

fn assert_clean(err: &StoreError, url: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("s3cr3t-pw"), "password leaked: {shown}");
    assert!(!shown.contains(url), "URL leaked: {shown}");
}

/// Constructing the store must not connect (no runtime here, so a spawned task or a
/// blocking connect would fail or hang).
#[test]
fn mysql_new_does_no_io() {
    let started = std::time::Instant::now();
    MySqlStore::new(SECRET_URL).expect("a well-formed URL is accepted without connecting");
    open(SECRET_URL).expect("open is lazy too");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn mysql_unreachable_is_unavailable_without_secrets() {
    let store = open(SECRET_URL).expect("lazy");
    let checks: Vec<(&str, Result<(), StoreError>)> = vec![
        ("ping", store.ping().await),
        ("migrate", store.migrate().await.map(|_| ())),
        ("get_order", store.get_order("x").await.map(|_| ())),
        (
            "mark_paid",
            store.mark_paid(&paid("x", 1, t0())).await.map(|_| ()),
        ),
        (
            "claim_due",
            store
                .claim_due_notifications(30, 10, false)
                .await
                .map(|_| ()),
        ),
    ];
    for (what, result) in checks {
        match result {
            Err(e @ StoreError::Unavailable(_)) => assert_clean(&e, SECRET_URL),
            other => panic!("{what}: expected Unavailable, got {other:?}"),
        }
    }
}

#[test]
fn mysql_bad_urls_do_not_echo_secrets() {
    for url in [
        "mysql://root:s3cr3t-pw@127.0.0.1:notaport/x",
        "mysql://root:s3cr3t-pw@127.0.0.1:3306/x?pool_min=s3cr3t-pw",
        "mysql://root:s3cr3t-pw@127.0.0.1:3306/x?s3cr3t-pw=1",
        "mysql://root:s3cr3t%2Dpw@127.0.0.1:3306/x?conn_ttl=s3cr3t-pw",
    ] {
        match MySqlStore::new(url) {
            Err(e @ StoreError::BadUrl(_)) => assert_clean(&e, url),
            other => panic!("{url}: expected BadUrl, got {other:?}"),
        }
    }
    match open("postgres://root:s3cr3t-pw@127.0.0.1/x") {
        Err(e @ StoreError::BadUrl(_)) => assert_clean(&e, "postgres://"),
        Err(e) => panic!("expected BadUrl, got {e:?}"),
        Ok(_) => panic!("expected BadUrl, got a store"),
    }
}

#[tokio::test]
async fn mysql_wrong_password_is_clean() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    if url.trim().is_empty() {
        return;
    }
    // Same server, a user that does not exist, with our marker password.
    let (_, rest) = url.split_once("://").expect("scheme");
    let host_start = rest.rfind('@').map_or(0, |i| i + 1);
    let bad = format!("mysql://nobody_wxpay:s3cr3t-pw@{}", &rest[host_start..]);
    let store = open(&bad).expect("lazy");
    match store.ping().await {
        Err(e) => assert_clean(&e, &bad),
        Ok(()) => panic!("an unknown user must not get in"),
    }
}

#[tokio::test]
async fn sqlite_file_persists_and_reopens() {
    let path = std::env::temp_dir().join(format!("wxpay_reopen_{}.db", unique_suffix()));
    {
        let store = SqliteStore::open(&path).expect("create");
        store
            .insert_order(&new_order("re-1", 100))
            .await
            .expect("insert");
    }
    {
        // Opening an existing file runs the (idempotent) schema again.
        let store = SqliteStore::open(&path).expect("reopen");
        store.migrate().await.expect("migrate");
        let o = store
            .get_order("re-1")
            .await
            .expect("get")
            .expect("persisted");
        assert_eq!(o.created_at, ms(t0()));
    }
    let memory = open("sqlite::memory:").expect("memory url");
    assert!(memory.get_order("re-1").await.expect("get").is_none());
    for ext in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
}

/// A call waiting for SQLite's write lock (held here by another session, as a second local
/// runner or an operator's shell would) holds up neither the store's other calls nor the
/// runtime: reads go on through the file store's other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_reads_go_on_while_a_write_waits() {
    let db = TempSqlite::new();
    let store = db.store.clone();
    store
        .insert_order(&new_order("wl-1", 100))
        .await
        .expect("insert");
    let holder = rusqlite::Connection::open(&db.path).expect("second session");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.mark_paid(&paid("wl-1", 100, t0())).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let o = store.get_order("wl-1").await.expect("get").expect("found");
        assert_eq!(o.status, OrderStatus::Pending);
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(1),
        "reads waited {waited:?} behind a write waiting for the lock"
    );
    assert!(!writer.is_finished(), "the write waits for the lock");
    holder.execute_batch("ROLLBACK").expect("release");
    match writer.await.expect("task").expect("mark_paid") {
        PaidOutcome::Transitioned { .. } => {}
        other => panic!("expected the write to go through once released, got {other:?}"),
    }
}

/// Tables from an earlier release, before `paid_amount`, `refunded_amount`,
/// `business_type`, `business_id` and the outbox lease existed.
const LEGACY_ORDERS: &str = "CREATE TABLE orders (
    out_trade_no VARCHAR(32) NOT NULL PRIMARY KEY, transaction_id VARCHAR(64),
    openid VARCHAR(128), user_id VARCHAR(128), generation_id VARCHAR(128),
    package_type VARCHAR(64), amount BIGINT NOT NULL,
    description VARCHAR(255) NOT NULL DEFAULT '', trade_type VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL, paid_at {TS}, created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL)";
const LEGACY_OUTBOX: &str = "CREATE TABLE notify_outbox (
    id {ID}, out_trade_no VARCHAR(32) NOT NULL, payload TEXT NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'pending', attempts INT NOT NULL DEFAULT 0,
    last_error TEXT, next_try_at {TS} NOT NULL, created_at {TS} NOT NULL,
    delivered_at {TS}, business_type VARCHAR(64))";

async fn legacy_schema_is_upgraded(store: S) {
    store.migrate().await.expect("migrate over legacy tables");
    paid_order(&store, "lg-old", 100, t0()).await;
    let o = store
        .get_order("lg-old")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(o.business_type.as_deref(), Some("photo"));
    assert_eq!(o.paid_amount, Some(100));
    assert_eq!(o.refunded_amount, 0);
    let id = store.outbox_for_order("lg-old").await.expect("outbox")[0].id;
    let now = t0() + Duration::minutes(1);
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_some());
    assert!(store
        .claim_notification(id, 30)
        .await
        .expect("claim")
        .is_none());
    match reserve(&store, refund_req("lg-r1", "lg-old", None, now)).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 100),
        other => panic!("expected Created, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_legacy_tables_gain_new_columns() {
    let path = std::env::temp_dir().join(format!("wxpay_legacy_{}.db", unique_suffix()));
    {
        let conn = rusqlite::Connection::open(&path).expect("create legacy db");
        for ddl in [LEGACY_ORDERS, LEGACY_OUTBOX] {
            let ddl = ddl
                .replace("{TS}", "TEXT")
                .replace("{ID}", "INTEGER PRIMARY KEY AUTOINCREMENT");
            conn.execute_batch(&ddl).expect("legacy table");
        }
    }
    let store: S = Arc::new(SqliteStore::open(&path).expect("open over legacy tables"));
    legacy_schema_is_upgraded(store).await;
    for ext in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
}

/// A connection to `db`, which now holds the tables of an earlier release.
async fn mysql_legacy_tables(db: &MysqlDb) -> mysql_async::Conn {
    let mut conn = admin_conn(&with_database(&db.admin_url, &db.name)).await;
    for ddl in [LEGACY_ORDERS, LEGACY_OUTBOX] {
        let ddl = ddl
            .replace("{TS}", "DATETIME(3)")
            .replace("{ID}", "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY");
        conn.query_drop(ddl).await.expect("legacy table");
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_legacy_tables_gain_new_columns() {
    let Some(db) = MysqlDb::create().await else {
        return;
    };
    let conn = mysql_legacy_tables(&db).await;
    let _ = conn.disconnect().await;
    legacy_schema_is_upgraded(db.store.clone()).await;
    db.cleanup().await;
}

async fn reconciliation_rows_and_items_are_kept_once(store: S) {
    let r = &store;
    assert_eq!(r.get_reconciliation("2024-05-01").await.unwrap(), None);
    let item = |kind: &str, order: &str, refund: &str| ReconciliationItem {
        bill_date: "2024-05-01".into(),
        out_trade_no: order.into(),
        out_refund_no: refund.into(),
        kind: kind.into(),
        detail: format!("{kind} {order}"),
        created_at: ms(t0()),
    };
    assert!(r
        .add_reconciliation_item(&item("amount_mismatch", "A1", ""))
        .await
        .unwrap());
    assert!(r
        .add_reconciliation_item(&item("synced_refund", "A1", "R1"))
        .await
        .unwrap());
    assert!(
        !r.add_reconciliation_item(&item("amount_mismatch", "A1", ""))
            .await
            .unwrap(),
        "the same discrepancy is recorded once"
    );
    let mut other_day = item("amount_mismatch", "A1", "");
    other_day.bill_date = "2024-05-02".into();
    assert!(r.add_reconciliation_item(&other_day).await.unwrap());
    let items = r.reconciliation_items("2024-05-01").await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], item("amount_mismatch", "A1", ""));

    let run = Reconciliation {
        bill_date: "2024-05-01".into(),
        status: "discrepancies".into(),
        bill_rows: 3,
        payments: 2,
        payment_total: 2991,
        refunds: 1,
        refund_total: 990,
        repaired: 1,
        flagged: 0,
        updated_at: ms(t0()),
    };
    let saved = r.save_reconciliation(&run).await.unwrap();
    assert_eq!(
        (saved.repaired, saved.flagged),
        (1, 2),
        "flagged counts the items"
    );
    let again = Reconciliation {
        repaired: 0,
        updated_at: ms(t0() + Duration::hours(1)),
        ..run.clone()
    };
    let saved = r.save_reconciliation(&again).await.unwrap();
    assert_eq!(
        (saved.repaired, saved.flagged),
        (1, 2),
        "a re-run adds nothing"
    );
    assert_eq!(
        r.get_reconciliation("2024-05-01").await.unwrap(),
        Some(saved)
    );

    // Only orders paid in the window, and only paid ones.
    paid_order(&store, "IN_WINDOW", 100, t0()).await;
    paid_order(&store, "NEXT_DAY", 100, t0() + Duration::days(1)).await;
    store.insert_order(&new_order("UNPAID", 100)).await.unwrap();
    let paid = r
        .orders_paid_between(t0() - Duration::hours(1), t0() + Duration::hours(1))
        .await
        .unwrap();
    let nos: Vec<&str> = paid.iter().map(|o| o.out_trade_no.as_str()).collect();
    assert_eq!(nos, ["IN_WINDOW"]);
}

/// MySQL's text collations ignore letter case or trailing spaces: under them `wx…` found
/// `WX…`. Tables from before identifiers compared exactly are converted at start-up,
/// once, keeping their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_identifiers_compare_exactly_after_migration() {
    let Some(db) = MysqlDb::create().await else {
        return;
    };
    let mut conn = mysql_legacy_tables(&db).await;
    conn.query_drop(
        "INSERT INTO orders (out_trade_no, transaction_id, amount, trade_type, status, \
         created_at, updated_at) VALUES ('lg-Case01', 'wx-Tx01', 100, 'JSAPI', 'paid', \
         NOW(3), NOW(3))",
    )
    .await
    .expect("legacy row");
    let store = db.store.clone();
    for _ in 0..2 {
        store.migrate().await.expect("migrate (twice: idempotent)");
    }
    let types: Vec<(String, String, String)> = conn
        .query(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME IN \
             ('out_trade_no', 'transaction_id', 'out_refund_no')",
        )
        .await
        .expect("catalogue");
    // orders (2), payment_logs (2), refunds (2), notify_outbox, reconciliation_items (2).
    assert_eq!(types.len(), 9, "{types:?}");
    for (table, column, data_type) in &types {
        assert_eq!(data_type, "varbinary", "{table}.{column}");
    }
    let _ = conn.disconnect().await;

    let found = |no: &'static str| {
        let store = store.clone();
        async move { store.get_order(no).await.expect("get").is_some() }
    };
    assert!(found("lg-Case01").await, "the legacy row survives");
    for other in ["lg-case01", "LG-CASE01", "lg-Case01 "] {
        assert!(!found(other).await, "{other:?} is another order");
    }
    for other in ["wx-tx01", "wx-Tx01 "] {
        assert!(store
            .get_order_by_transaction_id(other)
            .await
            .expect("get")
            .is_none());
    }
    paid_order(&store, "cs-Order1", 100, t0()).await;
    reserve(
        &store,
        refund_req("cs-Refund1", "cs-Order1", Some(10), t0()),
    )
    .await;
    assert!(store.get_refund("cs-refund1").await.expect("get").is_none());
    match reserve(
        &store,
        refund_req("CS-REFUND1", "cs-Order1", Some(10), t0()),
    )
    .await
    {
        RefundReservation::Created(r) => assert_eq!(r.out_refund_no, "CS-REFUND1"),
        other => panic!("another letter case is another refund, got {other:?}"),
    }
    db.cleanup().await;
}

/// The age of the oldest pending delivery (the `OutboxOldestPendingSeconds` metric): none
/// while nothing waits, then how long the oldest has waited, until it is delivered.
async fn outbox_oldest_pending_age(store: S) {
    assert_eq!(store.oldest_pending_secs().await.expect("age"), None);
    let queued = wxpay_shared::util::now_utc() - Duration::seconds(90);
    let id = paid_order(&store, "ob-age", 100, queued).await;
    let age = store
        .oldest_pending_secs()
        .await
        .expect("age")
        .expect("one pending");
    assert!((85..=100).contains(&age), "{age}");
    let held = store
        .claim_notification(id, 0)
        .await
        .expect("claim")
        .expect("claimed");
    assert!(store.mark_delivered(&held).await.expect("delivered"));
    assert_eq!(store.oldest_pending_secs().await.expect("age"), None);
}
