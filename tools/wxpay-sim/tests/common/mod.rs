//! A merchant written from the WeChat Pay documentation, independent of the simulator's
//! internals: ring for signing and verifying, aes-gcm for decrypting, x509-parser for keys.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ring::rand::SystemRandom;
use ring::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use serde_json::Value;
use tokio::sync::mpsc;
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{PlatformMode, SimConfig, Simulator};
use x509_parser::prelude::FromDer;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

pub fn keys() -> &'static MerchantKeys {
    MerchantKeys::shared_test()
}

pub async fn start(mode: PlatformMode) -> Simulator {
    let mut config = SimConfig::for_merchant(keys());
    config.mode = mode;
    Simulator::start(config).await.expect("simulator starts")
}

pub fn pem_der(pem_text: &str) -> Vec<u8> {
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    B64.decode(body.trim()).expect("PEM body is base64")
}

/// SHA256withRSA signature with the merchant key, base64.
pub fn sign_with(private_pem: &str, message: &[u8]) -> String {
    let key = RsaKeyPair::from_pkcs8(&pem_der(private_pem)).expect("PKCS#8 RSA key");
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
        .expect("sign");
    B64.encode(sig)
}

/// ring verifies PKCS#1 RSAPublicKey bytes: take them out of the SPKI.
pub fn verify_spki_pem(spki_pem: &str, message: &[u8], signature_b64: &str) -> bool {
    let der = pem_der(spki_pem);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).expect("SPKI DER");
    let Ok(sig) = B64.decode(signature_b64) else {
        return false;
    };
    UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        spki.subject_public_key.data.as_ref(),
    )
    .verify(message, &sig)
    .is_ok()
}

pub fn decrypt(key: &str, nonce: &str, aad: &str, ciphertext_b64: &str) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes()).expect("32-byte key");
    let data = B64.decode(ciphertext_b64).expect("base64 ciphertext");
    cipher
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .expect("AES-GCM decrypts")
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }

    /// Checks `Wechatpay-Signature` with `pem` over `timestamp\nnonce\nbody\n`.
    pub fn verifies_with(&self, pem: &str) -> bool {
        let (Some(ts), Some(nonce), Some(sig)) = (
            self.header("Wechatpay-Timestamp"),
            self.header("Wechatpay-Nonce"),
            self.header("Wechatpay-Signature"),
        ) else {
            return false;
        };
        let msg = format!("{ts}\n{nonce}\n{}\n", self.body);
        verify_spki_pem(pem, msg.as_bytes(), sig)
    }
}

/// How to build the Authorization header (defaults: everything right).
#[derive(Clone)]
pub struct Signing {
    pub mchid: String,
    pub serial: String,
    pub timestamp: i64,
    pub nonce: String,
    pub private_pem: String,
    /// Signs this body instead of the one sent (to break the signature).
    pub signed_body_override: Option<String>,
}

impl Signing {
    pub fn good(sim: &Simulator) -> Signing {
        Signing {
            mchid: sim.config().mchid.clone(),
            serial: keys().serial_no.clone(),
            timestamp: now(),
            nonce: "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".to_string(),
            private_pem: keys().private_key_pem.clone(),
            signed_body_override: None,
        }
    }
}

pub async fn call(sim: &Simulator, method: &str, path_and_query: &str, body: Option<&str>) -> Resp {
    call_signed(sim, method, path_and_query, body, Some(Signing::good(sim))).await
}

pub async fn call_signed(
    sim: &Simulator,
    method: &str,
    path_and_query: &str,
    body: Option<&str>,
    signing: Option<Signing>,
) -> Resp {
    let body_text = body.unwrap_or("");
    let client = reqwest::Client::new();
    let url = format!("{}{}", sim.base_url(), path_and_query);
    let mut req = match method {
        "GET" => client.get(&url),
        "POST" => client.post(&url),
        other => client.request(other.parse().expect("method"), &url),
    };
    req = req
        .header("Accept", "application/json")
        .header("User-Agent", "wxpay-sim-tests");
    if let Some(s) = signing {
        let signed_body = s.signed_body_override.as_deref().unwrap_or(body_text);
        let msg = format!(
            "{method}\n{path_and_query}\n{}\n{}\n{signed_body}\n",
            s.timestamp, s.nonce
        );
        let sig = sign_with(&s.private_pem, msg.as_bytes());
        req = req.header(
            "Authorization",
            format!(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{}\",signature=\"{sig}\",timestamp=\"{}\",serial_no=\"{}\"",
                s.mchid, s.nonce, s.timestamp, s.serial
            ),
        );
    }
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request reaches the simulator");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.text().await.expect("response body");
    Resp {
        status,
        headers,
        body,
    }
}

