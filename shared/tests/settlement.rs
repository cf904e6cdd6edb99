//! Settlement on its own: a store, the merchant's identity and an outbox port — no HTTP, no
//! Lambda, no WeChat Pay. The outbox port here records what it is handed, which is exactly
//! what settlement promises the real one: each paid order's delivery, once, already leased.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use time::OffsetDateTime;
use wxpay_shared::api::Transaction;
use wxpay_shared::outbox::Dispatch;
use wxpay_shared::settlement::{Merchant, PaymentMismatch, PaymentRecord, SettleError, Settlement};
use wxpay_shared::store::{NewOrder, OrderStatus, OutboxRow, OutboxStatus, SqliteStore, Store};

const MERCHANT: Merchant<'static> = Merchant {
    mchid: "1900000109",
    appid: "wx8888888888888888",
};

#[derive(Default)]
struct Handed(Mutex<Vec<OutboxRow>>);

#[async_trait]
impl Dispatch for Handed {
    async fn deliver(&self, row: OutboxRow, _budget: Duration) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(row);
    }
}

impl Handed {
    fn rows(&self) -> Vec<OutboxRow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn store_with_order(no: &str, amount: i64) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("sqlite"));
    store
        .insert_order(&NewOrder {
            out_trade_no: no.into(),
            openid: Some("o-buyer".into()),
            user_id: Some("u-1".into()),
            generation_id: Some("gen-1".into()),
            package_type: Some("premium".into()),
            business_type: Some("photo".into()),
            business_id: Some("b-1".into()),
            amount,
            description: "Premium".into(),
            trade_type: "JSAPI".into(),
            created_at: OffsetDateTime::now_utc(),
        })
        .await
        .expect("insert order");
    store
}

fn paid(no: &str, total: i64) -> Transaction {
    serde_json::from_value(json!({
        "appid": MERCHANT.appid,
        "mchid": MERCHANT.mchid,
        "out_trade_no": no,
        "transaction_id": format!("4200{no}"),
        "trade_state": "SUCCESS",
        "success_time": "2026-12-01T10:00:00+08:00",
        "payer": { "openid": "o-buyer" },
        "amount": { "total": total, "payer_total": total, "currency": "CNY" },
    }))
    .expect("transaction")
}

async fn record(
    store: &Arc<dyn Store>,
    handed: &Handed,
    tx: &Transaction,
) -> Result<PaymentRecord, SettleError> {
    Settlement::new(store.as_ref(), MERCHANT, handed)
        .record_transaction(
            tx,
            "callback",
            "TRANSACTION.SUCCESS",
            Duration::from_secs(3),
        )
        .await
}

async fn status(store: &Arc<dyn Store>, no: &str) -> OrderStatus {
    store
        .get_order(no)
        .await
        .expect("get")
        .expect("order")
        .status
}

#[tokio::test]
async fn a_payment_is_recorded_once_and_its_delivery_handed_over_leased() {
    let store = store_with_order("WX-S1", 2990).await;
    let handed = Handed::default();

    let first = record(&store, &handed, &paid("WX-S1", 2990)).await;
    assert!(matches!(first, Ok(PaymentRecord::Recorded)), "{first:?}");
    let again = record(&store, &handed, &paid("WX-S1", 2990)).await;
    assert!(matches!(again, Ok(PaymentRecord::Duplicate)), "{again:?}");

    assert_eq!(status(&store, "WX-S1").await, OrderStatus::Paid);
    let rows = handed.rows();
    assert_eq!(rows.len(), 1, "the backend hears of a payment once");
    let row = &rows[0];
    assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 1));
    assert_eq!(row.business_type.as_deref(), Some("photo"));
    let body: serde_json::Value = serde_json::from_str(&row.payload).expect("json body");
    assert_eq!(body["outTradeNo"], "WX-S1");
    assert_eq!(body["transactionId"], "4200WX-S1");
    assert_eq!(body["status"], "paid");
    assert_eq!(body["packageType"], "premium");
    assert_eq!(body["generationId"], "gen-1");
    assert_eq!(body["userId"], "u-1");
    assert_eq!(body["businessId"], "b-1");
    assert_eq!(body["amount"], 2990);
    // The row handed over is the one stored, and nobody else may claim it meanwhile.
    let stored = store.outbox_for_order("WX-S1").await.expect("outbox");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, row.id);
    assert!(store
        .claim_notification(row.id, 30)
        .await
        .expect("claim")
        .is_none());
    let logs = store.logs_for_order("WX-S1").await.expect("logs");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].event_type.as_deref(), Some("TRANSACTION.SUCCESS"));
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_payment_record_it_once() {
    let store = store_with_order("WX-S2", 100).await;
    let handed = Arc::new(Handed::default());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, handed) = (store.clone(), handed.clone());
            tokio::spawn(async move { record(&store, &handed, &paid("WX-S2", 100)).await })
        })
        .collect();
    let mut recorded = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), Ok(PaymentRecord::Recorded)) {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(handed.rows().len(), 1);
    assert_eq!(store.logs_for_order("WX-S2").await.expect("logs").len(), 1);
}

