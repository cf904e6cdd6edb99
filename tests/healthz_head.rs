//! `HEAD /healthz` answers as `GET /healthz` does, without a body: some load balancers and
//! uptime checks probe with HEAD, and a 405 there takes a healthy function out of service.

use serde_json::{json, Value};
use wxpay_local::{LocalEnv, LocalOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_healthz_is_a_health_check_over_local_http_and_lambda() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("the local environment starts");
    let client = reqwest::Client::new();
    let url = format!("{}/healthz", env.router_url);

    let get = client.get(&url).send().await.expect("GET answers");
    assert_eq!(get.status(), 200);
    let body: Value = serde_json::from_slice(&get.bytes().await.expect("a body")).expect("JSON");
    assert_eq!(body, json!({"status": "ok"}));

    let head = client.head(&url).send().await.expect("HEAD answers");
    assert_eq!(head.status(), 200, "HEAD /healthz is not refused");
    assert!(head.bytes().await.expect("no body").is_empty());

    // Still only the health check: HEAD anywhere else is refused as before.
    let other = client
        .head(format!("{}/pay", env.router_url))
        .send()
        .await
        .expect("HEAD /pay answers");
    assert_eq!(other.status(), 405);

    // Through API Gateway (payload 2.0) the same.
    let event = wxpay_local::lambda_api::http_v2_event("HEAD", "/healthz", json!({}), None);
    let answer = wxpay_shared::runtime::handle_lambda_event(&env.app, event).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(
        answer.get("body").is_none_or(|b| b.is_null() || b == ""),
        "no body: {answer}"
    );
}
