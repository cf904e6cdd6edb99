//! The store's concurrency guarantees on a multi-primary cluster (issue 21): two stores,
//! each talking to its own node of a MariaDB Galera cluster, race for the same rows.
//!
//! A Galera node holds its row locks only locally; two transactions on two nodes conflict
//! only when both write the same row, and then the later one fails certification at
//! `COMMIT`. So every guard that rests on a locking read alone (`SELECT … FOR UPDATE`)
//! lets both through here, while a guard written as a conditional write on the row it
//! guards holds.
//!
//! The cluster comes from `TEST_GALERA_URLS` (three `mysql://` URLs, one per node, as
//! `scripts/galera.sh start` prints them). Without it these tests are skipped loudly, or
//! fail when `CI=true`. Each test makes its own database (it replicates to every node) and
//! drops it.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration as StdDuration;

use mysql_async::prelude::Queryable;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;
use wxpay_shared::store::{
    open, NewOrder, NewRefund, PaidOutcome, PaidTransition, PaymentLog, RefundReservation, Store,
    StoreError,
};

type S = Arc<dyn Store>;

const HINT: &str = "the cluster tests need TEST_GALERA_URLS=mysql://root@127.0.0.1:4306/test,mysql://root@127.0.0.1:4307/test,mysql://root@127.0.0.1:4308/test (scripts/galera.sh start)";

/// A database of the test's own on the cluster, and one store per node.
struct Cluster {
    admin_url: String,
    name: String,
    /// `nodes[i]` talks to node i+1 only.
    nodes: Vec<S>,
}

