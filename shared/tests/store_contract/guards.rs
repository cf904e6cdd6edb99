//! Guards that are writes: the order's refund counter stays the sum of the refunds in flight
//! through every transition, and the decisions about money hold when they are made through
//! two store instances on one database — two pools, the shape a cluster has (each instance
//! talks to its own node). On one MySQL server the old locking-read code held here too (the
//! row lock serialised it); a multi-primary cluster, where `SELECT … FOR UPDATE` holds on
//! one node only, is where it failed: the cluster tests run these same cases through two
//! nodes.

use super::*;

/// The order's totals are what its refunds say: `refunded_amount` the successful ones,
/// `refund_reserved` the ones in flight (`processing`, `abnormal`).
#[track_caller]
fn assert_totals_match(
    order: &wxpay_shared::store::Order,
    refunds: &[wxpay_shared::store::Refund],
    what: &str,
) {
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r.status == RefundStatus::Success)
        .map(|r| r.amount)
        .sum();
    let in_flight: i64 = refunds
        .iter()
        .filter(|r| matches!(r.status, RefundStatus::Processing | RefundStatus::Abnormal))
        .map(|r| r.amount)
        .sum();
    assert_eq!(
        (order.refunded_amount, order.refund_reserved),
        (refunded, in_flight),
        "{what}: the order's (refunded, reserved) against its refunds {refunds:?}"
    );
}

async fn totals(store: &S, no: &str, what: &str) -> (i64, i64) {
    let order = store.get_order(no).await.expect("get").expect("order");
    let refunds = store.refunds_for_order(no).await.expect("refunds");
    assert_totals_match(&order, &refunds, what);
    (order.refunded_amount, order.refund_reserved)
}

async fn result_outcome(store: &S, mut result: RefundResult) -> RefundOutcome {
    if let Some(order) = store.get_order(&result.out_trade_no).await.expect("get") {
        result.order_total = order.paid_amount.unwrap_or(order.amount);
    }
    store.finish_refund(&result).await.expect("finish_refund")
}

