//! The built `wxpay_functions` binary under the real Lambda Runtime API protocol.
//!
//! A small Runtime API server runs in the test on 127.0.0.1 (`/2018-06-01/runtime/...`:
//! `invocation/next`, `invocation/{id}/response`, `invocation/{id}/error`, `init/error`),
//! the binary is started with `AWS_LAMBDA_RUNTIME_API` pointing at it — exactly as Lambda
//! starts `bootstrap` — and is fed events one at a time, as Lambda does. The WeChat Pay
//! simulator and the fake backend come from `wxpay-local`; the binary keeps its own SQLite
//! file, since it is a separate process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wxpay_local::{LocalEnv, LocalOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");
const PREFIX: &str = "/2018-06-01/runtime";
const FUNCTION_ARN: &str = "arn:aws:lambda:ap-east-1:123456789012:function:wxpay-RouterFunction";
const TRACE_ID: &str = "Root=1-65f01a2b-4f1e6a2d8b0c9e7f12345678;Parent=53995c3f42cd8ad8;Sampled=0";
const OPENID: &str = "oLambdaRuntimeTest0000000001";
/// Generous for a debug binary on a loaded CI machine, but bounded: a hung binary fails
/// the test instead of hanging it.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the binary posted back for one invocation (or for its initialisation).
#[derive(Debug)]
enum Posted {
    Response {
        id: String,
        body: Bytes,
    },
    Error {
        id: String,
        error_type: Option<String>,
        body: Bytes,
    },
    InitError {
        body: Bytes,
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
}

/// The in-test Lambda Runtime API.
struct RuntimeApi {
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
    let Some(route) = path.strip_prefix(PREFIX) else {
        return Ok(text(StatusCode::NOT_FOUND, "not a Runtime API path"));
    };
    if method == Method::GET && route == "/invocation/next" {
        state.next_calls.fetch_add(1, Ordering::SeqCst);
        // Like Lambda, block until there is an event (the test drives the pace).
        let Some(inv) = state.pending.lock().await.recv().await else {
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "no more events"));
        };
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis()
            + 30_000;
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &inv.id)
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
            .header("Lambda-Runtime-Trace-Id", TRACE_ID)
            .body(Full::new(inv.event))
            .expect("valid response");
        return Ok(resp);
    }
    if method == Method::POST && route == "/init/error" {
        let _ = state.posted.send(Posted::InitError { body });
        return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    if method == Method::POST {
        if let Some(rest) = route.strip_prefix("/invocation/") {
            if let Some(id) = rest.strip_suffix("/response") {
                let id = id.to_string();
                let _ = state.posted.send(Posted::Response { id, body });
                return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
            }
            if let Some(id) = rest.strip_suffix("/error") {
                let id = id.to_string();
                let _ = state.posted.send(Posted::Error {
                    id,
                    error_type,
                    body,
                });
                return Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
            }
        }
    }
    Ok(text(StatusCode::NOT_FOUND, "unknown Runtime API route"))
}

impl RuntimeApi {
    async fn start() -> RuntimeApi {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the Runtime API");
        let addr = listener.local_addr().expect("local address");
        let (queue, pending) = mpsc::unbounded_channel();
        let (posted_tx, posted) = mpsc::unbounded_channel();
        let state = Arc::new(ServerState {
            pending: tokio::sync::Mutex::new(pending),
            posted: posted_tx,
            next_calls: AtomicUsize::new(0),
        });
        let served = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
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
        RuntimeApi {
            addr,
            queue,
            posted: tokio::sync::Mutex::new(posted),
            state,
            invocations: AtomicUsize::new(0),
            server,
        }
    }

