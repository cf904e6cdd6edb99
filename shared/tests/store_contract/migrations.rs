//! Migrations are an explicit step: a fresh database, a database of the release before
//! schema versions (older layouts included, with rows), run twice, two migrators at once,
//! a function refusing a schema behind it (naming the command), and `MIGRATE_ON_START`.
//! Each runs on a SQLite file and on MySQL; an in-memory database is private to its store
//! and always migrated by it.

use wxpay_shared::store::{open_with, OnStart, SchemaVersion, SCHEMA_VERSION};

use super::*;

/// A database nothing has touched yet, and more stores on it.
pub(super) enum Fresh {
    Sqlite(TempSqlite),
    Mysql(MysqlDb),
}

impl Fresh {
    pub(super) fn url(&self) -> String {
        match self {
            Fresh::Sqlite(db) => format!("sqlite://{}", db.path.display()),
            Fresh::Mysql(db) => with_database(&db.admin_url, &db.name),
        }
    }

    /// Another instance's store: a function (`Check`) or a local run (`Migrate`).
    pub(super) fn store(&self, on_start: OnStart) -> S {
        open_with(&self.url(), None, on_start).expect("open")
    }

    /// A store through the cluster's second node (`TEST_DATABASE_URL_2`), when there is one.
    pub(super) fn store_elsewhere(&self, on_start: OnStart) -> S {
        match (self, std::env::var("TEST_DATABASE_URL_2")) {
            (Fresh::Mysql(db), Ok(node)) if !node.trim().is_empty() => {
                open_with(&with_database(&node, &db.name), None, on_start).expect("open")
            }
            _ => self.store(on_start),
        }
    }

