//! A stand-in for the business backend of contract §8: serves the price list and records the
//! deliveries it receives, `payment` and `refund` events alike. Can be switched off to
//! exercise the outbox.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// One notification the backend received.
/// How the backend misbehaves on deliveries (prices keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFault {
    /// Holds the request this long, then answers 200 without recording it: a hung or slow
    /// backend whose caller has given up.
    Stall(std::time::Duration),
    /// Answers this status without recording the delivery.
    Status(u16),
    /// Holds the request this long, then records it and answers 200: a slow backend whose
    /// caller still waits.
    Slow(std::time::Duration),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub payload: Value,
    pub secret_ok: bool,
}

struct Inner {
    secret: Option<String>,
    up: AtomicBool,
    price_requests: AtomicUsize,
    prices: Mutex<Value>,
    deliveries: Mutex<Vec<Delivery>>,
    delivery_fault: Mutex<Option<DeliveryFault>>,
    verbose: bool,
}

#[derive(Clone)]
pub struct FakeBackend {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl FakeBackend {
    /// Starts on `addr` (port 0 for any). Notifications must carry `secret` as
    /// `X-Internal-Secret`; the default prices are `basic` 0.01 and `premium` 29.9 yuan.
    pub async fn start(
        addr: SocketAddr,
        secret: Option<String>,
        verbose: bool,
    ) -> std::io::Result<FakeBackend> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            secret,
            up: AtomicBool::new(true),
            price_requests: AtomicUsize::new(0),
            prices: Mutex::new(json!({ "basic": 0.01, "premium": 29.9 })),
            deliveries: Mutex::new(Vec::new()),
            delivery_fault: Mutex::new(None),
            verbose,
        });
        let served = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(inner.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeBackend { addr, inner })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While down, every request is answered 503.
    pub fn set_up(&self, up: bool) {
        self.inner.up.store(up, Ordering::SeqCst);
    }

    /// Packages in yuan, as the real backend sends them.
    /// Payment notifications stall or fail until this is set back to `None`.
    pub fn set_delivery_fault(&self, fault: Option<DeliveryFault>) {
        *self
            .inner
            .delivery_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    pub fn set_prices(&self, packages: Value) {
        *self.inner.prices.lock().unwrap_or_else(|e| e.into_inner()) = packages;
    }

    pub fn price_requests(&self) -> usize {
        self.inner.price_requests.load(Ordering::SeqCst)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The bodies of one kind of event (`payment`, `refund`) that arrived for one order,
    /// oldest first.
    pub fn events_for(&self, out_trade_no: &str, event: &str) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.payload["outTradeNo"] == out_trade_no && d.payload["event"] == event)
            .map(|d| d.payload)
            .collect()
    }

    /// How many notifications arrived for one order.
    pub fn deliveries_for(&self, out_trade_no: &str) -> usize {
        self.deliveries()
            .iter()
            .filter(|d| d.payload["outTradeNo"] == out_trade_no)
            .count()
    }
}

async fn answer(
    inner: Arc<Inner>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: u16, body: Value| {
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        resp.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    };
    if !inner.up.load(Ordering::SeqCst) {
        return reply(503, json!({ "success": false, "message": "backend down" }));
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/api/prices/current") => {
            inner.price_requests.fetch_add(1, Ordering::SeqCst);
            let packages = inner
                .prices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let updated = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            reply(
                200,
                json!({ "success": true, "data": { "packages": packages, "updatedAt": updated } }),
            )
        }
        ("POST", "/api/payment/internal/notify") => {
            let fault = *inner
                .delivery_fault
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match fault {
                Some(DeliveryFault::Stall(d)) => {
                    tokio::time::sleep(d).await;
                    return reply(200, json!({ "success": true }));
                }
                Some(DeliveryFault::Status(status)) => {
                    return reply(status, json!({ "success": false, "message": "injected" }));
                }
                Some(DeliveryFault::Slow(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            let presented = parts
                .headers
                .get("x-internal-secret")
                .and_then(|v| v.to_str().ok());
            let secret_ok = match (&inner.secret, presented) {
                (Some(expected), Some(p)) => expected == p,
                (None, _) => true,
                _ => false,
            };
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if inner.verbose {
                // A body from before `event` existed is a payment.
                let event = payload["event"].as_str().unwrap_or("payment");
                println!(
                    "[backend] {event} event{}: {payload}",
                    if secret_ok { "" } else { " (WRONG SECRET)" }
                );
            }
            inner
                .deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Delivery { payload, secret_ok });
            if secret_ok {
                reply(200, json!({ "success": true }))
            } else {
                reply(401, json!({ "success": false, "message": "bad secret" }))
            }
        }
        _ => reply(404, json!({ "success": false, "message": "not found" })),
    }
}
