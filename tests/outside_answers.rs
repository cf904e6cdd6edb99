//! What comes back from outside — WeChat Pay, its certificate list, the business backend —
//! is bounded and verified before it matters: a certificate list that does not verify is
//! "no certificates" (WeChat Pay retries the notification), and answers over 1 MiB are
//! refused instead of buffered.

mod common;

use std::time::Duration;

use common::{Harness, StoreKind};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxpay_shared::store::OrderStatus;
use wxpay_sim::{Fault, FaultKind};

both_stores!(a_certificate_list_that_does_not_verify_leaves_the_notification_to_a_retry);

async fn a_certificate_list_that_does_not_verify_leaves_the_notification_to_a_retry(
    kind: StoreKind,
) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let no = h.create_order("o_cert", "basic").await;
    // WeChat Pay rotates its certificate; the list naming the new one arrives with a
    // signature that does not verify.
    tokio::task::block_in_place(|| h.sim.add_platform_certificate()).expect("a new certificate");
    h.sim
        .inject_fault(Fault::new("/v3/certificates", 1, FaultKind::BadSignature));
    h.sim.mark_paid_silently(&no).await.unwrap();
    let n = h.sim.build_transaction_notification(&no).unwrap();
    let outcome = h.sim.deliver(&n, &h.pay_url()).await.unwrap();
    assert_eq!(outcome.status, 503, "{}", outcome.body);
    assert!(
        outcome.body.contains("certificates unavailable"),
        "{}",
        outcome.body
    );
    assert_eq!(h.order(&no).await.status, OrderStatus::Pending);
}

/// A "WeChat Pay" that answers every request with `size` bytes and no Content-Length.
async fn endless_wechat_pay(size: usize) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_pay_answer_over_1_mib_is_refused_unread() {
    let huge = endless_wechat_pay(8 << 20).await;
    let h = Harness::start_with(StoreKind::Sqlite, |o| {
        o.extra_vars.push(("WECHATPAY_BASE_URL".into(), huge));
    })
    .await
    .expect("harness");
    let order = json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "NATIVE" });
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), h.call(order))
        .await
        .expect("answered in time");
    assert_eq!(
        (status, body["code"].as_i64()),
        (502, Some(50200)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than 1048576 bytes"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_list_over_1_mib_is_not_used() {
    let h = Harness::start(StoreKind::Sqlite).await.expect("harness");
    // Premium at 1 yuan, in a list of 1.5 MiB: it must not price anything.
    let mut packages: Map<String, Value> = (0..70_000)
        .map(|i| (format!("filler-package-{i:06}"), json!(0.01)))
        .collect();
    packages.insert("premium".into(), json!(1.0));
    let packages = Value::Object(packages);
    assert!(packages.to_string().len() > 1 << 20);
    h.backend.set_prices(packages);

    let order = json!({ "type": "wxpay_order", "packageType": "premium", "tradeType": "NATIVE" });
    let (status, body) = h.call(order).await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap();
    assert_eq!(
        h.sim.order(no).unwrap().amount_total,
        2990,
        "DEFAULT_PRICES, not the oversized list"
    );
}