#[tokio::test]
async fn payments_for_another_merchant_app_or_amount_change_nothing_and_are_logged() {
    /// An order, how its transaction is tampered with, and what settlement must say.
    type Case = (&'static str, Box<dyn Fn(&mut Transaction)>, PaymentMismatch);
    let cases: Vec<Case> = vec![
        (
            "WX-M1",
            Box::new(|t| t.mchid = Some("1900000999".into())),
            PaymentMismatch::Merchant("1900000999".into()),
        ),
        (
            "WX-M2",
            Box::new(|t| t.appid = Some("wx0000000000000000".into())),
            PaymentMismatch::App("wx0000000000000000".into()),
        ),
        (
            "WX-M3",
            Box::new(|t| {
                t.amount.as_mut().expect("amount").total = Some(1);
            }),
            PaymentMismatch::Amount {
                expected: 2990,
                got: 1,
            },
        ),
        (
            "WX-M4",
            Box::new(|t| t.appid = None),
            PaymentMismatch::Missing("appid"),
        ),
    ];
    for (no, tamper, expected) in cases {
        let store = store_with_order(no, 2990).await;
        let handed = Handed::default();
        let mut tx = paid(no, 2990);
        tamper(&mut tx);
        match record(&store, &handed, &tx).await {
            Err(SettleError::Mismatch(m)) => assert_eq!(m, expected, "{no}"),
            other => panic!("{no}: expected a mismatch, got {other:?}"),
        }
        assert_eq!(status(&store, no).await, OrderStatus::Pending, "{no}");
        assert!(
            handed.rows().is_empty(),
            "{no}: nothing handed to the outbox"
        );
        assert!(store.outbox_for_order(no).await.expect("outbox").is_empty());
        let logs = store.logs_for_order(no).await.expect("logs");
        assert_eq!(logs.len(), 1, "{no}");
        assert_eq!(logs[0].event_type.as_deref(), Some("MISMATCH"), "{no}");
    }
}

#[tokio::test]
async fn an_unknown_order_is_a_mismatch_and_an_unpaid_state_only_a_log() {
    let store = store_with_order("WX-U1", 500).await;
    let handed = Handed::default();
    match record(&store, &handed, &paid("WX-NOPE", 500)).await {
        Err(SettleError::Mismatch(PaymentMismatch::UnknownOrder(no))) => assert_eq!(no, "WX-NOPE"),
        other => panic!("expected UnknownOrder, got {other:?}"),
    }
    let mut notpay = paid("WX-U1", 500);
    notpay.trade_state = Some("NOTPAY".into());
    assert!(matches!(
        record(&store, &handed, &notpay).await,
        Ok(PaymentRecord::NotPaid)
    ));
    assert_eq!(status(&store, "WX-U1").await, OrderStatus::Pending);
    assert!(handed.rows().is_empty());
    assert_eq!(store.logs_for_order("WX-U1").await.expect("logs").len(), 1);
}

#[tokio::test]
async fn a_query_that_finds_a_mismatch_logs_it_as_the_query_s() {
    let store = store_with_order("WX-Q1", 2990).await;
    let handed = Handed::default();
    let settled = Settlement::new(store.as_ref(), MERCHANT, &handed)
        .record_transaction(
            &paid("WX-Q1", 1),
            "query",
            "TRANSACTION.SUCCESS",
            Duration::from_secs(3),
        )
        .await;
    assert!(matches!(
        settled,
        Err(SettleError::Mismatch(PaymentMismatch::Amount { .. }))
    ));
    let logs = store.logs_for_order("WX-Q1").await.expect("logs");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].log_type, "query");
    assert_eq!(logs[0].event_type.as_deref(), Some("MISMATCH"));
    assert_eq!(status(&store, "WX-Q1").await, OrderStatus::Pending);
}