impl Cluster {
    async fn create() -> Option<Cluster> {
        let urls: Vec<String> = match std::env::var("TEST_GALERA_URLS") {
            Ok(v) if !v.trim().is_empty() => v.split(',').map(|u| u.trim().to_string()).collect(),
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{HINT} (CI=true, so they may not be skipped)");
                }
                static LOUD: Once = Once::new();
                LOUD.call_once(|| {
                    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {HINT} ***\n");
                });
                return None;
            }
        };
        assert!(urls.len() >= 2, "TEST_GALERA_URLS names at least two nodes");
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "wxpay_gs_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = mysql_async::Conn::from_url(urls[0].as_str())
            .await
            .expect("connect to the first node of TEST_GALERA_URLS");
        admin
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create the test database");
        let _ = admin.disconnect().await;
        let nodes: Vec<S> = urls
            .iter()
            .map(|u| open(&with_database(u, &name)).expect("open a store on a node"))
            .collect();
        // The schema once, through the first node; the others find it replicated.
        nodes[0].migrate().await.expect("schema on node 1");
        Some(Cluster {
            admin_url: urls[0].clone(),
            name,
            nodes,
        })
    }

    /// Waits (bounded) until `store` sees the order in `state`: a node applies what another
    /// committed a moment later, and these tests race writes, not reads.
    async fn seen(&self, store: &S, no: &str, paid: bool) {
        for _ in 0..200 {
            if let Ok(Some(o)) = store.get_order(no).await {
                if !paid || o.transaction_id.is_some() {
                    return;
                }
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        panic!("order {no} never reached the other node");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = mysql_async::Conn::from_url(url.as_str()).await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn new_order(no: &str, amount: i64) -> NewOrder {
    NewOrder {
        out_trade_no: no.to_string(),
        openid: Some("o-payer".to_string()),
        user_id: Some("u-1".to_string()),
        generation_id: Some("gen-1".to_string()),
        package_type: Some("premium".to_string()),
        business_type: None,
        business_id: None,
        amount,
        description: "Premium package".to_string(),
        trade_type: "JSAPI".to_string(),
        created_at: now(),
    }
}

fn paid(no: &str, amount: i64) -> PaidTransition {
    PaidTransition {
        out_trade_no: no.to_string(),
        transaction_id: format!("wx-{no}"),
        payer_openid: Some("o-payer".to_string()),
        paid_amount: amount,
        paid_at: now() - Duration::seconds(2),
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
        business_type: None,
        outbox_payload: format!(r#"{{"outTradeNo":"{no}","status":"paid"}}"#),
        // The row is anybody's to claim at once (the outbox test claims it).
        lease_secs: 0,
        refunded: None,
        now: now(),
    }
}

/// A loser of a cross-node race either sees the winner's write, or is told to retry; it
/// never fails any other way.
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

/// The same payment, recorded through two nodes at once (two callers on each), for 20
/// orders: exactly one caller transitions each order, and it has one log row and one
/// outbox row, seen alike from both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_recorded_through_two_nodes_at_once_transitions_once() {
    let Some(c) = Cluster::create().await else {
        return;
    };
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    let mut retried = 0;
    for round in 0..20 {
        let no = format!("gp-{round}");
        a.insert_order(&new_order(&no, 500)).await.expect("order");
        c.seen(&b, &no, false).await;
        let start = Arc::new(Barrier::new(4));
        let tasks: Vec<_> = [&a, &a, &b, &b]
            .into_iter()
            .map(|store| {
                let (store, start, p) = (store.clone(), start.clone(), paid(&no, 500));
                tokio::spawn(async move {
                    start.wait().await;
                    store.mark_paid(&p).await
                })
            })
            .collect();
        let mut transitioned = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(PaidOutcome::Transitioned { .. }) => transitioned += 1,
                Ok(PaidOutcome::AlreadyPaid(_)) => {}
                Ok(PaidOutcome::NotFound) => panic!("{no}: the order exists on both nodes"),
                Err(e) if retryable(&e) => retried += 1,
                Err(e) => panic!("{no}: a loser must see the winner or retry, not: {e}"),
            }
        }
        assert_eq!(
            transitioned, 1,
            "{no}: exactly one caller records the payment"
        );
        c.seen(&b, &no, true).await;
        for (node, store) in [("node 1", &a), ("node 2", &b)] {
            let logs = store.logs_for_order(&no).await.expect("logs");
            let payments = logs
                .iter()
                .filter(|l| l.event_type.as_deref() == Some("TRANSACTION.SUCCESS"))
                .count();
            assert_eq!(payments, 1, "{no}: one payment log row seen from {node}");
            let outbox = store.outbox_for_order(&no).await.expect("outbox");
            assert_eq!(outbox.len(), 1, "{no}: one outbox row seen from {node}");
        }
    }
    eprintln!(
        "payments through two nodes: 20 orders, 1 transition each, {retried} losers told to retry"
    );
}

/// Two full refunds of one order, reserved through two nodes at once, for 10 orders: at
/// most one is reserved, and never more than was paid. (A reservation that rests on
/// `SELECT … FOR UPDATE` of the order lets both through: each node holds its own lock and
/// the two transactions write different refund rows, so nothing conflicts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_full_refunds_through_two_nodes_reserve_at_most_one() {
    let Some(c) = Cluster::create().await else {
        return;
    };
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    const ORDERS: usize = 10;
    let mut doubled = Vec::new();
    let mut over_reserved = 0;
    for round in 0..ORDERS {
        let no = format!("gr-{round}");
        a.insert_order(&new_order(&no, 990)).await.expect("order");
        match a.mark_paid(&paid(&no, 990)).await.expect("paid") {
            PaidOutcome::Transitioned { .. } => {}
            other => panic!("{no}: expected a transition, got {other:?}"),
        }
        c.seen(&b, &no, true).await;
        let start = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = [(&a, "a"), (&b, "b")]
            .into_iter()
            .map(|(store, side)| {
                let req = NewRefund {
                    out_refund_no: format!("RF-{no}-{side}"),
                    out_trade_no: no.clone(),
                    amount: None,
                    reason: Some("full refund".to_string()),
                    now: now(),
                };
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.reserve_refund(&req).await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(RefundReservation::Created(_)) => created += 1,
                Ok(RefundReservation::Exceeds { .. } | RefundReservation::NotRefundable(_)) => {}
                Ok(other) => panic!("{no}: unexpected {other:?}"),
                Err(e) if retryable(&e) => {}
                Err(e) => panic!("{no}: a loser must be refused or retry, not: {e}"),
            }
        }
        if created > 1 {
            doubled.push(no.clone());
        }
        // Whatever the callers were told, the rows decide what WeChat Pay may be asked for.
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        let reserved: i64 = a
            .refunds_for_order(&no)
            .await
            .expect("refunds")
            .iter()
            .map(|r| r.amount)
            .sum();
        if reserved > 990 {
            over_reserved += 1;
        }
    }
    assert!(
        doubled.is_empty() && over_reserved == 0,
        "two full refunds reserved through two nodes for {} of {ORDERS} orders ({}); \
         {over_reserved} orders hold reservations above their paid amount",
        doubled.len(),
        doubled.join(", ")
    );
}

