//! The runtime adapter: serves one [`App`] in every invocation shape of SPEC §3 —
//! Lambda HTTP events (API Gateway v2, REST/v1 and the CloudBase/SCF trigger, ALB), raw
//! `callFunction` events, and local HTTP on `HOST:PORT` — and renders the envelope of §5.
//! Domain code never learns which shape a call came in.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::AppError;
use crate::handlers::{
    handle_call, handle_notification, notifications_not_served, Call, Caller, Routes,
};
use crate::notify::NotifyAnswer;
use crate::state::App;
use crate::util::secret_eq;

/// Largest request body accepted; WeChat Pay notifications and calls are a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An HTTP request, whichever way it arrived.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// `None` for an empty body.
    pub body: Option<String>,
}

impl HttpResponse {
    fn json(status: u16, value: &Value) -> Self {
        HttpResponse {
            status,
            body: Some(value.to_string()),
        }
    }
}

/// `{"code":0,"msg":"ok","data":…}` or `{"code":N,"msg":…}`, with its HTTP status.
pub fn envelope(result: Result<Value, AppError>) -> (u16, Value) {
    match result {
        Ok(data) => (200, json!({ "code": 0, "msg": "ok", "data": data })),
        Err(e) => {
            let (status, code) = e.status_and_code();
            if status >= 500 {
                tracing::error!(code, "request failed: {e}");
            } else {
                tracing::info!(code, "request refused: {e}");
            }
            (status, json!({ "code": code, "msg": e.public_message() }))
        }
    }
}

