//! A typed WeChat Pay APIv3 client: signed requests, every answer verified (contract §6, §10) before
//! it is used, WeChat Pay's `{code,message,detail}` turned into [`ClientError::Api`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use once_cell::sync::Lazy;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    CloseRequest, ErrorBody, PrepayRequest, PrepayResponse, RefundInfo, RefundRequest, Transaction,
};
use crate::certs::{CertificateSource, PlatformKeys, RawAnswer, SignatureHeaders, VerifyError};
use crate::config::Config;
use crate::crypto::{authorization_header, MerchantKey, RequestToSign};
use crate::deadline;
use crate::util::{now_utc, random_alnum};

mod bill;
pub use bill::{BillDownloadError, SpooledBill, TradeBillResponse, MAX_BILL_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WeChat Pay did not answer in time")]
    Timeout,
    #[error("WeChat Pay unreachable: {0}")]
    Network(String),
    /// WeChat Pay answered with an error body. `verified` says whether its signature checked.
    #[error("WeChat Pay refused: HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        verified: bool,
    },
    #[error("WeChat Pay answer failed verification: {0}")]
    Verify(#[from] VerifyError),
    #[error("WeChat Pay answer not understood: {0}")]
    Decode(String),
    #[error("WeChat Pay's answer is larger than {limit} bytes; not read")]
    TooLarge { limit: usize },
    #[error("could not sign the request")]
    Sign,
}

/// One HTTP client per instance, built on first use: no TLS set-up on the cold-start path.
static HTTP: Lazy<reqwest::Client> = Lazy::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("wxpay-functions/", env!("CARGO_PKG_VERSION")))
        // Backend deliveries carry the internal secret in a header, which reqwest would
        // forward to wherever a redirect points; nothing we call is meant to redirect.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| {
            tracing::error!("HTTP client set-up failed, using defaults: {e}");
            reqwest::Client::new()
        })
});

pub fn http_client() -> &'static reqwest::Client {
    &HTTP
}

/// An attempt with less time than this left is not started: it could only time out.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
/// The least time a retry must have before it is worth starting.
const RETRY_NEEDS: Duration = Duration::from_millis(1000);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Largest answer read from WeChat Pay or the business backend. Theirs are a few KiB; a
/// bigger one is refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes; not read")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Read(#[from] reqwest::Error),
}

/// Reads an answer's body, at most `limit` bytes, whatever its Content-Length claims.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Path segments we put in URLs are validated references, but encode anyway.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeType {
    Jsapi,
    Native,
    H5,
    App,
}

impl TradeType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "JSAPI" => TradeType::Jsapi,
            "NATIVE" => TradeType::Native,
            "H5" | "MWEB" => TradeType::H5,
            "APP" => TradeType::App,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TradeType::Jsapi => "JSAPI",
            TradeType::Native => "NATIVE",
            TradeType::H5 => "H5",
            TradeType::App => "APP",
        }
    }

    fn path(self) -> &'static str {
        match self {
            TradeType::Jsapi => "/v3/pay/transactions/jsapi",
            TradeType::Native => "/v3/pay/transactions/native",
            TradeType::H5 => "/v3/pay/transactions/h5",
            TradeType::App => "/v3/pay/transactions/app",
        }
    }
}

pub struct WechatPayClient {
    base_url: String,
    mchid: String,
    serial_no: String,
    key: Arc<MerchantKey>,
    public_key_id: Option<String>,
    keys: Arc<PlatformKeys>,
    timeout: Duration,
}

impl WechatPayClient {
    pub fn new(config: &Config, keys: Arc<PlatformKeys>) -> Self {
        WechatPayClient {
            base_url: config.base_url.clone(),
            mchid: config.mchid.clone(),
            serial_no: config.serial_no.clone(),
            key: config.private_key.clone(),
            public_key_id: config.public_key_id().map(str::to_string),
            keys,
            timeout: config.wechatpay_timeout,
        }
    }

    pub fn platform_keys(&self) -> &PlatformKeys {
        &self.keys
    }

    /// Signs and sends one request; the answer is returned unverified.
    async fn send_once(
        &self,
        method: &reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<RawAnswer, ClientError> {
        let resp = self
            .signed(method, path_and_query, body)?
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_capped(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ClientError::TooLarge { limit },
                BodyError::Read(e) => classify(e),
            })?;
        Ok(RawAnswer {
            status,
            headers,
            body,
        })
    }

    /// A request to `base_url + path_and_query` carrying the merchant's signature.
    fn signed(
        &self,
        method: &reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        // Each attempt gets min(WECHATPAY_TIMEOUT_MS, what the invocation has left).
        let timeout = deadline::budget(self.timeout);
        if timeout < MIN_ATTEMPT {
            return Err(ClientError::Timeout);
        }
        let nonce = random_alnum(32);
        let timestamp = now_utc().unix_timestamp();
        let auth = authorization_header(
            &self.key,
            &self.mchid,
            &self.serial_no,
            &RequestToSign {
                method: method.as_str(),
                path_and_query,
                timestamp,
                nonce: &nonce,
                body,
            },
        )
        .map_err(|_| ClientError::Sign)?;
        let mut req = http_client()
            .request(
                method.clone(),
                format!("{}{}", self.base_url, path_and_query),
            )
            .timeout(timeout)
            .header("Authorization", auth)
            .header("Accept", "application/json");
        if let Some(id) = &self.public_key_id {
            req = req.header("Wechatpay-Serial", id);
        }
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        Ok(req)
    }

