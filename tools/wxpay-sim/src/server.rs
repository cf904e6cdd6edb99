//! HTTP plumbing: the hyper server, response signing, faults and the control API.

use std::io;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::api::{self, MerchantRequest, Reply};
use crate::{auth, control, crypto};
use crate::{lock, FaultKind, RefundOutcome, SimError, Simulator};

/// Larger bodies are refused: no WeChat Pay request comes near this.
const MAX_BODY: usize = 1 << 20;

pub(crate) async fn serve(listener: TcpListener, sim: Simulator) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sim.inner.shutdown.notified() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually fd exhaustion; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let sim = sim.clone();
                async move { handle(sim, req).await }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn plain_json(status: u16, v: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    build_response(
        status,
        vec![("Content-Type", "application/json".into())],
        body,
    )
}

fn build_response(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

async fn handle(
    sim: Simulator,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    // The mini-program login API lives on api.weixin.qq.com, not the payment gateway: its
    // answers are plain JSON, unsigned, HTTP 200 even for errors.
    if path == "/sns/jscode2session" {
        let config = &sim.inner.config;
        let answer = lock(&sim.inner.logins).exchange(&config.appid, &config.app_secret, &query);
        return Ok(plain_json(200, &answer));
    }

    let is_control = path == "/sim" || path.starts_with("/sim/");
    if !is_control {
        let mut st = lock(&sim.inner.state);
        *st.hits.entry(path.clone()).or_default() += 1;
    }

    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if is_control => {
            return Ok(plain_json(
                400,
                &json!({ "code": "PARAM_ERROR", "message": format!("cannot read the body: {e}") }),
            ))
        }
        Err(e) => {
            let reply = Reply::error(400, "PARAM_ERROR", format!("无法读取请求体：{e}"));
            return Ok(sign(&sim, reply, None));
        }
    };
    if is_control {
        return Ok(control(&sim, &method, &path, &query, &body).await);
    }

    let fault = lock(&sim.inner.state).take_fault(&path);
    match &fault {
        Some(FaultKind::Status(status, code, message)) => {
            let reply = Reply::error(*status, code, message.clone());
            return Ok(sign(&sim, reply, None));
        }
        Some(FaultKind::Disconnect) => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "injected disconnect",
            ));
        }
        _ => {}
    }

    let request = MerchantRequest {
        method: &method,
        path: &path,
        path_and_query: &path_and_query,
        query: &query,
        authorization: authorization.as_deref(),
        body: &body,
    };
    if method == "GET" && path == "/v3/billdownload/file" {
        // The bill file is the one answer WeChat Pay does not sign: its hash vouches for it.
        let file =
            api::authenticate(&sim, &request).and_then(|_| crate::bill::download(&sim, &query));
        return Ok(match file {
            Ok(file) => build_response(
                200,
                vec![("Content-Type", "application/octet-stream".into())],
                file,
            ),
            Err(reply) => sign(&sim, reply, fault.as_ref()),
        });
    }
    let reply = api::handle(&sim, &request);
    tracing::debug!(%method, %path_and_query, status = reply.status, "merchant request");

    // The request has already taken effect: a delay models a slow answer, after which a
    // timed-out client must cope with the work having been done.
    if let Some(FaultKind::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    Ok(sign(&sim, reply, fault.as_ref()))
}

