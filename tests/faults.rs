//! Faults in the middle of a notification lose nothing: another session holding the order
//! row costs WeChat Pay's notification a 5xx within its 5 s, and its retry after the lock is
//! released records the payment once, with one backend delivery.
//!
//! Injected faults: a second database session of the test's own holds the order (on MySQL
//! the row, with `SELECT … FOR UPDATE` in an open transaction; on SQLite, a shared file, the
//! write lock with `BEGIN IMMEDIATE`); the fake backend hangs (holds the request 60 s),
//! answers slowly (6 s) or answers 500 (`FakeBackend::set_delivery_fault`).

mod common;

use std::time::{Duration, Instant};

use common::{Harness, StoreKind};
use mysql_async::prelude::Queryable;
use serde_json::json;
use wxpay_local::backend::DeliveryFault;
use wxpay_shared::store::{OrderStatus, OutboxStatus};

both_stores!(
    a_held_order_row_costs_a_5xx_in_time_and_the_retry_records_once,
    a_hung_slow_or_failing_backend_delays_only_its_delivery,
);

/// Another session in the middle of a transaction that holds the order.
enum Holder {
    Mysql(mysql_async::Conn),
    Sqlite(rusqlite::Connection),
}

impl Holder {
    async fn hold(h: &Harness, out_trade_no: &str) -> Holder {
        let url = h
            .vars
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.execute(
                "UPDATE orders SET updated_at = updated_at WHERE out_trade_no = ?1",
                [out_trade_no],
            )
            .unwrap();
            Holder::Sqlite(conn)
        } else {
            let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
            conn.query_drop("START TRANSACTION").await.unwrap();
            let held: Option<String> = conn
                .exec_first(
                    "SELECT out_trade_no FROM orders WHERE out_trade_no = ? FOR UPDATE",
                    (out_trade_no,),
                )
                .await
                .unwrap();
            assert!(held.is_some(), "the order row is held");
            Holder::Mysql(conn)
        }
    }

    async fn release(self) {
        match self {
            Holder::Mysql(mut conn) => {
                conn.query_drop("ROLLBACK").await.unwrap();
                conn.disconnect().await.unwrap();
            }
            Holder::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
        }
    }
}

async fn a_held_order_row_costs_a_5xx_in_time_and_the_retry_records_once(kind: StoreKind) {
    let Some((h, _dir)) = common::start_on_shared_store(kind, "held", |_| {}).await else {
        return;
    };
    let no = h.create_order("o_held", "basic").await;
    let holder = Holder::hold(&h, &no).await;

    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(6), h.sim.pay(&no)).await;
    let took = started.elapsed();
    let outcome = answered
        .expect("answered at all")
        .expect("the notification is answered");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(outcome.status >= 500, "WeChat Pay must retry: {outcome:?}");

    holder.release().await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Pending);
    h.retries_record_once(&no, &h.pay_url()).await;
}

async fn a_hung_slow_or_failing_backend_delays_only_its_delivery(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    for fault in [
        DeliveryFault::Stall(Duration::from_secs(60)),
        DeliveryFault::Stall(Duration::from_secs(6)),
        DeliveryFault::Status(500),
    ] {
        h.backend.set_delivery_fault(Some(fault));
        let no = h.create_order("o_backend", "basic").await;
        let started = Instant::now();
        let outcome = h.sim.pay(&no).await.expect("answered");
        let took = started.elapsed();
        assert_eq!(outcome.status, 204, "{fault:?}: {outcome:?}");
        assert!(
            took < Duration::from_secs(5),
            "{fault:?}: answered after {took:?}"
        );
        assert_eq!(h.order(&no).await.status, OrderStatus::Paid, "{fault:?}");
        let outbox = h.store.outbox_for_order(&no).await.unwrap();
        assert_eq!(outbox.len(), 1, "{fault:?}");
        assert_eq!(outbox[0].status, OutboxStatus::Pending, "{fault:?}: waits");
        assert_eq!(h.backend.deliveries_for(&no), 0, "{fault:?}");

        h.backend.set_delivery_fault(None);
        for _ in 0..2 {
            let (status, body) = h
                .call_trusted(json!({ "type": "wxpay_notify_retry", "all": true }))
                .await;
            assert_eq!(status, 200, "{fault:?}: {body}");
        }
        assert_eq!(h.backend.deliveries_for(&no), 1, "{fault:?}: exactly once");
        let outbox = h.store.outbox_for_order(&no).await.unwrap();
        assert_eq!(outbox[0].status, OutboxStatus::Delivered, "{fault:?}");
    }
}

/// The function's database connection is killed (`KILL`, from the test's own session) while
/// its `mark_paid` transaction waits on the order row: the notification is answered 5xx,
/// nothing is half-written, and WeChat Pay's retry records the payment once. MySQL only:
/// SQLite has no connection to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_inside_mark_paid_loses_nothing() {
    let Some(h) = Harness::start(StoreKind::Mysql).await else {
        return;
    };
    let no = h.create_order("o_killed", "basic").await;
    let holder = Holder::hold(&h, &no).await;
    let Holder::Mysql(mut admin) = holder else {
        unreachable!("a MySQL harness")
    };

    let pay = {
        let (sim, no) = (h.sim.clone(), no.clone());
        tokio::spawn(async move { sim.pay(&no).await })
    };
    // The function's UPDATE is waiting for the row the test holds: kill its connection.
    let mut killed = false;
    for _ in 0..40 {
        let victim: Option<u64> = admin
            .query_first(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND INFO LIKE 'UPDATE orders SET status = ''paid''%'",
            )
            .await
            .unwrap();
        if let Some(id) = victim {
            admin.query_drop(format!("KILL {id}")).await.unwrap();
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(killed, "the function's mark_paid never waited on the row");
    let outcome = pay.await.unwrap().expect("answered");
    assert!(outcome.status >= 500, "WeChat Pay must retry: {outcome:?}");
    Holder::Mysql(admin).release().await;

    assert_eq!(
        h.order(&no).await.status,
        OrderStatus::Pending,
        "nothing half-written"
    );
    assert!(h.store.outbox_for_order(&no).await.unwrap().is_empty());
    h.retries_record_once(&no, &h.pay_url()).await;
}
