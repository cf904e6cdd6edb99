//! Local HTTP (`HOST:PORT`): the local runner, and Tencent SCF / CloudBase web functions,
//! which forward each request to the process's own listener.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use super::{
    envelope, handle_http, is_health_check, notify_response, HttpRequest, HttpResponse, BODY_LIMIT,
};
use crate::error::AppError;
use crate::identity::{self, Transport};
use crate::invocation::Invocation;
use crate::notify::NotifyAnswer;
use crate::state::App;

/// How much of an oversized body is still read (and thrown away) before answering 413.
/// Answering while the client is still sending makes the server close a connection with
/// unread bytes in it, and the client sees a reset instead of the 413; past this much the
/// reset is the lesser harm.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a local HTTP request's body: too large is 413, a body that breaks HTTP framing (bad
/// chunked encoding, fewer bytes than its `Content-Length`) is 400 — never mistaken for
/// each other. Nothing past [`BODY_LIMIT`] is kept.
async fn read_body(
    headers: &HeaderMap,
    mut body: hyper::body::Incoming,
) -> Result<Bytes, AppError> {
    use http_body_util::BodyExt;

    let too_large = AppError::BodyTooLarge { limit: BODY_LIMIT };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large);
    }
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AppError::InvalidJson(format!(
                "the request body is malformed (chunked encoding or Content-Length): {e}"
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            return Err(too_large);
        }
        if seen <= BODY_LIMIT {
            kept.extend_from_slice(&data);
        }
    }
    if seen > BODY_LIMIT {
        return Err(too_large);
    }
    Ok(kept.freeze())
}

/// One local HTTP request, read and answered inside its invocation's span.
async fn answer_local(
    app: &App,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let invocation = Invocation::from_headers(&parts.headers, app.config.platform_request_ids)
        .quiet(is_health_check(&parts.method, parts.uri.path()));
    let answer = async {
        match read_body(&parts.headers, body).await {
            Ok(body) => {
                let source_ip = identity::listener_client_ip(peer.ip(), &parts.headers);
                let req = HttpRequest {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    headers: parts.headers,
                    body,
                    source_ip: Some(source_ip),
                    transport: Transport::Listener,
                };
                handle_http(app, req).await
            }
            Err(e) if parts.headers.contains_key("wechatpay-signature") => {
                let (status, _) = e.status_and_code();
                notify_response(NotifyAnswer::fail(status, e.public_message()))
            }
            Err(e) => {
                let (s, b) = envelope(Err(e));
                HttpResponse::json(s, &b)
            }
        }
    };
    invocation.run(answer).await
}

/// How long the listener rests after an accept error that is not one connection's own
/// (out of file descriptors, say) before it tries again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves local HTTP on an already-bound listener until the process ends. An accept error
/// never ends it: a client that gave up before its connection was taken, or a moment out
/// of file descriptors, must not take the instance — and every call after — down with it.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!("cannot accept a connection, retrying: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    // Its own task: hyper drops a request's future when the client hangs up,
                    // which would stop the call mid-way (between a WeChat Pay call and the
                    // store, say) and lose its summary line. The deadline still bounds it.
                    let answered = tokio::spawn(async move { answer_local(&app, peer, req).await });
                    let resp = answered.await.unwrap_or_else(|e| {
                        tracing::error!("the invocation's task failed: {e}");
                        HttpResponse {
                            status: 500,
                            body: None,
                        }
                    });
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

/// An error of the one connection being accepted (Linux reports them from accept(2)), not of
/// the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}
