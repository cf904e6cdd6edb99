//! A Lambda Runtime API on 127.0.0.1, for running a function binary the way Lambda runs
//! `bootstrap`: the Lambda protocol test and the load tool's Lambda cold starts share it.
//!
//! It serves `/2018-06-01/runtime/...` — `invocation/next` (long-polled until an event is
//! queued, with the `Lambda-Runtime-*` headers), `invocation/{id}/response`,
//! `invocation/{id}/error` and `init/error` — and hands back what the binary posted, with
//! the instant it arrived.

mod bootstrap;
mod events;
mod secrets_extension;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

pub use bootstrap::{lambda_vars, Bootstrap};
pub use events::{http_v2_event, payment_notification_event};
pub use secrets_extension::SecretsExtension;

/// The `AWS_SESSION_TOKEN` a function started here gets, which the fake secrets extension
/// asks for as Lambda's does.
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFakeSessionTokenForTheLocalRuntimeApi";

const PREFIX: &str = "/2018-06-01/runtime";
const FUNCTION_ARN: &str = "arn:aws:lambda:ap-east-1:123456789012:function:wxpay-RouterFunction";
const TRACE_ID: &str = "Root=1-65f01a2b-4f1e6a2d8b0c9e7f12345678;Parent=53995c3f42cd8ad8;Sampled=0";

/// What the binary posted back for one invocation (or for its initialisation), and when
/// the whole request had arrived.
#[derive(Debug)]
pub enum Posted {
    Response {
        id: String,
        body: Bytes,
        at: Instant,
    },
    Error {
        id: String,
        error_type: Option<String>,
        body: Bytes,
        at: Instant,
    },
    InitError {
        body: Bytes,
        at: Instant,
    },
}

struct Invocation {
    id: String,
    event: Bytes,
    /// The function's timeout: the deadline is this long after the binary receives it.
    timeout: Duration,
}

/// Lambda's timeout when a test sets none (`template.yaml` uses 15–30 s).
const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

struct ServerState {
    /// Events waiting for the binary's next `GET invocation/next`.
    pending: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    posted: mpsc::UnboundedSender<Posted>,
    next_calls: AtomicUsize,
    /// When the binary first asked for an event: the end of Lambda's init phase.
    first_next_at: Mutex<Option<Instant>>,
}

/// The Runtime API server. Dropping it stops the server.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    posted: tokio::sync::Mutex<mpsc::UnboundedReceiver<Posted>>,
    state: Arc<ServerState>,
    invocations: AtomicUsize,
    function_timeout: Mutex<Duration>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn serve_runtime_api(
    state: Arc<ServerState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let error_type = req
        .headers()
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(text(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    let at = Instant::now();
    let Some(route) = path.strip_prefix(PREFIX) else {
        return Ok(text(StatusCode::NOT_FOUND, "not a Runtime API path"));
    };
    if method == Method::GET && route == "/invocation/next" {
        state.next_calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = state.first_next_at.lock() {
            first.get_or_insert(at);
        }
        // Like Lambda, block until there is an event (the caller drives the pace).
        let Some(inv) = state.pending.lock().await.recv().await else {
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "no more events"));
        };
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
            + inv.timeout.as_millis();
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &inv.id)
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
            .header("Lambda-Runtime-Trace-Id", TRACE_ID)
            .body(Full::new(inv.event))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad request id"));
        return Ok(resp);
    }
    if method == Method::POST && route == "/init/error" {
        let _ = state.posted.send(Posted::InitError { body, at });
        return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    if method == Method::POST {
        if let Some(rest) = route.strip_prefix("/invocation/") {
            if let Some(id) = rest.strip_suffix("/response") {
                let id = id.to_string();
                let _ = state.posted.send(Posted::Response { id, body, at });
                return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
            }
            if let Some(id) = rest.strip_suffix("/error") {
                let id = id.to_string();
                let _ = state.posted.send(Posted::Error {
                    id,
                    error_type,
                    body,
                    at,
                });
                return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
            }
        }
    }
    Ok(text(StatusCode::NOT_FOUND, "unknown Runtime API route"))
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (queue, pending) = mpsc::unbounded_channel();
        let (posted_tx, posted) = mpsc::unbounded_channel();
        let state = Arc::new(ServerState {
            pending: tokio::sync::Mutex::new(pending),
            posted: posted_tx,
            next_calls: AtomicUsize::new(0),
            first_next_at: Mutex::new(None),
        });
        let served = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        serve_runtime_api(state.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            addr,
            queue,
            posted: tokio::sync::Mutex::new(posted),
            state,
            invocations: AtomicUsize::new(0),
            function_timeout: Mutex::new(DEFAULT_FUNCTION_TIMEOUT),
            server,
        })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` must say.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The function timeout of the invocations queued from now on
    /// (`Lambda-Runtime-Deadline-Ms` is that long after the binary receives one).
    pub fn set_function_timeout(&self, timeout: Duration) {
        if let Ok(mut t) = self.function_timeout.lock() {
            *t = timeout;
        }
    }

    /// Queues one event for the binary's next poll; returns its request id.
    pub fn queue(&self, event: Bytes) -> String {
        let timeout = self
            .function_timeout
            .lock()
            .map_or(DEFAULT_FUNCTION_TIMEOUT, |t| *t);
        let n = self.invocations.fetch_add(1, Ordering::SeqCst);
        let id = format!("8f5f1a3c-0000-4000-8000-{n:012}");
        // The receiver lives in `state`, which `self` holds: sending cannot fail.
        let _ = self.queue.send(Invocation {
            id: id.clone(),
            event,
            timeout,
        });
        id
    }

    /// The next thing the binary posted, or `None` after `timeout`.
    pub async fn next_posted(&self, timeout: Duration) -> Option<Posted> {
        tokio::time::timeout(timeout, async { self.posted.lock().await.recv().await })
            .await
            .ok()
            .flatten()
    }

    /// How many times the binary has asked for an event.
    pub fn polls(&self) -> usize {
        self.state.next_calls.load(Ordering::SeqCst)
    }

    /// When the binary first asked for an event.
    pub fn first_poll_at(&self) -> Option<Instant> {
        self.state.first_next_at.lock().ok().and_then(|t| *t)
    }
}

impl RuntimeApi {
    /// For tests: queues one event and waits (bounded) for what `function` posts back for
    /// it; panics with the binary's log when there is no answer, an answer to another
    /// invocation, or an init error.
    pub async fn invoke_raw(
        &self,
        function: &mut Bootstrap,
        event: Bytes,
        timeout: Duration,
    ) -> Posted {
        let id = self.queue(event);
        let Some(posted) = self.next_posted(timeout).await else {
            function.fail(&format!("no answer to invocation {id} within {timeout:?}"))
        };
        match &posted {
            Posted::Response { id: got, .. } | Posted::Error { id: got, .. } if *got != id => {
                function.fail(&format!("answer for {got}, expected one for {id}"))
            }
            Posted::InitError { body, .. } => function.fail(&format!(
                "the binary reported an init error: {}",
                String::from_utf8_lossy(body)
            )),
            _ => posted,
        }
    }

    /// For tests: invokes with a JSON event and returns the JSON the function answered.
    pub async fn invoke(&self, function: &mut Bootstrap, event: Value, timeout: Duration) -> Value {
        match self
            .invoke_raw(function, Bytes::from(event.to_string()), timeout)
            .await
        {
            Posted::Response { body, .. } => serde_json::from_slice(&body).unwrap_or_else(|e| {
                function.fail(&format!(
                    "the response is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                ))
            }),
            other => function.fail(&format!("expected a response to {event}, got {other:?}")),
        }
    }
}
