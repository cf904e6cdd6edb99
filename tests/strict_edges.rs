//! The edges parse strictly: a body that breaks HTTP framing is a 400 with an envelope
//! (not "too large"), and a trusted caller's `clientIp` must be an IP address before it
//! is handed to WeChat Pay.

mod common;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `raw` bytes as one HTTP/1.1 request; returns the status and the body.
async fn raw_request(h: &Harness, raw: &[u8]) -> (u16, String) {
    let addr = h.router_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn chunked(extra_headers: &str) -> Vec<u8> {
    // "zz" is not a hexadecimal chunk size.
    format!(
        "POST /pay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{\"type\":\"wxpay_order\"}}\r\n0\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_a_400_envelope_not_too_large() {
    let Some(h) = Harness::start(StoreKind::Sqlite).await else {
        return;
    };
    let (status, body) = raw_request(&h, &chunked("")).await;
    assert_eq!(status, 400, "{body}");
    let envelope: Value = serde_json::from_str(&body).expect("an envelope");
    assert_eq!(envelope["code"], 40001, "{envelope}");
    assert!(envelope["msg"].as_str().unwrap().contains("malformed"));

    // A notification gets WeChat Pay's FAIL body instead.
    let (status, body) = raw_request(
        &h,
        &chunked("Wechatpay-Signature: c2ln\r\nWechatpay-Serial: X\r\n"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let fail: Value = serde_json::from_str(&body).expect("a FAIL body");
    assert_eq!(fail["code"], "FAIL", "{fail}");

    // A Content-Length that is not one number is refused by the HTTP parser itself, before
    // our code runs: a 400 (hyper writes it, without an envelope), never a 413.
    for length in ["abc", "5, 6", "-1"] {
        let raw = format!("POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{{}}");
        let (status, _) = raw_request(&h, raw.as_bytes()).await;
        assert_eq!(status, 400, "Content-Length: {length}");
    }

    // A body that really is too large is still 413.
    let big = format!("{{\"type\":\"{}\"}}", "a".repeat(70 * 1024));
    let (status, text) = h.post_raw("/pay", &[], big).await;
    assert_eq!(status, 413, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_client_ip_must_be_an_ip_address() {
    let Some(h) = Harness::start(StoreKind::Sqlite).await else {
        return;
    };
    let h5 = |ip: &str| json!({ "type": "wxpay_order", "packageType": "basic", "tradeType": "H5", "clientIp": ip });
    for bad in [
        "' OR '1'='1",
        "😀",
        "1.2.3.4.5",
        "1.2.3.4 5",
        "1.2.3.4\u{0}",
        "localhost",
        "::g",
    ] {
        let (status, body) = h.call_trusted(h5(bad)).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(40002)),
            "{bad:?}: {body}"
        );
        assert!(body["msg"].as_str().unwrap().contains("clientIp"), "{body}");
    }
    assert_eq!(
        h.sim.orders().len(),
        0,
        "nothing reached WeChat Pay as payer_client_ip"
    );
    for good in ["203.0.113.7", "2001:db8::1", " 198.51.100.2 "] {
        let (status, body) = h.call_trusted(h5(good)).await;
        assert_eq!(status, 200, "{good}: {body}");
    }
}
