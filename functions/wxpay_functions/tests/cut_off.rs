//! Issue 22 item 4: a MySQL transaction cut off by the invocation's deadline ends before
//! the invocation answers.
//!
//! The story: the built router serves local HTTP with a 1 s deadline. A refund reserves its
//! amount (a write to the order row) and then waits to insert its refund row, which the
//! test's own session holds (an uncommitted insert of the same number). The deadline cuts
//! the call: 504. Right after the answer the test freezes the process (SIGSTOP), as Lambda
//! freezes a sandbox. By then the call's transaction is gone from the server, and another
//! session gets the order row at once — no lock wait, no 1205 — while the test still holds
//! the refund number. (Before, the dropped transaction stayed in its lock wait, holding the
//! order row, until the server's 2 s lock timeout; its ROLLBACK came only from the pool's
//! recycler, if that ran before the freeze.) Another instance then refunds the order.
//! Thawed, the frozen instance changes nothing: no refund of its own, the order's
//! reservation is the other instance's only, WeChat Pay was asked once.

mod support;

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::json;
use support::{Scratch, Server, TestDb};
use wxpay_local::{LocalEnv, LocalOptions};

const SECRET: &str = "test-internal-secret-0123456789";
const CUT: &str = "RF-CUT-000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_holding_the_order_row_ends_its_transaction_before_answering() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let scratch = Scratch::new("cut-off");
    let mut opts = LocalOptions::for_tests();
    opts.database_url = db.url.clone();
    let env = LocalEnv::start(opts)
        .await
        .expect("local environment starts");

    // A paid order of 2990 fen, through the in-process router (another instance).
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/pay", env.router_url))
        .body(r#"{"type":"wxpay_order","packageType":"premium","tradeType":"NATIVE"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let no = created["data"]["outTradeNo"]
        .as_str()
        .expect("order")
        .to_string();
    assert_eq!(env.sim.pay(&no).await.expect("paid").status, 204);

    let mut vars = env.vars.clone();
    vars.push(("FUNCTION_TIMEOUT_MS".into(), "1000".into()));
    let server = Server::start(&vars, &scratch.0).await;

    // The test holds the refund number: the function will wait to insert it.
    let mut holder = db.conn().await;
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .exec_drop(
            "INSERT INTO refunds (out_refund_no, out_trade_no, amount, status, created_at) \
             VALUES (?, ?, 1, 'processing', UTC_TIMESTAMP(3))",
            (CUT, no.as_str()),
        )
        .await
        .unwrap();

    let started = Instant::now();
    let (status, body) = server
        .call(
            &[("X-Internal-Secret", SECRET)],
            json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 990, "outRefundNo": CUT }),
        )
        .await;
    server.freeze();
    let took = started.elapsed();
    assert_eq!((status, &body["code"]), (504, &json!(50410)), "{body}");
    assert!(took < Duration::from_millis(1000), "answered in {took:?}");

    // The call's transaction ended before the answer: only the test's own is open.
    let holder_id: Option<i64> = holder.query_first("SELECT CONNECTION_ID()").await.unwrap();
    let mut other = db.conn().await;
    let open: Vec<(i64, String)> = other
        .exec(
            // The server is shared with other tests: only sessions on this test's database.
            "SELECT t.trx_mysql_thread_id, t.trx_state FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE p.DB = DATABASE() AND t.trx_mysql_thread_id NOT IN (?, CONNECTION_ID())",
            (holder_id,),
        )
        .await
        .unwrap();
    assert!(
        open.is_empty(),
        "transactions left open by the cut-off call: {open:?}"
    );

    // Another session takes the order row, waiting at most 1 s for it, while the test still
    // holds the refund number the call was waiting for.
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    other.query_drop("START TRANSACTION").await.unwrap();
    let started = Instant::now();
    let got: Result<Option<i64>, _> = other
        .exec_first(
            "SELECT refund_reserved FROM orders WHERE out_trade_no = ? FOR UPDATE",
            (no.as_str(),),
        )
        .await;
    let waited = started.elapsed();
    let got = got.unwrap_or_else(|e| panic!("the order row is still held by the frozen call: {e}"));
    assert_eq!(got, Some(0), "the cut-off reservation was rolled back");
    assert!(
        waited < Duration::from_millis(300),
        "waited {waited:?} for the row"
    );
    other.query_drop("ROLLBACK").await.unwrap();
    let _ = other.disconnect().await;
    holder.query_drop("ROLLBACK").await.unwrap();
    let _ = holder.disconnect().await;

    // Another instance refunds the order while the first is still frozen.
    let (status, body): (u16, serde_json::Value) = {
        let resp = http
            .post(format!("{}/pay", env.router_url))
            .header("X-Internal-Secret", SECRET)
            .body(json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 990, "outRefundNo": "RF-OTHER-00001" }).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    };
    assert_eq!(status, 200, "{body}");

    // Thawed, the cut-off call changes nothing.
    server.thaw();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = db.conn().await;
    let numbers: Vec<(Vec<u8>, String)> = conn
        .exec(
            "SELECT out_refund_no, status FROM refunds WHERE out_trade_no = ?",
            (no.as_str(),),
        )
        .await
        .unwrap();
    let _ = conn.disconnect().await;
    let numbers: Vec<String> = numbers
        .into_iter()
        .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
        .collect();
    assert_eq!(numbers, ["RF-OTHER-00001"]);
    let order = env.store.get_order(&no).await.unwrap().expect("order");
    assert_eq!(
        order.refund_reserved, 990,
        "only the other instance's refund"
    );
    assert_eq!(env.sim.refunds().len(), 1, "WeChat Pay was asked once");
    assert!(env.sim.refund(CUT).is_none());
    // And the thawed instance serves, its pool whole again.
    let (status, body) = server
        .call(
            &[("X-Internal-Secret", SECRET)],
            json!({ "type": "wxpay_refund", "outTradeNo": no, "amount": 10, "outRefundNo": "RF-AFTER-00001" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        server
            .logs()
            .contains("it was ended (its transaction rolled back) before answering"),
        "{}",
        server.logs()
    );
}