pub(super) async fn refund_reserved_stays_exact_through_every_transition(store: S) {
    let no = "tx-1";
    paid_order(&store, no, 1000, t0()).await;
    let created = |r: RefundReservation| matches!(r, RefundReservation::Created(_));
    assert!(created(
        reserve(&store, refund_req("tx-a", no, Some(100), t0())).await
    ));
    assert_eq!(totals(&store, no, "reserved a").await, (0, 100));
    assert!(created(
        reserve(&store, refund_req("tx-b", no, Some(200), t0())).await
    ));
    assert_eq!(totals(&store, no, "reserved b").await, (0, 300));

    let ok = |o: RefundOutcome| assert_eq!(o, RefundOutcome::Applied);
    ok(result_outcome(
        &store,
        refund_result("tx-a", no, 100, RefundStatus::Success),
    )
    .await);
    assert_eq!(totals(&store, no, "a succeeded").await, (100, 200));
    ok(result_outcome(
        &store,
        refund_result("tx-b", no, 200, RefundStatus::Abnormal),
    )
    .await);
    assert_eq!(totals(&store, no, "b abnormal").await, (100, 200));
    ok(result_outcome(&store, refund_result("tx-b", no, 200, RefundStatus::Closed)).await);
    assert_eq!(totals(&store, no, "b closed").await, (100, 0));

    // Refused, then revived with its own number, then paid out.
    assert!(created(
        reserve(&store, refund_req("tx-c", no, Some(300), t0())).await
    ));
    assert!(store.fail_refund("tx-c").await.expect("fail"));
    assert!(
        !store.fail_refund("tx-c").await.expect("fail again"),
        "once"
    );
    assert_eq!(totals(&store, no, "c refused").await, (100, 0));
    assert!(matches!(
        store.revive_failed_refund("tx-c").await.expect("revive"),
        RefundReservation::Revived(_)
    ));
    assert_eq!(totals(&store, no, "c revived").await, (100, 300));
    ok(result_outcome(
        &store,
        refund_result("tx-c", no, 300, RefundStatus::Success),
    )
    .await);
    assert_eq!(totals(&store, no, "c succeeded").await, (400, 0));

    // Taken for refused, but WeChat Pay paid it after all: its word wins.
    assert!(created(
        reserve(&store, refund_req("tx-d", no, Some(50), t0())).await
    ));
    assert!(store.fail_refund("tx-d").await.expect("fail"));
    ok(result_outcome(&store, refund_result("tx-d", no, 50, RefundStatus::Success)).await);
    assert_eq!(
        totals(&store, no, "d succeeded after a refusal").await,
        (450, 0)
    );

    // Refunds made in the merchant portal, first heard of as outcomes.
    ok(result_outcome(
        &store,
        refund_result("tx-portal-e", no, 100, RefundStatus::Success),
    )
    .await);
    ok(result_outcome(
        &store,
        refund_result("tx-portal-f", no, 30, RefundStatus::Abnormal),
    )
    .await);
    ok(result_outcome(
        &store,
        refund_result("tx-portal-g", no, 20, RefundStatus::Closed),
    )
    .await);
    assert_eq!(totals(&store, no, "portal refunds").await, (550, 30));

    // What changes nothing: a duplicate, a mismatch, a portal refund that does not fit.
    assert_eq!(
        result_outcome(
            &store,
            refund_result("tx-a", no, 100, RefundStatus::Success)
        )
        .await,
        RefundOutcome::Unchanged
    );
    assert!(matches!(
        result_outcome(
            &store,
            refund_result("tx-portal-f", no, 31, RefundStatus::Success)
        )
        .await,
        RefundOutcome::Mismatch(_)
    ));
    assert!(matches!(
        result_outcome(
            &store,
            refund_result("tx-portal-h", no, 421, RefundStatus::Success)
        )
        .await,
        RefundOutcome::Mismatch(_)
    ));
    assert_eq!(totals(&store, no, "nothing changed").await, (550, 30));

    // The rest, and the order ends refunded once the abnormal one is re-routed and paid.
    match reserve(&store, refund_req("tx-rest", no, None, t0())).await {
        RefundReservation::Created(r) => assert_eq!(r.amount, 420),
        other => panic!("expected the 420 that remain, got {other:?}"),
    }
    assert_eq!(totals(&store, no, "the rest reserved").await, (550, 450));
    assert!(matches!(
        reserve(&store, refund_req("tx-more", no, Some(1), t0())).await,
        RefundReservation::Exceeds { remaining: 0, .. }
    ));
    ok(result_outcome(
        &store,
        refund_result("tx-rest", no, 420, RefundStatus::Success),
    )
    .await);
    assert_eq!(order_state(&store, no).await, (OrderStatus::Paid, 970));
    ok(result_outcome(
        &store,
        refund_result("tx-portal-f", no, 30, RefundStatus::Success),
    )
    .await);
    assert_eq!(totals(&store, no, "all paid out").await, (1000, 0));
    assert_eq!(order_state(&store, no).await, (OrderStatus::Refunded, 1000));
}

