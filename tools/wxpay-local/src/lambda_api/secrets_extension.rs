//! A fake of the AWS Parameters and Secrets Lambda Extension's Secrets Manager endpoint, so
//! the built binaries read their secret the way they do on Lambda.
//!
//! Like the extension it serves `GET /secretsmanager/get?secretId=ID` and answers only a
//! request whose `X-Aws-Parameters-Secrets-Token` header is the session token Lambda gave
//! the function (`AWS_SESSION_TOKEN`, [`super::SESSION_TOKEN`] here): 401 without it. The
//! answer is Secrets Manager's GetSecretValue JSON (`ARN`, `Name`, `SecretString`,
//! `VersionId`, `VersionStages`, `CreatedDate`); an unknown secret is 400 with
//! `ResourceNotFoundException`. It can play an extension still initialising (400 "not
//! ready to serve traffic") for its first requests, and counts what it served.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

#[derive(Default)]
struct State {
    token: String,
    /// Secret name → SecretString.
    secrets: Mutex<BTreeMap<String, String>>,
    not_ready_for: AtomicUsize,
    served: AtomicUsize,
    refused: AtomicUsize,
}

/// The fake extension. Dropping it stops the server.
pub struct SecretsExtension {
    addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SecretsExtension {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET || req.uri().path() != "/secretsmanager/get" {
        return Ok(answer(StatusCode::NOT_FOUND, "not found".into()));
    }
    let token = req
        .headers()
        .get("X-Aws-Parameters-Secrets-Token")
        .and_then(|v| v.to_str().ok());
    if token != Some(state.token.as_str()) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return Ok(answer(
            StatusCode::UNAUTHORIZED,
            "missing or invalid X-Aws-Parameters-Secrets-Token".into(),
        ));
    }
    if state
        .not_ready_for
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            "not ready to serve traffic, please wait".into(),
        ));
    }
    let id = req.uri().query().unwrap_or("").split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "secretId").then(|| percent_decode(v))
    });
    let Some(id) = id else {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            "secretId is required".into(),
        ));
    };
    let secret = state.secrets.lock().ok().and_then(|s| s.get(&id).cloned());
    let Some(secret_string) = secret else {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            json!({"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."}).to_string(),
        ));
    };
    state.served.fetch_add(1, Ordering::SeqCst);
    Ok(answer(
        StatusCode::OK,
        json!({
            "ARN": format!("arn:aws:secretsmanager:ap-east-1:123456789012:secret:{id}-AbCdEf"),
            "Name": id,
            "SecretString": secret_string,
            "VersionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": "2026-03-12T08:00:00.000000000Z",
        })
        .to_string(),
    ))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SecretsExtension {
    /// Listens on a free loopback port and answers requests carrying `token`.
    pub async fn start(token: &str) -> std::io::Result<SecretsExtension> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            token: token.to_string(),
            ..State::default()
        });
        let served = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(SecretsExtension {
            addr,
            state,
            server,
        })
    }

    /// Stores `secret_string` (what GetSecretValue's `SecretString` holds) under `name`.
    pub fn put(&self, name: &str, secret_string: &str) {
        if let Ok(mut s) = self.state.secrets.lock() {
            s.insert(name.to_string(), secret_string.to_string());
        }
    }

    /// The next `n` requests with the right token answer 400 "not ready to serve traffic".
    pub fn not_ready_for(&self, n: usize) {
        self.state.not_ready_for.store(n, Ordering::SeqCst);
    }

    /// The variables that point a function at this extension
    /// (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`).
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![(
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(),
            self.addr.port().to_string(),
        )]
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Secrets handed out so far.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Requests refused for a missing or wrong token.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}
