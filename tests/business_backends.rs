//! `businessType` chooses the backend: the backend that will be told an order was paid is
//! the one whose price list priced it, and a caller cannot invent a business to get
//! another business's backend told "paid" at the global price.

mod common;

use common::{Harness, StoreKind};
use serde_json::json;
use wxpay_local::FakeBackend;

both_stores!(
    an_order_is_priced_by_the_backend_that_is_told_it_was_paid,
    an_untrusted_caller_cannot_name_a_business_without_a_backend,
);

async fn video_backend() -> FakeBackend {
    let video = common::business_backend().await;
    // The video business sells `premium` for 9.90 yuan; the global list says 29.90.
    video.set_prices(json!({ "basic": 0.01, "premium": 9.9 }));
    video
}

async fn an_order_is_priced_by_the_backend_that_is_told_it_was_paid(kind: StoreKind) {
    let video = video_backend().await;
    let Some(h) = Harness::start_with(kind, |o| {
        o.extra_vars
            .push(("API_BASE_URL_VIDEO".into(), video.url()))
    })
    .await
    else {
        return;
    };
    let order = json!({ "type": "wxpay_order", "packageType": "premium", "tradeType": "NATIVE", "businessType": "video" });
    let (status, body) = h.call(order).await;
    assert_eq!(status, 200, "{body}");
    let no = body["data"]["outTradeNo"].as_str().unwrap().to_string();
    assert_eq!(h.sim.order(&no).unwrap().amount_total, 990, "video's price");
    assert!(video.price_requests() >= 1);

    h.sim.pay(&no).await.expect("the simulator pays");
    assert_eq!(video.deliveries_for(&no), 1, "video's backend is told");
    assert_eq!(h.backend.deliveries_for(&no), 0);

    // Without businessType the global list prices it.
    let (_, body) = h
        .call(json!({ "type": "wxpay_order", "packageType": "premium", "tradeType": "NATIVE" }))
        .await;
    let global = body["data"]["outTradeNo"].as_str().unwrap();
    assert_eq!(h.sim.order(global).unwrap().amount_total, 2990);
}

async fn an_untrusted_caller_cannot_name_a_business_without_a_backend(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let order = json!({ "type": "wxpay_order", "packageType": "premium", "tradeType": "NATIVE", "businessType": "video" });
    let (status, body) = h.call(order.clone()).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(40002)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("API_BASE_URL_VIDEO"),
        "{body}"
    );
    assert_eq!(h.store.count_orders().await.unwrap(), 0, "no order written");
    assert_eq!(h.sim.request_count("/v3/pay"), 0);

    // A trusted backend relaying an order may name its own business; it is priced and
    // told through API_BASE_URL.
    let (status, body) = h.call_trusted(order).await;
    assert_eq!(status, 200, "{body}");
}