/// Issue 22 item 3: of concurrent retries of one refused refund, exactly one revives it;
/// the others learn it is processing again, and only the one amount is reserved.
pub(super) async fn concurrent_revivals_revive_once(store: S) {
    for round in 0..3 {
        let no = format!("rvc-{round}");
        let rf = format!("rvc-{round}-r");
        paid_order(&store, &no, 100, t0()).await;
        reserve(&store, refund_req(&rf, &no, Some(60), t0())).await;
        assert!(store.fail_refund(&rf).await.expect("fail"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, rf) = (store.clone(), rf.clone());
                tokio::spawn(async move { store.revive_failed_refund(&rf).await })
            })
            .collect();
        let mut revived = 0;
        for t in tasks {
            match t.await.expect("task").expect("revive") {
                RefundReservation::Revived(r) => {
                    revived += 1;
                    assert_eq!(r.status, RefundStatus::Processing);
                }
                RefundReservation::Existing(r) => assert_eq!(r.status, RefundStatus::Processing),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(revived, 1, "round {round}: exactly one call revived it");
        assert_eq!(totals(&store, &no, "revived once").await, (0, 60));
    }
}

// ---------------------------------------------------------------------------------------
// Two store instances on one database

/// Two reservations that each fit but not together, made through two store instances at
/// once; then ten through both, 30 each of 100: three fit.
pub(super) async fn reservations_through_two_stores_never_exceed(a: S, b: S) {
    for round in 0..5 {
        let no = format!("two-{round}");
        paid_order(&a, &no, 100, t0()).await;
        let tasks: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let req = refund_req(&format!("two-{round}-{i}"), &no, Some(60), t0());
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
        assert_eq!(totals(&a, &no, "one reserved").await, (0, 60));
    }
    paid_order(&a, "two-many", 100, t0()).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let req = refund_req(&format!("two-many-{i}"), "two-many", Some(30), t0());
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
    assert_eq!(totals(&b, "two-many", "three reserved").await, (0, 90));
}

/// A refused refund retried through both instances at once is revived once.
pub(super) async fn revivals_through_two_stores_revive_once(a: S, b: S) {
    paid_order(&a, "two-rv", 100, t0()).await;
    reserve(&a, refund_req("two-rv-r", "two-rv", Some(100), t0())).await;
    assert!(b.fail_refund("two-rv-r").await.expect("fail"));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.revive_failed_refund("two-rv-r").await })
        })
        .collect();
    let mut revived = 0;
    for t in tasks {
        if let RefundReservation::Revived(_) = t.await.expect("task").expect("revive") {
            revived += 1;
        }
    }
    assert_eq!(revived, 1);
    assert_eq!(totals(&a, "two-rv", "revived once").await, (0, 100));
}

/// Two refunds made in the merchant portal, each of 60 of an order paid 100, reported
/// through both instances at once: one fits and is recorded, the other is a mismatch.
pub(super) async fn portal_refunds_through_two_stores_fit_once(a: S, b: S) {
    for round in 0..3 {
        let no = format!("two-p-{round}");
        paid_order(&a, &no, 100, t0()).await;
        let tasks: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let result = refund_result(
                    &format!("two-p-{round}-{i}"),
                    &no,
                    60,
                    RefundStatus::Success,
                );
                tokio::spawn(async move { result_outcome(&store, result).await })
            })
            .collect();
        let mut applied = 0;
        for t in tasks {
            match t.await.expect("task") {
                RefundOutcome::Applied => applied += 1,
                RefundOutcome::Mismatch(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(applied, 1, "round {round}");
        assert_eq!(totals(&b, &no, "one portal refund").await, (60, 0));
    }
}

/// Payments of one order through both instances at once: paid once, one delivery queued.
pub(super) async fn payments_through_two_stores_are_recorded_once(a: S, b: S) {
    for round in 0..3 {
        let no = format!("two-pay-{round}");
        a.insert_order(&new_order(&no, 100)).await.expect("insert");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let p = paid(&no, 100, t0());
                tokio::spawn(async move { store.mark_paid(&p).await })
            })
            .collect();
        let mut transitioned = 0;
        for t in tasks {
            if let PaidOutcome::Transitioned { outbox } = t.await.expect("task").expect("paid") {
                transitioned += 1;
                let stored = b.outbox_for_order(&no).await.expect("outbox");
                assert!(stored.iter().any(|r| r.id == outbox.id), "a committed row");
            }
        }
        assert_eq!(transitioned, 1);
        assert_eq!(b.outbox_for_order(&no).await.expect("outbox").len(), 1);
    }
}