    /// Sends with at most one retry, and only where WeChat Pay documents a retry with the
    /// same parameters as safe: the request never left (connect failure) or WeChat Pay
    /// answered `SYSTEM_ERROR`/5xx. Every call here is idempotent by its merchant reference.
    /// A timeout is not retried: the function's own deadline matters more.
    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<RawAnswer, ClientError> {
        let first = self.send_once(&method, path_and_query, body).await;
        let why = match &first {
            Err(ClientError::Network(e)) => format!("WeChat Pay unreachable: {e}"),
            Ok(answer) if answer.status >= 500 => format!("WeChat Pay HTTP {}", answer.status),
            _ => return first,
        };
        // A retry starts only if a whole attempt still fits before the deadline.
        if !deadline::has(RETRY_PAUSE + self.timeout.min(RETRY_NEEDS)) {
            tracing::warn!(
                path = path_and_query,
                "{why}; no time left to retry before the deadline"
            );
            return first;
        }
        tracing::warn!(path = path_and_query, "{why}; retrying once");
        tokio::time::sleep(RETRY_PAUSE).await;
        self.send_once(&method, path_and_query, body).await
    }

    /// Sends, verifies and decodes. `Ok(None)` for a verified `204 No Content`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Option<T>, ClientError> {
        let body = match body {
            Some(b) => serde_json::to_string(b).map_err(|e| ClientError::Decode(e.to_string()))?,
            None => String::new(),
        };
        let answer = self.send(method, path_and_query, &body).await?;
        let verified = self.verify(&answer).await;
        if !(200..300).contains(&answer.status) {
            let err: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
            if let Err(e) = &verified {
                tracing::warn!(
                    status = answer.status,
                    "WeChat Pay error answer not verified: {e}"
                );
            }
            return Err(ClientError::Api {
                status: answer.status,
                code: if err.code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    err.code
                },
                message: if err.message.is_empty() {
                    format!("HTTP {}", answer.status)
                } else {
                    err.message
                },
                verified: verified.is_ok(),
            });
        }
        // Fail closed: a success we cannot verify is never used.
        verified?;
        if answer.status == 204 || answer.body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn verify(&self, answer: &RawAnswer) -> Result<(), VerifyError> {
        let sig = SignatureHeaders::from_headers(&answer.headers)?;
        self.keys.verify(&sig, &answer.body, self).await
    }

    pub async fn prepay(
        &self,
        trade_type: TradeType,
        req: &PrepayRequest,
    ) -> Result<PrepayResponse, ClientError> {
        self.call(reqwest::Method::POST, trade_type.path(), Some(req))
            .await?
            .ok_or_else(|| ClientError::Decode("empty prepay answer".into()))
    }

    /// A verified answer whose fields are out of WeChat Pay's documented format is not
    /// used: it is a failed call (502), never a value to store.
    fn checked<T>(
        answer: T,
        check: impl FnOnce(&T) -> Result<(), crate::formats::FormatError>,
    ) -> Result<T, ClientError> {
        check(&answer).map_err(|e| {
            tracing::error!("WeChat Pay answer out of format, not used: {e}");
            ClientError::Decode(format!("out of WeChat Pay's documented format: {e}"))
        })?;
        Ok(answer)
    }

    pub async fn query_by_out_trade_no(
        &self,
        out_trade_no: &str,
    ) -> Result<Transaction, ClientError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            seg(out_trade_no),
            seg(&self.mchid)
        );
        let tx = self
            .call(reqwest::Method::GET, &path, None::<&()>)
            .await?
            .ok_or_else(|| ClientError::Decode("empty query answer".into()))?;
        Self::checked(tx, Transaction::check_format)
    }

    pub async fn query_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Transaction, ClientError> {
        let path = format!(
            "/v3/pay/transactions/id/{}?mchid={}",
            seg(transaction_id),
            seg(&self.mchid)
        );
        let tx = self
            .call(reqwest::Method::GET, &path, None::<&()>)
            .await?
            .ok_or_else(|| ClientError::Decode("empty query answer".into()))?;
        Self::checked(tx, Transaction::check_format)
    }

    pub async fn close(&self, out_trade_no: &str) -> Result<(), ClientError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            seg(out_trade_no)
        );
        let body = CloseRequest {
            mchid: self.mchid.clone(),
        };
        self.call::<serde_json::Value>(reqwest::Method::POST, &path, Some(&body))
            .await
            .map(|_| ())
    }

    pub async fn create_refund(&self, req: &RefundRequest) -> Result<RefundInfo, ClientError> {
        self.call(
            reqwest::Method::POST,
            "/v3/refund/domestic/refunds",
            Some(req),
        )
        .await?
        .ok_or_else(|| ClientError::Decode("empty refund answer".into()))
        .and_then(|r| Self::checked(r, RefundInfo::check_format))
    }

    pub async fn query_refund(&self, out_refund_no: &str) -> Result<RefundInfo, ClientError> {
        let path = format!("/v3/refund/domestic/refunds/{}", seg(out_refund_no));
        self.call(reqwest::Method::GET, &path, None::<&()>)
            .await?
            .ok_or_else(|| ClientError::Decode("empty refund answer".into()))
            .and_then(|r| Self::checked(r, RefundInfo::check_format))
    }
}

#[async_trait]
impl CertificateSource for WechatPayClient {
    async fn download_certificates(&self) -> Result<RawAnswer, String> {
        self.send(reqwest::Method::GET, "/v3/certificates", "")
            .await
            .map_err(|e| e.to_string())
    }
}

fn classify(e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout
    } else {
        // Without the URL: it can carry query parameters an operator need not see twice.
        ClientError::Network(e.without_url().to_string())
    }
}