    /// Queues one event and waits (bounded) for what the binary posts back for it.
    async fn invoke_raw(&self, child: &mut FunctionProcess, event: Bytes) -> Posted {
        let n = self.invocations.fetch_add(1, Ordering::SeqCst);
        let id = format!("8f5f1a3c-0000-4000-8000-{n:012}");
        self.queue
            .send(Invocation {
                id: id.clone(),
                event,
            })
            .expect("the Runtime API server is running");
        let posted = tokio::time::timeout(INVOKE_TIMEOUT, async {
            self.posted.lock().await.recv().await
        })
        .await;
        let posted = match posted {
            Ok(Some(p)) => p,
            Ok(None) => child.fail("the Runtime API server stopped"),
            Err(_) => child.fail(&format!(
                "no answer to invocation {id} within {INVOKE_TIMEOUT:?}"
            )),
        };
        match &posted {
            Posted::Response { id: got, .. } | Posted::Error { id: got, .. } if *got != id => {
                child.fail(&format!("answer for {got}, expected one for {id}"))
            }
            Posted::InitError { body } => child.fail(&format!(
                "the binary reported an init error: {}",
                String::from_utf8_lossy(body)
            )),
            _ => posted,
        }
    }

    /// Invokes with a JSON event and returns the JSON the function answered.
    async fn invoke(&self, child: &mut FunctionProcess, event: Value) -> Value {
        match self.invoke_raw(child, Bytes::from(event.to_string())).await {
            Posted::Response { body, .. } => serde_json::from_slice(&body).unwrap_or_else(|e| {
                child.fail(&format!(
                    "the response is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                ))
            }),
            other => child.fail(&format!("expected a response to {event}, got {other:?}")),
        }
    }
}

/// The binary as a child process. Dropping it kills it (also when the test panics), and a
/// panicking test prints what the binary logged.
struct FunctionProcess {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl FunctionProcess {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fail(&mut self, msg: &str) -> ! {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => "still running".to_string(),
        };
        panic!("{msg}\nthe binary is {status}; its log:\n{}", self.logs());
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- wxpay_functions log ---\n{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory for the binary's SQLite file and log.
fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "wxpay-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Starts the binary the way Lambda does: only the Runtime API address and the
/// function's variables in its environment, nothing inherited from the test.
fn spawn_function(api: SocketAddr, vars: &[(String, String)]) -> FunctionProcess {
    let dir = scratch_dir("lambda-rt");
    let log = dir.join("function.log");
    let out = std::fs::File::create(&log).expect("create the log file");
    let err = out.try_clone().expect("clone the log file");
    let db = format!("sqlite://{}", dir.join("wxpay.db").display());
    let child = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().filter(|(k, _)| k != "DATABASE_URL").cloned())
        .env("DATABASE_URL", db)
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "wxpay-RouterFunction")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/03/12/[$LATEST]0123456789abcdef",
        )
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/wxpay/wxpay_functions",
        )
        .env("AWS_REGION", "ap-east-1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the wxpay_functions binary");
    FunctionProcess { child, dir, log }
}

/// An API Gateway HTTP API (payload 2.0) event.
fn http_v2(method: &str, path: &str, headers: Value, body: Option<String>) -> Value {
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

fn http_body(answer: &Value) -> Value {
    let body = answer["body"]
        .as_str()
        .unwrap_or_else(|| panic!("an HTTP answer with a body: {answer}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_events_over_the_lambda_runtime_api() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await;
    let mut function = spawn_function(api.addr, &env.vars);
    let json_headers = json!({ "content-type": "application/json", "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" });

    // 1. API Gateway v2: a NATIVE order.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers.clone(),
                Some(r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#.into()),
            ),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body = http_body(&answer);
    assert_eq!(body["code"], 0, "{answer}");
    let code_url = body["data"]["codeUrl"].as_str().unwrap_or_default();
    assert!(code_url.starts_with("weixin://"), "a codeUrl: {answer}");

    // 2. callFunction: the raw data object with userInfo; the answer is the bare envelope.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_order",
                "packageType": "basic",
                "tradeType": "JSAPI",
                "userInfo": { "appId": "wx8888888888888888", "openId": OPENID }
            }),
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert!(
        answer.get("statusCode").is_none(),
        "raw events get the envelope: {answer}"
    );
    assert_eq!(answer["data"]["signType"], "RSA", "{answer}");
    assert!(
        answer["data"]["paySign"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "a paySign: {answer}"
    );
    let out_trade_no = answer["data"]["outTradeNo"]
        .as_str()
        .expect("outTradeNo")
        .to_string();

    // 3. An unknown type over HTTP: 400 with the envelope's code.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers.clone(),
                Some(r#"{"type":"wxpay_teleport"}"#.into()),
            ),
        )
        .await;
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert_eq!(http_body(&answer)["code"], 40003, "{answer}");

    // 4. A payload that is not JSON: the runtime reports it on the error endpoint, and the
    //    binary keeps serving.
    match api
        .invoke_raw(&mut function, Bytes::from_static(b"{not json"))
        .await
    {
        Posted::Error {
            body, error_type, ..
        } => {
            assert!(
                error_type.is_some(),
                "the Lambda-Runtime-Function-Error-Type header"
            );
            let error: Value = serde_json::from_slice(&body).expect("the error report is JSON");
            assert!(error["errorType"].is_string(), "an errorType: {error}");
            assert!(
                error["errorMessage"].is_string(),
                "an errorMessage: {error}"
            );
        }
        other => function.fail(&format!("expected an error report, got {other:?}")),
    }

    // 5. WeChat Pay's notification for the order of step 2, byte for byte as signed.
    env.sim
        .mark_paid_silently(&out_trade_no)
        .await
        .expect("the simulator pays");
    let n = env
        .sim
        .build_transaction_notification(&out_trade_no)
        .expect("a notification for the paid order");
    let mut headers = serde_json::Map::new();
    for (k, v) in &n.headers {
        headers.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
    }
    let answer = api
        .invoke(
            &mut function,
            http_v2("POST", "/pay", Value::Object(headers), Some(n.body.clone())),
        )
        .await;
    assert_eq!(answer["statusCode"], 204, "{answer}");
    assert!(
        answer.get("body").is_none_or(|b| b.is_null() || b == ""),
        "a handled notification has no body: {answer}"
    );

    // ... and the binary recorded it: the payer's query sees a paid order.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_query_order_by_out_trade_no",
                "outTradeNo": out_trade_no,
                "userInfo": { "appId": "wx8888888888888888", "openId": OPENID }
            }),
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(answer["data"]["tradeState"], "SUCCESS", "{answer}");
    assert_eq!(answer["data"]["order"]["status"], "paid", "{answer}");