pub fn jsapi_body(sim: &Simulator, out_trade_no: &str, total: i64, notify_url: &str) -> String {
    serde_json::json!({
        "appid": sim.config().appid,
        "mchid": sim.config().mchid,
        "description": "测试商品",
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "amount": { "total": total, "currency": "CNY" },
        "payer": { "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
        "attach": "gen-1",
    })
    .to_string()
}

pub async fn prepay_jsapi(
    sim: &Simulator,
    out_trade_no: &str,
    total: i64,
    notify_url: &str,
) -> Resp {
    call(
        sim,
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(&jsapi_body(sim, out_trade_no, total, notify_url)),
    )
    .await
}

/// One notification as the merchant's endpoint received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A merchant notification endpoint that records what it gets and answers `status`.
pub struct Receiver {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Captured>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                let _ = tx.send(Captured {
                                    path,
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                let mut resp = http::Response::new(Full::new(Bytes::new()));
                                *resp.status_mut() =
                                    http::StatusCode::from_u16(status).expect("status");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/pay/notify"),
            rx,
        }
    }

    pub async fn next(&mut self) -> Captured {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a notification within 10 s")
            .expect("receiver alive")
    }
}

/// Verifies a received notification like a merchant must, then decrypts its resource.
pub fn open_notification(sim: &Simulator, n: &Captured) -> (Value, Value) {
    let serial = n.header("Wechatpay-Serial").expect("serial header");
    let pem = sim
        .verifying_key_pem(serial)
        .expect("serial known to the simulator");
    let msg = format!(
        "{}\n{}\n{}\n",
        n.header("Wechatpay-Timestamp").expect("timestamp"),
        n.header("Wechatpay-Nonce").expect("nonce"),
        n.body
    );
    assert!(
        verify_spki_pem(
            &pem,
            msg.as_bytes(),
            n.header("Wechatpay-Signature").expect("signature")
        ),
        "notification signature verifies"
    );
    let envelope: Value = serde_json::from_str(&n.body).expect("JSON notification");
    let r = &envelope["resource"];
    let plain = decrypt(
        &sim.config().apiv3_key,
        r["nonce"].as_str().expect("nonce"),
        r["associated_data"].as_str().expect("associated_data"),
        r["ciphertext"].as_str().expect("ciphertext"),
    );
    (
        envelope,
        serde_json::from_slice(&plain).expect("JSON resource"),
    )
}

/// How a scripted merchant answers one notification.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Hold the answer this long first.
    pub stall: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: String::new(),
            stall: Duration::ZERO,
        }
    }

    pub fn with_body(status: u16, body: &str) -> Answer {
        Answer {
            body: body.to_string(),
            ..Answer::status(status)
        }
    }
}

/// A merchant notification endpoint that answers the n-th notification with `script[n]`
/// (the last answer repeats) and records what arrived when.
pub struct Scripted {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<(std::time::Instant, Captured)>,
}

impl Scripted {
    pub async fn start(script: Vec<Answer>) -> Scripted {
        assert!(!script.is_empty());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let script = std::sync::Arc::new(script);
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, script, seen) = (tx.clone(), script.clone(), seen.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (tx, script, seen) = (tx.clone(), script.clone(), seen.clone());
                            async move {
                                let arrived = std::time::Instant::now();
                                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let answer = script[n.min(script.len() - 1)].clone();
                                let path = req.uri().path().to_string();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                let _ = tx.send((
                                    arrived,
                                    Captured {
                                        path,
                                        headers,
                                        body: String::from_utf8_lossy(&body).into_owned(),
                                    },
                                ));
                                tokio::time::sleep(answer.stall).await;
                                let mut resp =
                                    http::Response::new(Full::new(Bytes::from(answer.body)));
                                *resp.status_mut() =
                                    http::StatusCode::from_u16(answer.status).expect("status");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted {
            url: format!("http://{addr}/pay/notify"),
            rx,
        }
    }

    pub async fn next(&mut self) -> (std::time::Instant, Captured) {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a notification within 10 s")
            .expect("receiver alive")
    }

    /// Nothing more arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.rx.recv()).await.is_err()
    }
}

/// Polls `check` until it holds (10 s at most).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}
