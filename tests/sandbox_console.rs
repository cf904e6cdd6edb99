//! The sandbox in a real browser: headless Chromium, driven over WebDriver, uses the
//! simulator's console and cashier against the real router, as a developer would.
//!
//! Screenshots of each page land in target/sandbox-screenshots/.

mod browser;
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use browser::{decode_qr, Browser};
use bytes::Bytes;
use common::{Harness, StoreKind};
use fantoccini::Locator;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use wxpay_shared::store::OrderStatus;

/// A Native (QR code) order made through the router, as a web page would: its
/// `outTradeNo` and `codeUrl`.
async fn native_order(h: &Harness) -> (String, String) {
    let (status, body) = h
        .call(json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "NATIVE" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    (
        data["outTradeNo"].as_str().unwrap().to_string(),
        data["codeUrl"].as_str().unwrap().to_string(),
    )
}

fn card(no: &str) -> String {
    format!("div.order[data-out-trade-no=\"{no}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_order_shows_a_qr_code_of_its_code_url_and_pay_pays_it() {
    let Some(h) = Harness::start(StoreKind::Sqlite).await else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let (no, code_url) = native_order(&h).await;
    // A second order, so the page shows what newest-first means.
    h.create_order("o_console_demo", "premium").await;
    b.client
        .goto(&format!("{}/", h.sim.base_url()))
        .await
        .unwrap();
    let order = b.wait_for(&card(&no)).await;

    // The QR code, as a camera would read it off the screen.
    let qr = order
        .find(Locator::Css(".qr svg"))
        .await
        .expect("a QR code");
    let png = qr.screenshot().await.expect("a screenshot of the QR code");
    std::fs::write(browser::screenshot_dir().join("native-qr.png"), &png).unwrap();
    assert_eq!(decode_qr(&png).expect("the QR code decodes"), code_url);
    let shown = order.find(Locator::Css(".code-url")).await.unwrap();
    assert_eq!(shown.text().await.unwrap(), code_url);
    let badge = order.find(Locator::Css(".badge.state")).await.unwrap();
    assert_eq!(badge.text().await.unwrap(), "NOTPAY");
    assert!(order.text().await.unwrap().contains("¥0.01"));
    b.screenshot("console-before-pay").await;

    // Pay: the simulator notifies the router, which answers 204.
    order
        .find(Locator::Css("button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let sel = card(&no);
    let order = b.wait_for(&format!("{sel} tr.attempt")).await;
    let row = order.text().await.unwrap();
    assert!(row.starts_with("1 ") && row.contains("204"), "{row}");
    let badge = b
        .client
        .find(Locator::Css(&format!("{sel} .badge.state")))
        .await
        .unwrap();
    assert_eq!(badge.text().await.unwrap(), "SUCCESS");
    assert_eq!(
        h.order(&no).await.status,
        OrderStatus::Paid,
        "the router's store"
    );
    h.eventually("the backend is told", || h.backend.deliveries_for(&no) == 1)
        .await;
    let shot = b.screenshot("console").await;
    eprintln!("screenshot: {}", shot.display());

    // The tools: a login code for an openid, and today's bill with the payment in it.
    b.set_value("#openid", "o_browser_user").await;
    click(&b, "form[data-action=login] button[type=submit]").await;
    let code = text_when(&b, "#login-code", |t| t.len() == 32).await;
    let (status, login) = h.call(json!({ "type": "wxpay_login", "code": code })).await;
    assert_eq!(status, 200, "the code logs in: {login}");
    click(&b, "form[data-action=bill] button[value=view]").await;
    let bill = text_when(&b, "#bill-file", |t| t.contains(&no)).await;
    assert!(bill.starts_with("交易时间,"), "{bill}");
    b.client
        .execute(
            "document.getElementById('bill-file').scrollIntoView({block: 'center'});",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("console-tools").await;
}

async fn click(b: &Browser, css: &str) {
    b.wait_for(css).await.click().await.unwrap();
}

/// The text of `css` once `check` holds (up to 15 s).
async fn text_when(b: &Browser, css: &str, check: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        if let Ok(e) = b.client.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if check(&last) {
                return last;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed what was expected; last: {last}");
}

/// `wx.requestPayment`'s parameters for a JSAPI order made through the router.
async fn jsapi_params(h: &Harness) -> Value {
    let (status, body) = h
        .call_as(
            "o_cashier_user",
            json!({ "type": "wxpay_order", "packageType": "premium" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    json!({
        "appId": d["appId"], "timeStamp": d["timeStamp"], "nonceStr": d["nonceStr"],
        "package": d["package"], "signType": d["signType"], "paySign": d["paySign"],
        "outTradeNo": d["outTradeNo"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cashier_refuses_a_changed_pay_sign_then_pays_with_the_right_one() {
    let Some(h) = Harness::start(StoreKind::Sqlite).await else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let params = jsapi_params(&h).await;
    let no = params["outTradeNo"].as_str().unwrap().to_string();
    let sign = params["paySign"].as_str().unwrap();
    // One character of the signature changed, as a tampering client would.
    let flipped = if sign.starts_with('A') { "B" } else { "A" };
    let mut changed = params.clone();
    changed["paySign"] = json!(format!("{flipped}{}", &sign[1..]));

    let cashier = format!("{}/cashier", h.sim.base_url());
    b.client.goto(&cashier).await.unwrap();
    b.wait_for("textarea#params").await;
    b.set_value(
        "textarea#params",
        &serde_json::to_string_pretty(&changed).unwrap(),
    )
    .await;
    b.client
        .find(Locator::Css("form[action='/cashier'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let verdict = b.wait_for("#verdict[data-verified=false]").await;
    let text = verdict.text().await.unwrap();
    assert!(
        text.contains("does not verify under the merchant's API key"),
        "{text}"
    );
    assert!(
        b.client.find(Locator::Css("#pay")).await.is_err(),
        "no way to pay"
    );
    b.screenshot("cashier-refused").await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Pending);

    b.set_value(
        "textarea#params",
        &serde_json::to_string_pretty(&params).unwrap(),
    )
    .await;
    b.client
        .find(Locator::Css("form[action='/cashier'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#verdict[data-verified=true]").await;
    let amount = b.client.find(Locator::Css("#amount")).await.unwrap();
    assert_eq!(amount.text().await.unwrap(), "¥29.90");
    let description = b.client.find(Locator::Css("#description")).await.unwrap();
    assert!(!description.text().await.unwrap().is_empty());
    b.screenshot("cashier-verified").await;

    b.client
        .find(Locator::Css("#pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let answer = b.wait_for("#notify-answer").await;
    assert_eq!(answer.text().await.unwrap(), "the merchant answered 204");
    b.screenshot("cashier-paid").await;
    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
    h.eventually("the backend is told once", || {
        h.backend.deliveries_for(&no) == 1
    })
    .await;
}

/// A merchant endpoint in front of the router that answers 500 to the first two
/// notifications and hands the rest to the router.
async fn flaky_merchant(router: Arc<OnceLock<String>>) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/pay", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (router, seen) = (router.clone(), seen.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (router, seen) = (router.clone(), seen.clone());
                        async move {
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let (status, answer) = if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                                (
                                    500,
                                    Bytes::from_static(
                                        br#"{"code":"FAIL","message":"database is down"}"#,
                                    ),
                                )
                            } else {
                                let mut forward =
                                    reqwest::Client::new().post(router.get().unwrap().as_str());
                                for (k, v) in &headers {
                                    if k.as_str().starts_with("wechatpay-") || k == "content-type" {
                                        forward = forward.header(k.as_str(), v.as_bytes());
                                    }
                                }
                                let r = forward.body(body).send().await.unwrap();
                                (r.status().as_u16(), r.bytes().await.unwrap_or_default())
                            };
                            let mut resp = http::Response::new(Full::new(answer));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_answering_500_twice_then_204_shows_three_attempts_and_one_delivery() {
    let router = Arc::new(OnceLock::new());
    let notify_url = flaky_merchant(router.clone()).await;
    let Some(h) = Harness::start_with(StoreKind::Sqlite, |o| {
        o.extra_vars
            .push(("WECHAT_NOTIFY_URL".into(), notify_url.clone()));
    })
    .await
    else {
        return;
    };
    router.set(h.pay_url()).unwrap();
    let Some(b) = Browser::start().await else {
        return;
    };
    // WeChat Pay's 15 s, 15 s as 150 ms, 150 ms (the control API's SIM_RETRY_SCALE).
    let r = reqwest::Client::new()
        .post(format!(
            "{}/sim/notifications/retry-scale?scale=0.01",
            h.sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Another order waiting to be paid, as a console usually has.
    h.create_order("o_console_demo", "premium").await;
    let (no, _) = native_order(&h).await;
    b.client
        .goto(&format!("{}/", h.sim.base_url()))
        .await
        .unwrap();
    let sel = card(&no);
    b.wait_for(&sel)
        .await
        .find(Locator::Css("button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The page refreshes itself: three attempts appear, 500, 500, 204.
    let mut statuses = Vec::new();
    for _ in 0..150 {
        statuses.clear();
        for cell in b
            .client
            .find_all(Locator::Css(&format!("{sel} tr.attempt td.status")))
            .await
            .unwrap()
        {
            statuses.push(cell.text().await.unwrap());
        }
        if statuses.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(statuses, ["500", "500", "204"]);
    let answers = b
        .client
        .find(Locator::Css(&format!("{sel} tr.attempt td.answer")))
        .await
        .unwrap();
    assert!(answers.text().await.unwrap().contains("database is down"));
    let chain = b
        .client
        .find(Locator::Css(&format!("{sel} .chain-head")))
        .await
        .unwrap();
    assert!(chain.text().await.unwrap().contains("acknowledged"));
    b.screenshot("console-retries").await;

    assert_eq!(h.order(&no).await.status, OrderStatus::Paid);
    h.eventually("the backend is told", || h.backend.deliveries_for(&no) >= 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(h.backend.deliveries_for(&no), 1, "one delivery");
}