/// The same outbox rows claimed through two nodes at once: each row is leased to exactly
/// one claimer, one by one (10 rows) and in batches (`claim_due_notifications`, 10 rows,
/// two batch claimers on each node).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_rows_claimed_through_two_nodes_are_leased_once() {
    let Some(c) = Cluster::create().await else {
        return;
    };
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    let mut ids = Vec::new();
    for i in 0..10 {
        let no = format!("go-{i}");
        a.insert_order(&new_order(&no, 100)).await.expect("order");
        match a.mark_paid(&paid(&no, 100)).await.expect("paid") {
            PaidOutcome::Transitioned { outbox } => ids.push((no, outbox.id)),
            other => panic!("{no}: expected a transition, got {other:?}"),
        }
    }
    for (no, _) in &ids {
        c.seen(&b, no, true).await;
    }
    wait_for_outbox(&b, &ids).await;

    for (no, id) in &ids {
        let start = Arc::new(Barrier::new(4));
        let tasks: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .map(|store| {
                let (store, start, id) = (store.clone(), start.clone(), *id);
                tokio::spawn(async move {
                    start.wait().await;
                    store.claim_notification(id, 60).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(Some(row)) => winners.push(row),
                Ok(None) => {}
                Err(e) if retryable(&e) => {}
                Err(e) => panic!("{no}: a claim loser must find the row taken, not: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{no}: exactly one claimer holds the lease"
        );
        // The lease the winner holds is the one both nodes see.
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        for store in [&a, &b] {
            let row = &store.outbox_for_order(no).await.expect("outbox")[0];
            assert_eq!(
                row.lease, winners[0].lease,
                "{no}: the winner's lease is stored"
            );
        }
    }

    // Ten more rows, due at once, claimed in batches through both nodes.
    let mut due = std::collections::HashSet::new();
    let mut more = Vec::new();
    for i in 0..10 {
        let no = format!("gd-{i}");
        a.insert_order(&new_order(&no, 100)).await.expect("order");
        match a.mark_paid(&paid(&no, 100)).await.expect("paid") {
            PaidOutcome::Transitioned { outbox } => {
                due.insert(outbox.id);
                more.push((no, outbox.id));
            }
            other => panic!("{no}: expected a transition, got {other:?}"),
        }
    }
    wait_for_outbox(&b, &more).await;
    let start = Arc::new(Barrier::new(4));
    let tasks: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|store| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.claim_due_notifications(60, 20, false).await
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(rows) => {
                for row in rows {
                    assert!(due.contains(&row.id), "only due rows are claimed");
                    assert!(seen.insert(row.id), "row {} claimed twice", row.id);
                }
            }
            Err(e) if retryable(&e) => {}
            Err(e) => panic!("a batch claim must lease rows or retry, not: {e}"),
        }
    }
    // A batch that lost a race partway is told to retry; what it left is claimed later.
    let rest = a
        .claim_due_notifications(60, 20, false)
        .await
        .expect("rest");
    for row in rest {
        assert!(seen.insert(row.id), "row {} claimed twice", row.id);
    }
    assert_eq!(seen, due, "every due row leased by exactly one claimer");
}

async fn wait_for_outbox(store: &S, rows: &[(String, i64)]) {
    for (no, _) in rows {
        for i in 0.. {
            if matches!(store.outbox_for_order(no).await.map(|r| r.len()), Ok(1)) {
                break;
            }
            assert!(i < 200, "{no}: the outbox row never reached the other node");
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }
}