/// A deadlock that InnoDB resolves by rolling back the store's `mark_paid`: the store runs
/// the whole transaction again and the payment is recorded once, with one delivery queued,
/// the one handed back (from the transaction that committed). The test's session makes
/// the cycle: it holds the outbox's gap (`SELECT … FOR UPDATE` on the empty table) while
/// the store holds the order row and waits to queue the delivery, then asks for the order
/// row; it has written more, so InnoDB picks the store as the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_a_deadlock_victim_runs_again_and_records_once() {
    let Some(db) = MysqlDb::create().await else {
        return;
    };
    let store = db.store.clone();
    store
        .insert_order(&new_order("dl-1", 100))
        .await
        .expect("insert");
    let mut t = admin_conn(&with_database(&db.admin_url, &db.name)).await;
    t.query_drop("START TRANSACTION").await.unwrap();
    for i in 0..30 {
        t.exec_drop(
            "INSERT INTO payment_logs (`type`, out_trade_no, created_at) VALUES ('test', ?, UTC_TIMESTAMP(3))",
            (format!("heavy-{i}"),),
        )
        .await
        .unwrap();
    }
    let _: Vec<i64> = t
        .query("SELECT id FROM notify_outbox FOR UPDATE")
        .await
        .unwrap();
    let paying = {
        let store = store.clone();
        tokio::spawn(async move { store.mark_paid(&paid("dl-1", 100, t0())).await })
    };
    let mut waited = false;
    for _ in 0..100 {
        let n: Option<i64> = t
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND DB = DATABASE() \
                 AND INFO LIKE 'INSERT INTO notify_outbox%'",
            )
            .await
            .unwrap();
        if n.unwrap_or(0) > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(waited, "the store never waited to queue the delivery");
    // The cycle: InnoDB rolls back the lighter transaction, the store's.
    t.query_drop("UPDATE orders SET updated_at = updated_at WHERE out_trade_no = 'dl-1'")
        .await
        .expect("the test's session is not the victim");
    t.query_drop("ROLLBACK").await.unwrap();
    let _ = t.disconnect().await;
    let outcome = paying
        .await
        .expect("task")
        .expect("recorded after running again");
    let PaidOutcome::Transitioned { outbox } = outcome else {
        panic!("expected the payment recorded, got {outcome:?}");
    };
    let stored = store.outbox_for_order("dl-1").await.expect("outbox");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].id, outbox.id,
        "the delivery handed back is the committed one"
    );
    let logs = store.logs_for_order("dl-1").await.expect("logs");
    assert_eq!(
        logs.iter()
            .filter(|l| l.event_type.as_deref() == Some("TRANSACTION.SUCCESS"))
            .count(),
        1
    );
    assert_eq!(order_state(&store, "dl-1").await.0, OrderStatus::Paid);
    db.cleanup().await;
}

/// The store's sessions on its database, by the server's connection id.
async fn store_sessions(db: &MysqlDb) -> Vec<u64> {
    let mut admin = admin_conn(&db.admin_url).await;
    let ids = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? ORDER BY ID",
            (db.name.as_str(),),
        )
        .await
        .unwrap();
    let _ = admin.disconnect().await;
    ids
}

/// An operation that fails with an answer (a duplicate key) was not cut off: its healthy
/// connection goes back to the pool. Only a session abandoned mid-statement is ended with
/// `KILL` before the invocation answers (contract §12); killing every connection an error
/// came back on cost each such answer up to 100 ms and a fresh connection.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_an_operation_that_fails_keeps_its_connection() {
    let Some(db) = MysqlDb::create().await else {
        return;
    };
    db.store
        .insert_order(&new_order("keep-1", 100))
        .await
        .expect("insert");
    let before = store_sessions(&db).await;
    assert!(!before.is_empty(), "the pool keeps its connection");
    wxpay_shared::deadline::with_cleanups(async {
        let duplicate = db.store.insert_order(&new_order("keep-1", 100)).await;
        assert!(duplicate.is_err(), "a duplicate order is refused");
        wxpay_shared::deadline::finish_cleanups(std::time::Duration::from_secs(1)).await;
    })
    .await;
    let after = store_sessions(&db).await;
    assert!(
        before.iter().all(|id| after.contains(id)),
        "the pooled connection {before:?} was killed after a duplicate key (now {after:?})"
    );
    db.cleanup().await;
}

/// A connection reset on its way back to the pool would lose the session's 2 s lock wait
/// and Galera's causal reads, which are set when a connection is made: the URL may not ask
/// for it.
#[tokio::test]
async fn mysql_a_url_asking_for_connection_resets_is_refused() {
    let e = wxpay_shared::store::MySqlStore::new(
        "mysql://app:s3cr3t-pw@db.internal/pay?reset_connection=true",
    )
    .expect_err("refused");
    let e = e.to_string();
    assert!(e.contains("reset_connection"), "{e}");
    assert!(!e.contains("s3cr3t-pw"), "{e}");
    wxpay_shared::store::MySqlStore::new("mysql://app@db.internal/pay?reset_connection=false")
        .expect("an explicit `false` is what the store does anyway");
}