    /// Statements run as an operator (or the previous release) would, outside the store.
    /// `{TS}` becomes the dialect's time type.
    pub(super) async fn raw(&self, statements: &[&str]) {
        match self {
            Fresh::Sqlite(db) => {
                let conn = rusqlite::Connection::open(&db.path).expect("open file");
                for s in statements {
                    conn.execute_batch(&s.replace("{TS}", "TEXT"))
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            Fresh::Mysql(db) => {
                let mut conn = admin_conn(&with_database(&db.admin_url, &db.name)).await;
                for s in statements {
                    conn.query_drop(s.replace("{TS}", "DATETIME(3)"))
                        .await
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
                let _ = conn.disconnect().await;
            }
        }
    }

    pub(super) async fn cleanup(self) {
        if let Fresh::Mysql(db) = self {
            db.cleanup().await;
        }
    }
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, StoreError>, says: &str) {
    match result {
        Err(StoreError::Schema(m)) => {
            assert!(m.contains(says), "{m}");
            assert!(
                m.contains("wxpay_functions migrate"),
                "names the command: {m}"
            );
        }
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

fn versions(report: &wxpay_shared::store::MigrationReport) -> Vec<u32> {
    report.applied.iter().map(|m| m.version).collect()
}

pub(super) async fn a_fresh_database_is_migrated_once_and_checked_after(db: Fresh) {
    let function = db.store(OnStart::Check);
    assert_eq!(
        function.schema_version().await.expect("version"),
        SchemaVersion {
            version: None,
            newest_breaking: None
        }
    );
    assert_refused(function.get_order("fresh-1").await, "no schema version");
    assert_refused(function.get_order("fresh-1").await, "no schema version");

    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert_eq!(versions(&report), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(report.version, SCHEMA_VERSION);
    assert_eq!(report.to_string().lines().count(), SCHEMA_VERSION as usize);
    // The refusing instance serves once the schema is there: it checks again each call.
    function
        .insert_order(&new_order("fresh-1", 100))
        .await
        .expect("served after migrate");
    let again = db.store(OnStart::Check).migrate().await.expect("again");
    assert!(again.applied.is_empty());
    assert_eq!(
        again.to_string(),
        format!("schema is at version {SCHEMA_VERSION}, nothing to do")
    );
    db.cleanup().await;
}

pub(super) async fn a_schema_behind_or_ahead_is_judged_by_what_changed(db: Fresh) {
    db.store(OnStart::Migrate).migrate().await.expect("migrate");
    // As if the latest migration had not been applied: the function refuses, naming the
    // versions.
    let latest = SCHEMA_VERSION;
    db.raw(&[&format!(
        "DELETE FROM schema_migrations WHERE version = {latest}"
    )])
    .await;
    assert_refused(
        db.store(OnStart::Check).get_order("x").await,
        &format!(
            "at version {}; this release needs version {latest}",
            latest - 1
        ),
    );
    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert_eq!(versions(&report), vec![latest], "only what was missing");
    db.store(OnStart::Check)
        .get_order("x")
        .await
        .expect("served at its own version");

    // A newer release migrated, additively: this instance keeps serving.
    db.raw(&[&format!(
        "INSERT INTO schema_migrations (version, name, applied_at, checksum, additive) \
              VALUES ({}, 'a newer release added a column', '2030-01-01 00:00:00.000', 'x', 1)",
        latest + 1
    )])
    .await;
    db.store(OnStart::Check)
        .get_order("x")
        .await
        .expect("an additive newer schema is served");
    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert!(report.applied.is_empty());
    assert_eq!(report.version, latest + 1);
    assert!(
        report.to_string().contains("newer than this release's"),
        "{report}"
    );

    // A newer release changed how rows are written: refused, saying what to deploy.
    db.raw(&[&format!(
        "INSERT INTO schema_migrations (version, name, applied_at, checksum, additive) \
              VALUES ({}, 'a newer release moved money', '2030-01-01 00:00:00.000', 'y', 0)",
        latest + 2
    )])
    .await;
    match db.store(OnStart::Check).get_order("x").await {
        Err(StoreError::Schema(m)) => assert!(m.contains("deploy that release"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A released migration edited afterwards stops migrate, naming it.
    db.raw(&[
        format!("DELETE FROM schema_migrations WHERE version > {latest}").as_str(),
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
    ])
    .await;
    match db.store(OnStart::Check).migrate().await {
        Err(StoreError::Schema(m)) => {
            assert!(m.contains("migration 1") && m.contains("edited"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    db.cleanup().await;
}

/// The release before schema versions, in its oldest layout (identifiers as text, no
/// `paid_amount`, `refunded_amount`, `business_type` or lease columns), with rows: paid
/// orders and refunds in every state.
const OLD_RELEASE: &[&str] = &[
    super::LEGACY_ORDERS,
    "CREATE TABLE refunds (out_refund_no VARCHAR(64) NOT NULL PRIMARY KEY, \
     out_trade_no VARCHAR(32) NOT NULL, refund_id VARCHAR(64), amount BIGINT NOT NULL, \
     status VARCHAR(16) NOT NULL, reason VARCHAR(255), created_at {TS} NOT NULL, \
     success_at {TS})",
    "INSERT INTO orders (out_trade_no, transaction_id, amount, trade_type, status, created_at, \
     updated_at) VALUES ('old-1', 'wx-old-1', 1000, 'JSAPI', 'paid', '2024-05-01 12:00:00.000', \
     '2024-05-01 12:00:00.000'), ('old-2', 'wx-old-2', 500, 'JSAPI', 'paid', \
     '2024-05-01 12:00:00.000', '2024-05-01 12:00:00.000'), ('old-3', NULL, 300, 'JSAPI', \
     'pending', '2024-05-01 12:00:00.000', '2024-05-01 12:00:00.000')",
    "INSERT INTO refunds (out_refund_no, out_trade_no, amount, status, created_at) VALUES \
     ('old-1-a', 'old-1', 200, 'processing', '2024-05-01 12:01:00.000'), \
     ('old-1-b', 'old-1', 100, 'abnormal', '2024-05-01 12:02:00.000'), \
     ('old-1-c', 'old-1', 300, 'failed', '2024-05-01 12:03:00.000'), \
     ('old-1-d', 'old-1', 50, 'closed', '2024-05-01 12:04:00.000'), \
     ('old-2-a', 'old-2', 500, 'failed', '2024-05-01 12:05:00.000')",
];

pub(super) async fn an_old_release_database_is_upgraded_with_its_rows(db: Fresh) {
    db.raw(OLD_RELEASE).await;
    let function = db.store(OnStart::Check);
    assert_refused(function.get_order("old-1").await, "no schema version");

    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert_eq!(versions(&report), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let order = function
        .get_order("old-1")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((order.amount, order.status), (1000, OrderStatus::Paid));
    // What the old release reserved is now on the order: 200 processing + 100 abnormal.
    assert_eq!(order.refund_reserved, 300);
    assert_eq!(
        function
            .refunds_for_order("old-1")
            .await
            .expect("refunds")
            .len(),
        4
    );
    let order = function
        .get_order("old-2")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(order.refund_reserved, 0, "a failed refund holds nothing");
    // And it guards: 1000 − 300 remain 700.
    match reserve(&function, refund_req("new-1", "old-1", None, t0())).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 700),
        other => panic!("expected 700, got {other:?}"),
    }
    assert!(matches!(
        function
            .revive_failed_refund("old-1-c")
            .await
            .expect("revive"),
        RefundReservation::Exceeds {
            requested: 300,
            remaining: 0
        }
    ));
    let again = db.store(OnStart::Check).migrate().await.expect("again");
    assert!(again.applied.is_empty(), "{again}");
    db.cleanup().await;
}

pub(super) async fn two_migrators_at_once_apply_each_migration_once(db: Fresh) {
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = match i % 2 {
                0 => db.store(OnStart::Check),
                _ => db.store_elsewhere(OnStart::Check),
            };
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    let mut applied = Vec::new();
    for t in tasks {
        let report = t.await.expect("task").expect("every migrator succeeds");
        assert_eq!(report.version, SCHEMA_VERSION);
        applied.extend(versions(&report));
    }
    applied.sort();
    assert_eq!(
        applied,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration applied by exactly one of them"
    );
    assert_eq!(
        db.store(OnStart::Check)
            .schema_version()
            .await
            .expect("version")
            .version,
        Some(SCHEMA_VERSION)
    );
    db.cleanup().await;
}

pub(super) async fn migrate_on_start_applies_it_at_first_use(db: Fresh) {
    let local = db.store(OnStart::Migrate);
    local
        .insert_order(&new_order("mos-1", 100))
        .await
        .expect("the first call migrates");
    assert_eq!(
        local.schema_version().await.expect("version").version,
        Some(SCHEMA_VERSION)
    );
    db.cleanup().await;
}

/// MySQL: a migrator that died holding the lease (or one still running) is waited for, at
/// most as long as the caller has, and the refusal names the lock's holder and end.
pub(super) async fn a_held_migration_lock_is_waited_for_within_the_deadline(db: Fresh) {
    db.store(OnStart::Migrate).migrate().await.expect("migrate");
    db.raw(&[
        "DELETE FROM schema_migrations WHERE version = 2",
        "UPDATE schema_migration_lock SET holder = 'other-host:42:abc', \
              expires_at = UTC_TIMESTAMP(3) + INTERVAL 1 HOUR",
    ])
    .await;
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
    let store = db.store(OnStart::Check);
    let outcome = wxpay_shared::deadline::scope(deadline, store.migrate()).await;
    match outcome {
        Err(StoreError::Schema(m)) => assert!(m.contains("other-host:42:abc"), "{m}"),
        other => panic!("expected the lock's refusal, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Released (or lapsed): the next run applies what is missing.
    db.raw(&["UPDATE schema_migration_lock SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND"])
        .await;
    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert_eq!(versions(&report), vec![2]);
    db.cleanup().await;
}

/// The previous release's own schema — what its cold starts left, which is what migration 1
/// builds — taken over in place: migration 1 finds nothing to do, migration 2 adds the
/// counter and fills it from the rows there.
pub(super) async fn the_previous_release_schema_is_taken_over_in_place(db: Fresh) {
    db.store(OnStart::Check).migrate().await.expect("migrate");
    db.raw(&[
        "DROP TABLE schema_migrations",
        "ALTER TABLE orders DROP COLUMN refund_reserved",
        "INSERT INTO orders (out_trade_no, transaction_id, amount, paid_amount, refunded_amount, \
         description, trade_type, status, created_at, updated_at) VALUES ('prev-1', 'wx-prev-1', \
         900, 900, 100, '', 'JSAPI', 'paid', '2024-05-01 12:00:00.000', '2024-05-01 12:00:00.000')",
        "INSERT INTO refunds (out_refund_no, out_trade_no, amount, status, created_at) VALUES \
         ('prev-1-a', 'prev-1', 100, 'success', '2024-05-01 12:01:00.000'), \
         ('prev-1-b', 'prev-1', 250, 'processing', '2024-05-01 12:02:00.000')",
    ])
    .await;
    let function = db.store(OnStart::Check);
    assert_refused(function.get_order("prev-1").await, "no schema version");
    let report = db.store(OnStart::Check).migrate().await.expect("migrate");
    assert_eq!(versions(&report), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let order = function
        .get_order("prev-1")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((order.refunded_amount, order.refund_reserved), (100, 250));
    match reserve(&function, refund_req("prev-1-c", "prev-1", None, t0())).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 550),
        other => panic!("expected 550, got {other:?}"),
    }
    db.cleanup().await;
}
