//! Faults in the middle of a notification lose nothing: another session holding the order
//! row costs WeChat Pay's notification a 5xx within its 5 s, and its retry after the lock is
//! released records the payment once, with one backend delivery.
//!
//! Injected faults: a second database session of the test's own holds the order (on MySQL
//! the row, with `SELECT … FOR UPDATE` in an open transaction; on SQLite, a shared file, the
//! write lock with `BEGIN IMMEDIATE`); the fake backend hangs (holds the request 60 s),
//! answers slowly (6 s) or answers 500 (`FakeBackend::set_delivery_fault`); the function's
//! MySQL connection is `KILL`ed from the test's session while it waits half-way through a
//! transaction (behind `LOCK TABLES notify_outbox WRITE`, or behind the test's own
//! uncommitted insert of the same refund number).

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
        let url = h.database_url();
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

/// Kills the function's connection (`KILL`, from the test's own session `admin`) once it
/// is seen waiting in a statement that starts with `statement`. Only connections to this
/// test's own database are candidates: the server is shared with other tests (and other
/// test runs), whose statements of the same text must not be killed instead.
async fn kill_when_waiting(admin: &mut mysql_async::Conn, statement: &str) {
    for _ in 0..60 {
        let victim: Option<u64> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND DB = DATABASE() \
                   AND INFO LIKE CONCAT(?, '%')",
                (statement,),
            )
            .await
            .unwrap();
        if let Some(id) = victim {
            admin.query_drop(format!("KILL {id}")).await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the function never waited in `{statement}…`");
}

/// The function's database connection is killed in the middle of `mark_paid`: it has
/// already marked the order paid and written its log row, and waits to queue the outbox
/// row (the test holds `LOCK TABLES notify_outbox WRITE`). The notification is answered
/// 5xx, the half-done transaction is gone (order still pending, no log row, no outbox
/// row), and WeChat Pay's retry records the payment once, delivered once. MySQL only:
/// SQLite has no connection to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_inside_mark_paid_loses_nothing() {
    let Some(h) = Harness::start(StoreKind::Mysql).await else {
        return;
    };
    let no = h.create_order("o_killed", "basic").await;
    let mut admin = mysql_async::Conn::from_url(h.database_url().as_str())
        .await
        .unwrap();
    admin
        .query_drop("LOCK TABLES notify_outbox WRITE")
        .await
        .unwrap();

    let started = Instant::now();
    let pay = {
        let (sim, no) = (h.sim.clone(), no.clone());
        tokio::spawn(async move { sim.pay(&no).await })
    };
    kill_when_waiting(&mut admin, "INSERT INTO notify_outbox").await;
    let outcome = pay.await.unwrap().expect("answered");
    assert!(outcome.status >= 500, "WeChat Pay must retry: {outcome:?}");
    // Before the server's own statement limit (4 s) could have ended the wait instead.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered because of the kill, not a timeout"
    );
    admin.query_drop("UNLOCK TABLES").await.unwrap();
    admin.disconnect().await.unwrap();

    assert_eq!(
        h.order(&no).await.status,
        OrderStatus::Pending,
        "the paid mark was rolled back with the rest"
    );
    assert_eq!(payment_logs(&h, &no).await, 0, "no payment log row");
    assert!(h.store.outbox_for_order(&no).await.unwrap().is_empty());
    h.retries_record_once(&no, &h.pay_url()).await;
    assert_eq!(payment_logs(&h, &no).await, 1);
}

/// Log rows of the payment itself (the order's creation has its own).
async fn payment_logs(h: &Harness, no: &str) -> usize {
    let logs = h.store.logs_for_order(no).await.unwrap();
    logs.iter()
        .filter(|l| l.event_type.as_deref() == Some("TRANSACTION.SUCCESS"))
        .count()
}

/// The function's connection is killed in the middle of `reserve_refund`: it holds the
/// order row and waits to insert the refund (the test's own open transaction holds the
/// refund number). What the function decides here is the answer (500 `50010`: retry) and
/// that nothing reached WeChat Pay before the reservation was durable; the server's
/// rollback frees the row and the reservation, and the caller's retry with the same
/// `outRefundNo` refunds once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_inside_reserve_refund_loses_nothing() {
    let Some(h) = Harness::start(StoreKind::Mysql).await else {
        return;
    };
    let no = h.create_paid_order("o_killed_refund", "premium").await;
    let mut admin = mysql_async::Conn::from_url(h.database_url().as_str())
        .await
        .unwrap();
    admin.query_drop("START TRANSACTION").await.unwrap();
    admin
        .exec_drop(
            "INSERT INTO refunds (out_refund_no, out_trade_no, amount, status, created_at) \
             VALUES ('RF-KILLED-1', ?, 1, 'processing', UTC_TIMESTAMP(3))",
            (no.as_str(),),
        )
        .await
        .unwrap();

    let call = json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 990,
                       "outRefundNo": "RF-KILLED-1" });
    let started = Instant::now();
    let ((status, body), ()) = tokio::join!(
        h.call_trusted(call.clone()),
        kill_when_waiting(&mut admin, "INSERT INTO refunds")
    );
    assert_eq!((status, &body["code"]), (500, &json!(50010)), "{body}");
    // The lock wait alone would also end in 50010, after innodb_lock_wait_timeout (2 s).
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered because of the kill, not the lock wait timeout"
    );
    admin.query_drop("ROLLBACK").await.unwrap();
    admin.disconnect().await.unwrap();

    assert!(h.store.refunds_for_order(&no).await.unwrap().is_empty());
    assert!(
        h.sim.refund("RF-KILLED-1").is_none(),
        "WeChat Pay never asked"
    );
    let started = Instant::now();
    let (status, body) = h.call_trusted(call).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the order row was not left locked"
    );
    let refunds = h.store.refunds_for_order(&no).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount, 990);
    assert_eq!(h.sim.refunds().len(), 1, "one refund at WeChat Pay");
}