fn notify_response(answer: NotifyAnswer) -> HttpResponse {
    match answer.message {
        None => HttpResponse {
            status: answer.status,
            body: None,
        },
        Some(message) => HttpResponse::json(
            answer.status,
            &json!({ "code": "FAIL", "message": message }),
        ),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Decides whether a presented secret makes the caller trusted. A wrong secret is refused
/// outright rather than silently downgraded, so misconfigured backends notice.
fn trust(app: &App, presented: Option<&str>) -> Result<bool, AppError> {
    let Some(presented) = presented else {
        return Ok(false);
    };
    match &app.config.internal_secret {
        Some(expected) if secret_eq(presented, expected.expose()) => Ok(true),
        Some(_) => Err(AppError::Forbidden("the internal secret is wrong".into())),
        None => Err(AppError::Forbidden(
            "this deployment has no INTERNAL_API_SECRET, so no caller is trusted".into(),
        )),
    }
}

fn valid_openid(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Builds the call from a JSON object once the platform identity and trust are known.
/// `userInfo` and `internalSecret` never reach the handlers.
fn build_call(
    mut data: Map<String, Value>,
    platform_openid: Option<String>,
    trusted: bool,
    client_ip: Option<String>,
) -> Result<Call, AppError> {
    data.remove("userInfo");
    data.remove("internalSecret");
    let ty = match data.remove("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.trim().to_string(),
        Some(_) => {
            return Err(AppError::UnknownType(
                "field `type` must be a string naming the operation, e.g. \"wxpay_order\"".into(),
            ))
        }
        None => return Err(AppError::UnknownType(
            "field `type` is missing; e.g. {\"type\":\"wxpay_order\",\"packageType\":\"basic\"}"
                .into(),
        )),
    };
    if let Some(o) = &platform_openid {
        if !valid_openid(o) {
            return Err(AppError::invalid("the caller's openid is malformed"));
        }
    }
    let mut openid = platform_openid;
    match data.remove("openid") {
        None | Some(Value::Null) => {}
        Some(Value::String(o)) if trusted => {
            if !valid_openid(&o) {
                return Err(AppError::invalid("field `openid` is malformed"));
            }
            openid = Some(o);
        }
        Some(Value::String(o)) if openid.as_deref() == Some(o.as_str()) => {}
        Some(_) => {
            return Err(AppError::Forbidden(
                "field `openid` can only be set by trusted callers; mini-program users are identified by the platform".into(),
            ))
        }
    }
    Ok(Call {
        ty,
        data,
        caller: Caller {
            openid,
            trusted,
            client_ip,
            scheduled: false,
        },
    })
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::InvalidJson(
            "request body is empty; send a JSON object with a `type` field".into(),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AppError::InvalidJson(
            "request body must be a JSON object with a `type` field".into(),
        )),
        Err(e) => Err(AppError::InvalidJson(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// The HTTP shapes: local HTTP, Lambda HTTP events and the SCF web function.
pub async fn handle_http(app: &App, req: HttpRequest) -> HttpResponse {
    if req.method == Method::GET && req.path.trim_end_matches('/').ends_with("/healthz") {
        return HttpResponse::json(200, &json!({ "status": "ok" }));
    }
    // A notification is recognised by its signature header; the body must then carry a
    // `resource`, which the notification handler checks.
    if req.headers.contains_key("wechatpay-signature") {
        if !app.serves_notifications() {
            return notify_response(notifications_not_served());
        }
        if req.body.len() > BODY_LIMIT {
            return notify_response(NotifyAnswer::fail(413, "notification body too large"));
        }
        return notify_response(handle_notification(app, &req.headers, &req.body).await);
    }
    let result = async {
        if req.method != Method::POST {
            return Err(AppError::MethodNotAllowed(format!(
                "{} {} is not served; send POST /pay with a JSON body, or GET /healthz",
                req.method, req.path
            )));
        }
        if req.body.len() > BODY_LIMIT {
            return Err(AppError::BodyTooLarge { limit: BODY_LIMIT });
        }
        let trusted = trust(app, header(&req.headers, "x-internal-secret"))?;
        let data = parse_object(&req.body)?;
        let openid = header(&req.headers, "x-wx-openid").map(str::to_string);
        let client_ip = req.source_ip.clone().or_else(|| {
            header(&req.headers, "x-forwarded-for")
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
        });
        let call = build_call(data, openid, trusted, client_ip)?;
        handle_call(app, call).await
    }
    .await;
    let (status, body) = envelope(result);
    HttpResponse::json(status, &body)
}

/// A raw `callFunction` event: the `data` object itself. Returns the envelope.
pub async fn handle_raw_event(app: &App, event: Value) -> Value {
    let result = async {
        let Value::Object(data) = event else {
            return Err(AppError::InvalidJson(
                "the event must be a JSON object with a `type` field".into(),
            ));
        };
        if is_schedule(&data) {
            let call = Call {
                ty: crate::handlers::NOTIFY_RETRY.to_string(),
                data: Map::new(),
                caller: Caller {
                    scheduled: true,
                    ..Caller::default()
                },
            };
            return handle_call(app, call).await;
        }
        let presented = data.get("internalSecret").and_then(Value::as_str);
        let trusted = trust(app, presented)?;
        let openid = data
            .get("userInfo")
            .and_then(|u| u.get("openId"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let call = build_call(data, openid, trusted, None)?;
        handle_call(app, call).await
    }
    .await;
    envelope(result).1
}

/// A timer invocation: an EventBridge schedule or a Tencent SCF timer trigger. It can only
/// ever start the (harmless, idempotent) delivery of what is due.
fn is_schedule(event: &Map<String, Value>) -> bool {
    let aws = event.get("source").and_then(Value::as_str) == Some("aws.events")
        && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    let scf = event.get("Type").and_then(Value::as_str) == Some("Timer");
    aws || scf
}

/// Which HTTP event shape a Lambda event is, if any.
enum LambdaShape {
    V2,
    V1,
    Alb,
    Raw,
}

fn lambda_shape(event: &Value) -> LambdaShape {
    let ctx = event.get("requestContext");
    if ctx.and_then(|c| c.get("elb")).is_some() {
        LambdaShape::Alb
    } else if event.get("version").and_then(Value::as_str) == Some("2.0")
        || ctx.and_then(|c| c.get("http")).is_some()
    {
        LambdaShape::V2
    } else if event.get("httpMethod").is_some() && (ctx.is_some() || event.get("path").is_some()) {
        LambdaShape::V1
    } else {
        LambdaShape::Raw
    }
}

fn event_body(body: Option<String>, is_base64: bool) -> Result<Bytes, AppError> {
    let body = body.unwrap_or_default();
    if is_base64 {
        B64.decode(body.trim())
            .map(Bytes::from)
            .map_err(|_| AppError::InvalidJson("isBase64Encoded body is not base64".into()))
    } else {
        Ok(Bytes::from(body))
    }
}

/// Answers an HTTP request decoded from an event (or the reason it could not be decoded).
async fn answer_event(app: &App, request: Result<HttpRequest, AppError>) -> HttpResponse {
    match request {
        Ok(req) => handle_http(app, req).await,
        Err(e) => {
            let (status, body) = envelope(Err(e));
            HttpResponse::json(status, &body)
        }
    }
}

/// REST v1 and ALB events carry headers twice; single values win over the lists.
fn merge_headers(multi: HeaderMap, single: &HeaderMap) -> HeaderMap {
    let mut headers = multi;
    for (k, v) in single {
        headers.insert(k.clone(), v.clone());
    }
    headers
}

/// What every HTTP event response carries: status, headers, optional body.
fn response_parts(resp: HttpResponse) -> (i64, HeaderMap, Option<lambda_http::Body>) {
    let mut headers = HeaderMap::new();
    if resp.body.is_some() {
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    (
        i64::from(resp.status),
        headers,
        resp.body.map(lambda_http::Body::Text),
    )
}

fn to_event_value(value: Result<Value, serde_json::Error>) -> Value {
    value.unwrap_or_else(|_| json!({ "statusCode": 500 }))
}

/// A Lambda invocation of any shape. HTTP events get an HTTP-shaped answer of the same
/// kind; raw events get the envelope.
pub async fn handle_lambda_event(app: &App, event: Value) -> Value {
    use lambda_http::aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
    use lambda_http::aws_lambda_events::apigw::{
        ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
        ApiGatewayV2httpResponse,
    };

    fn parse<T: serde::de::DeserializeOwned>(event: Value) -> Result<T, Value> {
        serde_json::from_value(event).map_err(|e| {
            envelope(Err(AppError::InvalidJson(format!(
                "malformed HTTP event: {e}"
            ))))
            .1
        })
    }

    match lambda_shape(&event) {
        LambdaShape::Raw => handle_raw_event(app, event).await,
        LambdaShape::V2 => {
            let ev: ApiGatewayV2httpRequest = match parse(event) {
                Ok(ev) => ev,
                Err(answer) => return answer,
            };
            let request = event_body(ev.body, ev.is_base64_encoded).map(|body| HttpRequest {
                method: ev.request_context.http.method.clone(),
                path: ev.raw_path.clone().unwrap_or_else(|| "/".into()),
                headers: ev.headers,
                body,
                source_ip: ev.request_context.http.source_ip.clone(),
            });
            let (status, headers, body) = response_parts(answer_event(app, request).await);
            let mut out = ApiGatewayV2httpResponse::default();
            out.status_code = status;
            out.headers = headers;
            out.body = body;
            to_event_value(serde_json::to_value(out))
        }
        LambdaShape::V1 => {
            // The CloudBase / SCF trigger names the client's address differently.
            let scf_source_ip = event
                .pointer("/requestContext/sourceIp")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ev: ApiGatewayProxyRequest = match parse(event) {
                Ok(ev) => ev,
                Err(answer) => return answer,
            };
            let request = event_body(ev.body, ev.is_base64_encoded).map(|body| HttpRequest {
                method: ev.http_method.clone(),
                path: ev.path.clone().unwrap_or_else(|| "/".into()),
                headers: merge_headers(ev.multi_value_headers, &ev.headers),
                body,
                source_ip: ev
                    .request_context
                    .identity
                    .source_ip
                    .clone()
                    .or(scf_source_ip),
            });
            let (status, headers, body) = response_parts(answer_event(app, request).await);
            let mut out = ApiGatewayProxyResponse::default();
            out.status_code = status;
            out.headers = headers;
            out.body = body;
            to_event_value(serde_json::to_value(out))
        }
        LambdaShape::Alb => {
            let ev: AlbTargetGroupRequest = match parse(event) {
                Ok(ev) => ev,
                Err(answer) => return answer,
            };
            let request = event_body(ev.body, ev.is_base64_encoded).map(|body| HttpRequest {
                method: ev.http_method.clone(),
                path: ev.path.clone().unwrap_or_else(|| "/".into()),
                headers: merge_headers(ev.multi_value_headers, &ev.headers),
                body,
                source_ip: None,
            });
            let (status, headers, body) = response_parts(answer_event(app, request).await);
            let reason = http::StatusCode::from_u16(status as u16)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("");
            let mut out = AlbTargetGroupResponse::default();
            out.status_code = status;
            out.status_description = Some(format!("{status} {reason}"));
            // ALB reads one or the other, depending on the target group's setting.
            out.multi_value_headers = headers.clone();
            out.headers = headers;
            out.body = body;
            to_event_value(serde_json::to_value(out))
        }
    }
}

/// Serves local HTTP on an already-bound listener until the process ends.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    loop {
        let (stream, peer) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let too_large = parts
                        .headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|n| n > BODY_LIMIT);
                    let body = if too_large {
                        None
                    } else {
                        Limited::new(body, BODY_LIMIT)
                            .collect()
                            .await
                            .ok()
                            .map(|c| c.to_bytes())
                    };
                    let resp = match body {
                        Some(body) => {
                            let req = HttpRequest {
                                method: parts.method,
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                                source_ip: Some(peer.ip().to_string()),
                            };
                            handle_http(&app, req).await
                        }
                        None => {
                            let (s, b) =
                                envelope(Err(AppError::BodyTooLarge { limit: BODY_LIMIT }));
                            HttpResponse::json(s, &b)
                        }
                    };
                    let mut builder = hyper::Response::builder().status(resp.status);
                    if resp.body.is_some() {
                        builder = builder.header("content-type", "application/json; charset=utf-8");
                    }
                    builder.body(Full::new(Bytes::from(resp.body.unwrap_or_default())))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

fn init_tracing() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The whole life of a function binary: read the configuration, build the state once,
/// then serve Lambda (when `AWS_LAMBDA_RUNTIME_API` is set) or local HTTP on `HOST:PORT`.
pub fn run(routes: &'static Routes) -> ExitCode {
    init_tracing();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let app = match App::new(config, routes) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("cannot open the store: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        run_lambda(app)
    } else {
        run_local(app)
    }
}

fn run_lambda(app: Arc<App>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let app = app.clone();
            async move {
                Ok::<Value, lambda_runtime::Error>(handle_lambda_event(&app, event.payload).await)
            }
        },
    )));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Lambda runtime failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_local(app: Arc<App>) -> ExitCode {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "9000".into());
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("HOST/PORT do not form an address: {host}:{port}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let types: Vec<&str> = app.routes.types().collect();
        tracing::info!(
            "serving {} on http://{addr} (POST /pay, GET /healthz)",
            types.join(", ")
        );
        match serve(app, listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server stopped: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
