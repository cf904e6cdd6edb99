//! The runtime adapter: serves one [`App`] in every invocation shape of contract §2–3 —
//! Lambda HTTP events (API Gateway v2, REST/v1 and the CloudBase/SCF trigger, ALB), raw
//! `callFunction` events, and local HTTP on `HOST:PORT` — and renders the envelope of §5.
//! Domain code never learns which shape a call came in.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Map, Value};

use crate::config::EventShape;
use crate::deadline;
use crate::error::AppError;
use crate::handlers::{handle_call, handle_notification, notifications_not_served, Call, Caller};
use crate::identity::{self, build_call, header, trust, Transport};
use crate::invocation;
use crate::notify::NotifyAnswer;
use crate::state::App;

mod local;
mod migrate;
mod process;
pub use local::serve;
pub use process::run;

/// Largest request body accepted; WeChat Pay notifications and calls are a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An HTTP request, whichever way it arrived.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client's address as the platform saw it (see [`identity`]).
    pub source_ip: Option<String>,
    pub transport: Transport,
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
        Ok(data) => {
            invocation::record_outcome("ok", 200, Some(0));
            (200, json!({ "code": 0, "msg": "ok", "data": data }))
        }
        Err(e) => {
            let (status, code) = e.status_and_code();
            invocation::record_outcome(e.kind(), status, Some(code));
            let message = e.to_string();
            let shown = crate::logging::shortened(&message, crate::logging::MAX_MESSAGE_BYTES);
            if status >= 500 {
                tracing::error!(code, "request failed: {shown}");
            } else {
                tracing::info!(code, "request refused: {shown}");
            }
            (status, json!({ "code": code, "msg": e.public_message() }))
        }
    }
}

fn notify_response(answer: NotifyAnswer) -> HttpResponse {
    let outcome = if answer.status < 300 { "ok" } else { "fail" };
    invocation::record_outcome(outcome, answer.status, None);
    if answer.status >= 300 {
        crate::metric::notification_refused(answer.status);
    }
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

/// Runs `work` inside the invocation's deadline (the platform's, or `FUNCTION_TIMEOUT_MS`
/// from now) and answers `late()` if it has not finished shortly before it: the platform
/// never kills a call mid-way. Inner budgets end [`deadline::MARGIN`] before the deadline,
/// half of it earlier than this, so their own, more precise error usually wins.
async fn before_deadline<T>(
    app: &App,
    deadline: Option<tokio::time::Instant>,
    work: impl std::future::Future<Output = T>,
    late: impl FnOnce() -> T,
) -> T {
    let deadline = deadline
        .or_else(deadline::current)
        .unwrap_or_else(|| tokio::time::Instant::now() + app.config.function_timeout);
    deadline::scope(
        deadline,
        deadline::with_cleanups(async {
            let by = deadline::current().unwrap_or(deadline);
            let by = by.checked_sub(deadline::MARGIN / 2).unwrap_or(by);
            let answer = match tokio::time::timeout_at(by, work).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::error!(
                        "the invocation ran out of time; answering before the deadline"
                    );
                    late()
                }
            };
            // Whatever the cut left behind (a database session mid-transaction) is ended
            // now: on Lambda the sandbox may freeze as soon as the answer is out.
            deadline::finish_cleanups(deadline::CLEANUP).await;
            answer
        }),
    )
    .await
}

/// `GET /healthz`, or `HEAD /healthz` as some load balancers probe.
fn is_health_check(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && path.trim_end_matches('/').ends_with("/healthz")
}

/// The HTTP shapes: local HTTP, Lambda HTTP events and the SCF web function.
pub async fn handle_http(app: &App, req: HttpRequest) -> HttpResponse {
    before_deadline(app, None, handle_http_now(app, req), || {
        let (status, body) = envelope(Err(AppError::DeadlineExceeded));
        HttpResponse::json(status, &body)
    })
    .await
}

async fn handle_http_now(app: &App, req: HttpRequest) -> HttpResponse {
    if is_health_check(&req.method, &req.path) {
        invocation::record_type(invocation::HEALTH_CHECK);
        invocation::record_outcome("ok", 200, None);
        if req.method == Method::HEAD {
            return HttpResponse {
                status: 200,
                body: None,
            };
        }
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
        // WeChat Pay gives up after 5 s; a late answer is a failure it retries anyway.
        let within = tokio::time::Instant::now() + deadline::NOTIFICATION;
        let answer = before_deadline(
            app,
            Some(within),
            handle_notification(app, &req.headers, &req.body),
            || NotifyAnswer::fail(503, "not handled in time; retry later"),
        )
        .await;
        return notify_response(answer);
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
        let trusted = trust(&app.config, header(&req.headers, "x-internal-secret"))?;
        let platform = identity::header_openid(&app.config, &req.headers, req.transport)?;
        let session = identity::session_openid(app, identity::bearer_token(&req.headers))?;
        let openid = identity::one_identity(platform, session)?;
        let data = parse_object(&req.body)?;
        let call = build_call(data, openid, trusted, req.source_ip.clone())?;
        handle_call(app, call).await
    }
    .await;
    let (status, body) = envelope(result);
    HttpResponse::json(status, &body)
}