/// Adds WeChat Pay's response signature headers (or breaks them, for a fault).
fn sign(sim: &Simulator, reply: Reply, fault: Option<&FaultKind>) -> Response<Full<Bytes>> {
    let identity = lock(&sim.inner.platform).next_signer();
    let timestamp = crypto::unix_now().to_string();
    let nonce = crypto::nonce32();
    let mut signature =
        identity
            .signer
            .sign_base64(&crypto::response_message(&timestamp, &nonce, &reply.body));
    match fault {
        Some(FaultKind::BadSignature) => signature = corrupt(&signature),
        Some(FaultKind::SignTestProbe) => {
            signature = format!("WECHATPAY/SIGNTEST/{}", crypto::random_alnum(64));
        }
        _ => {}
    }

    let mut headers: Vec<(&'static str, String)> = Vec::new();
    if reply.status != 204 {
        headers.push(("Content-Type", "application/json; charset=utf-8".into()));
    }
    headers.push(("Request-ID", crypto::random_from(b"0123456789ABCDEF", 40)));
    if !matches!(fault, Some(FaultKind::Unsigned)) {
        let signature_type = match fault {
            Some(FaultKind::SignatureType(t)) => t.clone(),
            _ => auth::SCHEME.to_string(),
        };
        headers.push(("Wechatpay-Nonce", nonce));
        headers.push(("Wechatpay-Serial", identity.serial.clone()));
        headers.push(("Wechatpay-Signature", signature));
        if !signature_type.is_empty() {
            headers.push(("Wechatpay-Signature-Type", signature_type));
        }
        headers.push(("Wechatpay-Timestamp", timestamp));
    }
    build_response(reply.status, headers, reply.body)
}

/// A well-formed signature of the right length that does not verify.
fn corrupt(signature: &str) -> String {
    match B64.decode(signature) {
        Ok(mut raw) if !raw.is_empty() => {
            let mid = raw.len() / 2;
            raw[mid] ^= 0x01;
            B64.encode(raw)
        }
        _ => format!("X{signature}"),
    }
}

fn sim_error(e: &SimError) -> Response<Full<Bytes>> {
    let (status, code) = match e {
        SimError::OrderNotFound(_) => (404, "ORDER_NOT_EXIST"),
        SimError::RefundNotFound(_) => (404, "RESOURCE_NOT_EXISTS"),
        SimError::InvalidState(_) => (409, "INVALID_STATE"),
        SimError::NoNotifyUrl(_) | SimError::Delivery(_) => (502, "DELIVERY_FAILED"),
        SimError::Crypto(_) => (500, "SYSTEM_ERROR"),
    };
    plain_json(status, &json!({ "code": code, "message": e.to_string() }))
}

fn notified(result: Result<crate::NotifyOutcome, SimError>) -> Response<Full<Bytes>> {
    match result {
        Ok(o) => plain_json(
            200,
            &json!({ "notified": true, "status": o.status, "body": o.body }),
        ),
        // The state change happened; only the notification did not get through.
        Err(e @ (SimError::Delivery(_) | SimError::NoNotifyUrl(_))) => {
            plain_json(200, &json!({ "notified": false, "error": e.to_string() }))
        }
        Err(e) => sim_error(&e),
    }
}

/// The unauthenticated control API, for people and for test harnesses in any language.
async fn control(
    sim: &Simulator,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if let Some((status, v)) = crate::bill_control::control(sim, method, &segs, query) {
        return plain_json(status, &v);
    }
    match (method, segs.as_slice()) {
        ("POST", ["sim", "pay", no]) => notified(sim.pay(no).await),
        ("POST", ["sim", "refunds", no, "complete"]) => {
            let status = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("status="))
                .unwrap_or("SUCCESS");
            let outcome = match status.to_ascii_uppercase().as_str() {
                "SUCCESS" => RefundOutcome::Success,
                "ABNORMAL" => RefundOutcome::Abnormal,
                "CLOSED" => RefundOutcome::Closed,
                other => {
                    return plain_json(
                        400,
                        &json!({
                            "code": "PARAM_ERROR",
                            "message": format!("status must be SUCCESS, ABNORMAL or CLOSED, not {other}"),
                        }),
                    )
                }
            };
            notified(sim.complete_refund(no, outcome).await)
        }
        ("POST", ["sim", "login-codes"]) => {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name))
                    .map(|v| {
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
            };
            let Some(openid) = param("openid=").filter(|o| !o.is_empty()) else {
                return plain_json(
                    400,
                    &json!({ "code": "PARAM_ERROR", "message": "give ?openid=… (and optionally &errcode=40226|45011|…)" }),
                );
            };
            let errcode = param("errcode=").and_then(|c| c.parse::<i64>().ok());
            let code = lock(&sim.inner.logins).issue(&openid, errcode);
            plain_json(200, &json!({ "code": code, "openid": openid }))
        }
        ("POST", ["sim", "faults", "refund-late"]) => {
            let param = |name: &str| {
                query.split('&').find_map(|kv| {
                    kv.strip_prefix(name)
                        .and_then(|v| v.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                })
            };
            let delay = std::time::Duration::from_millis(param("delay_ms").unwrap_or(10_000));
            let times = param("times").unwrap_or(1) as usize;
            sim.answer_refunds_late(delay, times);
            plain_json(
                200,
                &json!({ "armed": times, "delayMs": delay.as_millis() as u64 }),
            )
        }
        ("POST", ["sim", "faults"]) => match control::parse_fault(body) {
            Ok(fault) => {
                sim.inject_fault(fault);
                plain_json(200, &json!({ "injected": true }))
            }
            Err(message) => plain_json(400, &json!({ "code": "PARAM_ERROR", "message": message })),
        },
        ("DELETE", ["sim", "faults"]) => {
            sim.clear_faults();
            plain_json(200, &json!({ "cleared": true }))
        }
        ("GET", ["sim", "orders"]) => plain_json(200, &json!(sim.orders())),
        ("GET", ["sim", "orders", no]) => match sim.order(no) {
            Some(o) => plain_json(200, &json!(o)),
            None => sim_error(&SimError::OrderNotFound(no.to_string())),
        },
        ("GET", ["sim", "refunds"]) => plain_json(200, &json!(sim.refunds())),
        ("GET", ["sim", "refunds", no]) => match sim.refund(no) {
            Some(r) => plain_json(200, &json!(r)),
            None => sim_error(&SimError::RefundNotFound(no.to_string())),
        },
        _ => plain_json(
            404,
            &json!({
                "code": "NOT_FOUND",
                "message": "control API: POST /sim/pay/{out_trade_no}, POST /sim/login-codes?openid=…, POST /sim/refunds/{out_refund_no}/complete?status=SUCCESS|ABNORMAL|CLOSED, POST /sim/faults, DELETE /sim/faults, POST /sim/faults/refund-late?delay_ms=N&times=K, GET /sim/orders[/{out_trade_no}], GET /sim/refunds[/{out_refund_no}]",
            }),
        ),
    }
}