    // 6. The EventBridge schedule runs the retry.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "version": "0",
                "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2026-03-12T08:05:00Z",
                "region": "ap-east-1",
                "resources": ["arn:aws:events:ap-east-1:123456789012:rule/wxpay-retry"],
                "detail": {}
            }),
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert!(answer["data"]["attempted"].is_u64(), "{answer}");

    // 7. GET /healthz.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "GET",
                "/healthz",
                json!({ "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" }),
                None,
            ),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(http_body(&answer)["status"], "ok", "{answer}");

    // The binary keeps serving: after its last answer it long-polls for an eighth event.
    // (The answer reaches the test before the binary's next poll does, hence the wait.)
    let waited = Instant::now();
    while api.state.next_calls.load(Ordering::SeqCst) < 8 {
        if waited.elapsed() > INVOKE_TIMEOUT {
            let polls = api.state.next_calls.load(Ordering::SeqCst);
            function.fail(&format!(
                "the binary asked for events {polls} times, expected 8"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ok(Some(status)) = function.child.try_wait() {
        function.fail(&format!("the binary exited early: {status}"));
    }
}

/// The attacks of README "Who may call what", through the real runtime protocol on a
/// function deployed as `template.yaml` leaves it (no header trust): the victim's openid
/// in `X-WX-OPENID`, in a dressed-up `callFunction` event, in a forged `userInfo` in an
/// HTTP body, and with a wrong secret. None acts as the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_over_the_lambda_runtime_api_act_as_nobody() {
    const VICTIM: &str = OPENID;
    const ATTACKER: &str = "oLambdaRuntimeAttacker000001";
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await;
    let mut function = spawn_function(api.addr, &env.vars);
    let json_headers = |openid: Option<&str>| {
        let mut h = json!({ "content-type": "application/json", "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" });
        if let Some(o) = openid {
            h["x-wx-openid"] = json!(o);
        }
        h
    };

    // The victim's order, from the victim's own mini-program.
    let answer = api
        .invoke(
            &mut function,
            json!({ "type": "wxpay_order", "packageType": "basic",
                    "userInfo": { "appId": "wx8888888888888888", "openId": VICTIM } }),
        )
        .await;
    let no = answer["data"]["outTradeNo"]
        .as_str()
        .unwrap_or_else(|| panic!("the victim's order: {answer}"))
        .to_string();
    let close = json!({ "type": "wxpay_close_order", "outTradeNo": no });

    // 1. The header on an API Gateway event: 403, naming the setting.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers(Some(VICTIM)),
                Some(close.to_string()),
            ),
        )
        .await;
    assert_eq!(answer["statusCode"], 403, "{answer}");
    assert!(http_body(&answer)["msg"]
        .as_str()
        .unwrap_or_default()
        .contains("TRUST_OPENID_HEADER"));

    // 2. callFunction data dressed up as an HTTP event: the platform's userInfo makes it
    //    raw, so it is the attacker asking, and the victim's order does not exist for them.
    let mut dressed = http_v2(
        "POST",
        "/pay",
        json_headers(Some(VICTIM)),
        Some(close.to_string()),
    );
    dressed["type"] = json!("wxpay_close_order");
    dressed["outTradeNo"] = json!(no);
    dressed["userInfo"] = json!({ "appId": "wx8888888888888888", "openId": ATTACKER });
    let answer = api.invoke(&mut function, dressed).await;
    assert_eq!(answer["code"], 40400, "{answer}");

    // 3. A forged userInfo in an HTTP body is no identity.
    let mut forged = close.clone();
    forged["userInfo"] = json!({ "appId": "wx8888888888888888", "openId": VICTIM });
    let answer = api
        .invoke(
            &mut function,
            http_v2("POST", "/pay", json_headers(None), Some(forged.to_string())),
        )
        .await;
    assert_eq!(answer["statusCode"], 401, "{answer}");

    // 4. A wrong secret naming the victim, as a direct invocation.
    let mut claim = close.clone();
    claim["openid"] = json!(VICTIM);
    claim["internalSecret"] = json!("guessed-secret-000000000");
    let answer = api.invoke(&mut function, claim).await;
    assert_eq!(answer["code"], 40300, "{answer}");

    // The victim's order is still open: the victim can still close it.
    let answer = api
        .invoke(
            &mut function,
            json!({ "type": "wxpay_close_order", "outTradeNo": no,
                    "userInfo": { "appId": "wx8888888888888888", "openId": VICTIM } }),
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(
        env.sim.request_count("/v3/pay/transactions/out-trade-no"),
        1,
        "only the victim's own close reached WeChat Pay"
    );
}

#[test]
fn missing_configuration_exits_2_naming_every_bad_variable_and_no_secret() {
    const APIV3: &str = "short-s3cret-value";
    const INTERNAL: &str = "internal-s3cret-never-printed";
    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\\nbm90LWEta2V5LXMzY3JldA==\\n-----END PRIVATE KEY-----";
    let dir = scratch_dir("lambda-cfg");
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .env_clear()
        // As on Lambda: the runtime API is set, but start-up must stop before using it.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "wxpay-RouterFunction")
        .env("WECHAT_MCHID", "1900000109")
        .env(
            "WECHAT_SERIAL_NO",
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        )
        .env("WECHAT_PRIVATE_KEY", KEY)
        .env("WECHAT_APIV3_KEY", APIV3)
        .env("INTERNAL_API_SECRET", INTERNAL)
        .env("WECHAT_NOTIFY_URL", "https://pay.example.com/notify")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the wxpay_functions binary");
    // Bounded wait: configuration is read before anything else, so this is immediate.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the misconfigured binary did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("collect output");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(status.code(), Some(2), "exit code 2; stderr:\n{stderr}");
    for name in [
        "WECHAT_APPID",
        "DATABASE_URL",
        "WECHAT_APIV3_KEY",
        "WECHAT_PRIVATE_KEY",
    ] {
        assert!(stderr.contains(name), "stderr names {name}:\n{stderr}");
    }
    for secret in [APIV3, INTERNAL, "bm90LWEta2V5LXMzY3JldA"] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "a secret value was printed:\n{stderr}{stdout}"
        );
    }
}