/// A raw `callFunction` event: the `data` object itself. Returns the envelope.
pub async fn handle_raw_event(app: &App, event: Value) -> Value {
    let work = async {
        let Value::Object(data) = event else {
            return Err(AppError::InvalidJson(
                "the event must be a JSON object with a `type` field".into(),
            ));
        };
        if is_schedule(&data) {
            let call = Call {
                ty: scheduled_type(&data).to_string(),
                data: Map::new(),
                caller: Caller {
                    scheduled: true,
                    ..Caller::default()
                },
            };
            return handle_call(app, call).await;
        }
        let presented = data.get("internalSecret").and_then(Value::as_str);
        let trusted = trust(&app.config, presented)?;
        let platform = identity::user_info_openid(&app.config, &data)?;
        let session = identity::session_openid(app, identity::session_token_field(&data)?)?;
        let openid = identity::one_identity(platform, session)?;
        let call = build_call(data, openid, trusted, None)?;
        handle_call(app, call).await
    };
    let result = before_deadline(app, None, work, || Err(AppError::DeadlineExceeded)).await;
    envelope(result).1
}

/// A timer invocation: an EventBridge schedule or a Tencent SCF timer trigger. It can only
/// ever start the (harmless, idempotent) delivery of what is due or the daily
/// reconciliation.
fn is_schedule(event: &Map<String, Value>) -> bool {
    // A mini-program's `callFunction` carries the platform's userInfo: never a timer.
    if event.contains_key("userInfo") {
        return false;
    }
    let aws = event.get("source").and_then(Value::as_str) == Some("aws.events")
        && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    let scf = event.get("Type").and_then(Value::as_str) == Some("Timer");
    aws || scf
}

/// The job a timer runs. Delivering what is due, unless the schedule names the daily
/// reconciliation: EventBridge in the rule's input (`detail.type`), SCF in the trigger's
/// message. Either only ever reads WeChat Pay and applies what it verifiably says.
fn scheduled_type(event: &Map<String, Value>) -> &'static str {
    let named = event
        .get("detail")
        .and_then(|d| d.get("type"))
        .or_else(|| event.get("Message"))
        .and_then(Value::as_str);
    match named {
        Some(crate::handlers::RECONCILE) => crate::handlers::RECONCILE,
        _ => crate::handlers::NOTIFY_RETRY,
    }
}

/// Which HTTP event shape a Lambda event is, if any.
#[derive(Debug, PartialEq, Eq)]
enum LambdaShape {
    V2,
    V1,
    Alb,
    Raw,
    Schedule,
}

/// Never decided by fields a caller controls alone: an event carrying the platform's
/// `userInfo` is a `callFunction` event however it is dressed, and a deployment that knows
/// its trigger pins the shape with `LAMBDA_EVENT_SHAPE`.
fn lambda_shape(event: &Value, pinned: EventShape) -> Result<LambdaShape, AppError> {
    let Some(object) = event.as_object() else {
        return Ok(LambdaShape::Raw);
    };
    if is_schedule(object) {
        return Ok(LambdaShape::Schedule);
    }
    let raw = object.contains_key("userInfo");
    let ctx = event.get("requestContext");
    let http = if ctx.and_then(|c| c.get("elb")).is_some() {
        Some(LambdaShape::Alb)
    } else if event.get("version").and_then(Value::as_str) == Some("2.0")
        || ctx.and_then(|c| c.get("http")).is_some()
    {
        Some(LambdaShape::V2)
    } else if event.get("httpMethod").is_some() && (ctx.is_some() || event.get("path").is_some()) {
        Some(LambdaShape::V1)
    } else {
        None
    };
    match (pinned, raw, http) {
        (EventShape::Raw, _, _) | (EventShape::Auto, true, _) | (EventShape::Auto, _, None) => {
            Ok(LambdaShape::Raw)
        }
        (EventShape::Http, false, Some(shape)) | (EventShape::Auto, false, Some(shape)) => {
            Ok(shape)
        }
        (EventShape::Http, _, _) => Err(AppError::InvalidJson(
            "this function takes API Gateway and ALB events only (LAMBDA_EVENT_SHAPE=http); an event with userInfo is a callFunction event".into(),
        )),
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

    let shape = match lambda_shape(&event, app.config.event_shape) {
        Ok(shape) => shape,
        Err(e) => return envelope(Err(e)).1,
    };
    match shape {
        LambdaShape::Raw | LambdaShape::Schedule => handle_raw_event(app, event).await,
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
                transport: Transport::LambdaEvent,
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
                transport: Transport::LambdaEvent,
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
            let headers = merge_headers(ev.multi_value_headers, &ev.headers);
            // ALB appends the address it received the request from to X-Forwarded-For.
            let source_ip = identity::last_forwarded_for(&headers);
            let request = event_body(ev.body, ev.is_base64_encoded).map(|body| HttpRequest {
                method: ev.http_method.clone(),
                path: ev.path.clone().unwrap_or_else(|| "/".into()),
                headers,
                body,
                source_ip,
                transport: Transport::LambdaEvent,
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
