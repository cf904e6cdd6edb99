//! A Lambda Runtime API on 127.0.0.1, for running a function binary the way Lambda runs
//! `bootstrap`: the Lambda protocol test and the load tool's Lambda cold starts share it.
//!
//! It serves `/2018-06-01/runtime/...` — `invocation/next` (long-polled until an event is
//! queued, with the `Lambda-Runtime-*` headers), `invocation/{id}/response`,
//! `invocation/{id}/error` and `init/error` — and hands back what the binary posted, with
//! the instant it arrived.

use std::convert::Infallible;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const PREFIX: &str = "/2018-06-01/runtime";
pub const FUNCTION_ARN: &str =
    "arn:aws:lambda:ap-east-1:123456789012:function:wxpay-RouterFunction";
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
}

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
            + 30_000;
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
            server,
        })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` must say.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues one event for the binary's next poll; returns its request id.
    pub fn queue(&self, event: Bytes) -> String {
        let n = self.invocations.fetch_add(1, Ordering::SeqCst);
        let id = format!("8f5f1a3c-0000-4000-8000-{n:012}");
        // The receiver lives in `state`, which `self` holds: sending cannot fail.
        let _ = self.queue.send(Invocation {
            id: id.clone(),
            event,
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

/// A function binary started as Lambda starts `bootstrap`. Dropping it kills it.
pub struct Bootstrap {
    child: Child,
    log: PathBuf,
    /// Removed on drop: the directory [`Bootstrap::with_sqlite`] made.
    scratch: Option<PathBuf>,
    /// Taken just before the exec: where Lambda's init phase begins.
    pub spawned_at: Instant,
}

impl Bootstrap {
    /// Starts `bin` with only `vars` and the variables Lambda sets (nothing inherited from
    /// this process), pointed at `api`; stdout and stderr go to `log`.
    pub fn spawn(
        bin: &Path,
        api: &RuntimeApi,
        function_name: &str,
        vars: &[(String, String)],
        log: &Path,
    ) -> std::io::Result<Bootstrap> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(vars.iter().cloned())
            .envs(lambda_vars(api.addr(), function_name))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let spawned_at = Instant::now();
        let child = cmd.spawn()?;
        Ok(Bootstrap {
            child,
            log: log.to_path_buf(),
            scratch: None,
            spawned_at,
        })
    }

    /// For tests: [`Bootstrap::spawn`] with its own SQLite file (`DATABASE_URL` in `vars`
    /// is replaced) and log in a fresh directory, removed when it is dropped.
    pub fn with_sqlite(
        bin: &Path,
        api: &RuntimeApi,
        function_name: &str,
        vars: &[(String, String)],
    ) -> Bootstrap {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "wxpay-{function_name}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let mut vars: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, _)| k != "DATABASE_URL")
            .cloned()
            .collect();
        let db = format!("sqlite://{}", dir.join("wxpay.db").display());
        vars.push(("DATABASE_URL".into(), db));
        let log = dir.join("function.log");
        let mut function = Bootstrap::spawn(bin, api, function_name, &vars, &log)
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        function.scratch = Some(dir);
        function
    }

    /// Everything the binary logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the binary has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// For tests: panics with `msg`, whether the binary still runs, and its log.
    pub fn fail(&mut self, msg: &str) -> ! {
        let status = match self.exited() {
            Some(status) => format!("exited: {status}"),
            None => "still running".to_string(),
        };
        panic!("{msg}\nthe binary is {status}; its log:\n{}", self.logs());
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        // SIGKILL, as Lambda reclaims an instance; wait so no zombie outlives the caller.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            if std::thread::panicking() {
                eprintln!("--- the function's log ---\n{}", self.logs());
            }
            let _ = std::fs::remove_dir_all(dir);
        }
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

/// The variables Lambda sets for `bootstrap` besides the function's own.
pub fn lambda_vars(api: SocketAddr, function_name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/03/12/[$LATEST]0123456789abcdef".into(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/wxpay/{function_name}"),
        ),
        ("AWS_REGION", "ap-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// An API Gateway HTTP API (payload 2.0) event, as `template.yaml` deploys the functions.
pub fn http_v2_event(method: &str, path: &str, headers: Value, body: Option<String>) -> Value {
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.24",
                "userAgent": "lambda-runtime-test"
            },
            "requestId": "Yx1AbcDEFgHIjkl=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "12/Mar/2026:08:00:00 +0000",
            "timeEpoch": 1773302400000u64
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["body"] = Value::String(body);
    }
    event
}

/// Has the simulator mark the order paid without telling anyone, and returns its signed
/// `TRANSACTION.SUCCESS` notification, byte for byte, as an API Gateway (payload 2.0) event.
/// Signed now: the functions refuse timestamps more than 300 s old.
pub async fn payment_notification_event(
    sim: &wxpay_sim::Simulator,
    out_trade_no: &str,
) -> Result<Value, String> {
    sim.mark_paid_silently(out_trade_no)
        .await
        .map_err(|e| format!("the simulator could not pay {out_trade_no}: {e}"))?;
    let n = sim
        .build_transaction_notification(out_trade_no)
        .ok_or_else(|| format!("the simulator has no paid order {out_trade_no}"))?;
    let headers: serde_json::Map<String, Value> = n
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    Ok(http_v2_event(
        "POST",
        "/pay",
        Value::Object(headers),
        Some(n.body),
    ))
}
