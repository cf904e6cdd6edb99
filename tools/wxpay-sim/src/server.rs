//! HTTP plumbing: starting the server, dispatching each request (merchant API, control
//! API, console), signing the merchant's answers and applying faults.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::{self, MerchantRequest};
use crate::config::SimConfig;
use crate::deliveries::parse_scale;
use crate::faults::FaultKind;
use crate::login::Logins;
use crate::platform::Platform;
use crate::reply::Reply;
use crate::respond::{build_response, plain_json, HttpResponse};
use crate::sim::{lock, Inner, Simulator};
use crate::state::State;
use crate::{auth, bill, console, control, crypto, guard};

/// Larger bodies are refused: no WeChat Pay request comes near this.
const MAX_BODY: usize = 1 << 20;

fn invalid_input(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl Simulator {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`. `SIM_RETRY_SCALE`, when set, scales the notification retry
    /// schedule; a value that is not a positive number stops the start, naming it.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        if config.apiv3_key.len() != 32 {
            return Err(invalid_input(format!(
                "apiv3_key must be 32 bytes, it has {}",
                config.apiv3_key.len()
            )));
        }
        let merchant_key = crypto::Verifier::from_pem(&config.merchant_public_key_pem)
            .map_err(|e| invalid_input(format!("merchant_public_key_pem: {e}")))?;
        let platform = Platform::generate(config.mode).map_err(std::io::Error::other)?;
        let retry_scale = match std::env::var("SIM_RETRY_SCALE") {
            Ok(v) if !v.trim().is_empty() => parse_scale(&v).map_err(invalid_input)?,
            _ => 1.0,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Simulator {
            inner: Arc::new(Inner {
                config,
                addr,
                merchant_key,
                platform: Mutex::new(platform),
                state: Mutex::new(State::default()),
                logins: Mutex::new(Logins::default()),
                retry_scale: Mutex::new(retry_scale),
                http,
                shutdown: tokio::sync::Notify::new(),
            }),
        };
        tokio::spawn(serve(listener, sim.clone()));
        Ok(sim)
    }
}

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

async fn handle(sim: Simulator, req: Request<Incoming>) -> Result<HttpResponse, io::Error> {
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
    let is_page = console::serves(&path);
    if is_control || is_page {
        if let Some(why) = guard::refusal(&method, req.headers(), sim.inner.addr) {
            tracing::warn!(%method, %path, %why, "refused a browser request");
            return Ok(plain_json(
                403,
                &json!({ "code": "CROSS_SITE_REFUSED", "message": why }),
            ));
        }
    } else {
        let mut st = lock(&sim.inner.state);
        *st.hits.entry(path.clone()).or_default() += 1;
    }

    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if is_control || is_page => {
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
        return Ok(control::handle(&sim, &method, &segs, &query, &body).await);
    }
    if is_page {
        return Ok(console::handle(&sim, &method, &path, &query, &body).await);
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
        let file = api::authenticate(&sim, &request)
            .and_then(|_| bill::endpoint::download(&lock(&sim.inner.state).bill, &query));
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
fn sign(sim: &Simulator, reply: Reply, fault: Option<&FaultKind>) -> HttpResponse {
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
