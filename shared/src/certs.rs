//! The keys WeChat Pay signs with (contract §6, §10), kept in warm memory.
//!
//! A `Wechatpay-Serial` of `PUB_KEY_ID_…` selects the configured WeChat Pay public key; any
//! other serial selects a platform certificate, downloaded from `/v3/certificates` when first
//! needed, refreshed every 12 hours and when an unknown serial arrives (one download at a
//! time, at most one forced download a minute, so forged serials cannot make us hammer
//! WeChat Pay).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use time::OffsetDateTime;

use crate::api::CertificatesResponse;
use crate::crypto::{response_message, ApiV3Key, VerifyKey};

/// The WeChat Pay public key of contract §6, §10, or a pinned platform certificate, as
/// configured (`WECHAT_PUBLIC_KEY`).
#[derive(Debug, Clone)]
pub enum ConfiguredPlatformKey {
    /// `PUB_KEY_ID_...` and the key it names.
    PublicKey { id: String, key: VerifyKey },
    /// A platform certificate given in `WECHAT_PUBLIC_KEY`; its serial identifies it, and
    /// it is used only within its validity.
    Certificate {
        serial: String,
        key: VerifyKey,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    },
}

/// Responses and notifications older or newer than this are refused (replay protection).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
const REFRESH_EVERY: Duration = Duration::from_secs(12 * 3600);
const MIN_FORCED_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("Wechatpay-Signature-Type {0:?} is not {SIGNATURE_TYPE}")]
    UnsupportedSignatureType(String),
    #[error("signature probe (WECHATPAY/SIGNTEST) refused")]
    Probe,
    #[error("Wechatpay-Timestamp is not within {MAX_CLOCK_SKEW_SECS} s of now")]
    StaleTimestamp,
    #[error("unknown Wechatpay-Serial {0}")]
    UnknownSerial(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("platform certificates unavailable: {0}")]
    CertificatesUnavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a PEM certificate: {0}")]
    BadPem(String),
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("certificate download: {0}")]
    Download(String),
}

/// The only algorithm we verify. WeChat Pay names it in `Wechatpay-Signature-Type` on every
/// answer and notification; another name (its SM2 scheme, say) is refused rather than
/// checked with the wrong algorithm, and so is an answer that names none, as the Python
/// and Java SDKs do.
pub const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";

/// Longer than any serial WeChat Pay writes (certificate serials are 40 hex digits).
const MAX_SERIAL_LEN: usize = 64;

/// The headers WeChat Pay signs with (the algorithm already checked).
#[derive(Debug, Clone)]
pub struct SignatureHeaders {
    pub serial: String,
    pub signature: String,
    pub timestamp: String,
    pub nonce: String,
}

impl SignatureHeaders {
    pub fn from_headers(h: &http::HeaderMap) -> Result<Self, VerifyError> {
        let get = |name: &'static str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingHeader(name))
        };
        let signature_type = get("wechatpay-signature-type")?;
        if signature_type != SIGNATURE_TYPE {
            // Bounded: the value may come from anyone who can reach the notify URL.
            let shown: String = signature_type.chars().take(64).collect();
            return Err(VerifyError::UnsupportedSignatureType(shown));
        }
        let signature = get("wechatpay-signature")?;
        let serial = get("wechatpay-serial")?;
        // A serial is 40 hex digits or a `PUB_KEY_ID_…`; anything longer or stranger names
        // no key, and is refused here, bounded, before it is echoed in an answer or a log line.
        if serial.len() > MAX_SERIAL_LEN
            || !serial
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            let shown: String = serial.chars().take(MAX_SERIAL_LEN).collect();
            return Err(VerifyError::UnknownSerial(shown));
        }
        Ok(SignatureHeaders {
            signature,
            serial,
            timestamp: get("wechatpay-timestamp")?,
            nonce: get("wechatpay-nonce")?,
        })
    }

    /// Probe and freshness checks that need no key; done before any certificate work.
    pub fn precheck(&self, now: OffsetDateTime) -> Result<(), VerifyError> {
        if self.signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err(VerifyError::Probe);
        }
        // Digits only: no sign, no spaces, no `+`, no leading zero (a second current Unix
        // time is written one way only); at most 12 of them (year 33658).
        let digits = &self.timestamp;
        if digits.is_empty()
            || digits.len() > 12
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(VerifyError::StaleTimestamp);
        }
        let ts: i64 = digits.parse().map_err(|_| VerifyError::StaleTimestamp)?;
        if now.unix_timestamp().abs_diff(ts) >= MAX_CLOCK_SKEW_SECS.unsigned_abs() {
            return Err(VerifyError::StaleTimestamp);
        }
        Ok(())
    }
}

/// A platform certificate: who signs, with what key, until when.
#[derive(Debug, Clone)]
pub struct PlatformCert {
    pub serial: String,
    pub key: VerifyKey,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

pub fn looks_like_base64_certificate(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|s| s.contains("BEGIN CERTIFICATE"))
}

/// Parses a PEM certificate (literal `\n` and base64-of-PEM accepted, as for keys).
pub fn parse_certificate_pem(text: &str) -> Result<PlatformCert, CertError> {
    let mut pem_text = text.trim().trim_matches('"').replace("\\n", "\n");
    if !pem_text.contains("-----BEGIN") {
        let compact: String = pem_text.chars().filter(|c| !c.is_whitespace()).collect();
        pem_text = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CertError::BadPem("neither PEM nor base64 of PEM".into()))?;
    }
    let block = pem::parse(pem_text.as_bytes()).map_err(|e| CertError::BadPem(e.to_string()))?;
    if block.tag() != "CERTIFICATE" {
        return Err(CertError::BadPem(format!(
            "unexpected block `{}`",
            block.tag()
        )));
    }
    parse_certificate_der(block.contents())
}

pub fn parse_certificate_der(der: &[u8]) -> Result<PlatformCert, CertError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| CertError::BadCertificate(e.to_string()))?;
    // DER prefixes a 0x00 when the high bit is set; WeChat Pay serials are 40 hex digits.
    let raw = cert.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let mut serial = hex::encode_upper(&raw[first..]);
    while serial.len() < 40 {
        serial.insert(0, '0');
    }
    let key = VerifyKey::from_pkcs1_der(cert.public_key().subject_public_key.data.to_vec());
    let validity = cert.validity();
    Ok(PlatformCert {
        serial,
        key,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
    })
}

/// Decrypts and parses every certificate of a `/v3/certificates` answer.
pub fn decrypt_certificates(
    resp: &CertificatesResponse,
    apiv3_key: &ApiV3Key,
) -> Result<Vec<PlatformCert>, CertError> {
    resp.data
        .iter()
        .map(|entry| {
            let enc = &entry.encrypt_certificate;
            let plain = apiv3_key
                .decrypt(
                    &enc.nonce,
                    enc.associated_data.as_deref().unwrap_or(""),
                    &enc.ciphertext,
                )
                .map_err(|e| {
                    CertError::Download(format!("certificate {}: {e}", entry.serial_no))
                })?;
            let text = String::from_utf8(plain)
                .map_err(|_| CertError::Download("certificate is not text".into()))?;
            let cert = parse_certificate_pem(&text)?;
            if !cert.serial.eq_ignore_ascii_case(&entry.serial_no) {
                return Err(CertError::Download(format!(
                    "certificate serial {} does not match its entry {}",
                    cert.serial, entry.serial_no
                )));
            }
            Ok(cert)
        })
        .collect()
}

/// An unverified HTTP answer, for the certificate download.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// Where certificates come from (the WeChat Pay client); a trait so the cache does not
/// depend on HTTP.
#[async_trait]
pub trait CertificateSource: Send + Sync {
    async fn download_certificates(&self) -> Result<RawAnswer, String>;
}

impl CertCache {
    /// A cached certificate's key, if it is valid now (however old the cache is).
    fn cached_key(&self, serial: &str, now: OffsetDateTime) -> Option<VerifyKey> {
        self.by_serial
            .get(&serial.to_ascii_uppercase())
            .filter(|c| c.not_before <= now && c.not_after > now)
            .map(|c| c.key.clone())
    }
}

struct CertCache {
    by_serial: HashMap<String, PlatformCert>,
    fetched_at: Option<Instant>,
    last_forced: Option<Instant>,
    last_failed: Option<Instant>,
}

/// The verifying keys, in warm memory for the life of the instance.
pub struct PlatformKeys {
    configured: Option<ConfiguredPlatformKey>,
    apiv3_key: ApiV3Key,
    cache: Mutex<CertCache>,
    download_lock: tokio::sync::Mutex<()>,
}

enum Lookup {
    Found(VerifyKey),
    Missing { stale: bool },
}

impl PlatformKeys {
    pub fn new(configured: Option<ConfiguredPlatformKey>, apiv3_key: ApiV3Key) -> Self {
        PlatformKeys {
            configured,
            apiv3_key,
            cache: Mutex::new(CertCache {
                by_serial: HashMap::new(),
                fetched_at: None,
                last_forced: None,
                last_failed: None,
            }),
            download_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CertCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured key for `serial`; a pinned certificate only while it is valid.
    fn configured_key(&self, serial: &str, now: OffsetDateTime) -> Option<VerifyKey> {
        match &self.configured {
            Some(ConfiguredPlatformKey::PublicKey { id, key }) if id == serial => Some(key.clone()),
            Some(ConfiguredPlatformKey::Certificate {
                serial: s,
                key,
                not_before,
                not_after,
            }) if s.eq_ignore_ascii_case(serial) => {
                if *not_before <= now && now < *not_after {
                    Some(key.clone())
                } else {
                    tracing::error!(serial, %not_after, "the pinned platform certificate (WECHAT_PUBLIC_KEY) is not valid now: not used");
                    None
                }
            }
            _ => None,
        }
    }

    fn lookup(&self, serial: &str, now: OffsetDateTime) -> Lookup {
        let c = self.lock();
        let stale = c.fetched_at.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
        match c.cached_key(serial, now) {
            Some(key) if !stale => Lookup::Found(key),
            _ => Lookup::Missing { stale },
        }
    }

    /// The key for `serial`, downloading certificates if needed and allowed.
    async fn key_for(
        &self,
        serial: &str,
        source: &dyn CertificateSource,
        now: OffsetDateTime,
    ) -> Result<VerifyKey, VerifyError> {
        if let Some(key) = self.configured_key(serial, now) {
            return Ok(key);
        }
        if serial.starts_with("PUB_KEY_ID_") {
            // Only the configured public key can answer for a public-key id.
            return Err(VerifyError::UnknownSerial(serial.to_string()));
        }
        if let Lookup::Found(key) = self.lookup(serial, now) {
            return Ok(key);
        }
        let _one_at_a_time = self.download_lock.lock().await;
        // Someone may have downloaded while we waited.
        let stale = match self.lookup(serial, now) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Missing { stale } => stale,
        };
        if !stale {
            // Unknown serial on a fresh cache: a forced refresh, at most once a minute.
            let mut c = self.lock();
            if c.last_forced
                .is_some_and(|t| t.elapsed() < MIN_FORCED_INTERVAL)
            {
                return Err(VerifyError::UnknownSerial(serial.to_string()));
            }
            c.last_forced = Some(Instant::now());
        } else {
            // A download that just failed is not retried on every call: WeChat Pay is
            // having trouble, and forged serials must not turn that into a flood.
            let c = self.lock();
            if c.last_failed
                .is_some_and(|t| t.elapsed() < MIN_FORCED_INTERVAL)
            {
                return c.cached_key(serial, now).ok_or_else(|| {
                    VerifyError::CertificatesUnavailable(
                        "the last download failed less than a minute ago".into(),
                    )
                });
            }
        }
        let downloaded = self.download(source, now).await;
        let mut c = self.lock();
        if let Err(e) = downloaded {
            c.last_failed = Some(Instant::now());
            // A failed periodic refresh keeps the certificates we had.
            if let Some(key) = c.cached_key(serial, now) {
                tracing::warn!("certificate refresh failed, keeping cached certificates: {e}");
                return Ok(key);
            }
            return Err(e);
        }
        c.last_failed = None;
        drop(c);
        match self.lookup(serial, now) {
            Lookup::Found(key) => Ok(key),
            Lookup::Missing { .. } => Err(VerifyError::UnknownSerial(serial.to_string())),
        }
    }

    /// Downloads, decrypts and verifies the certificate list, then installs it.
    async fn download(
        &self,
        source: &dyn CertificateSource,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        let unavailable = |m: String| VerifyError::CertificatesUnavailable(m);
        let answer = source.download_certificates().await.map_err(unavailable)?;
        if answer.status == 404 {
            // Merchants on public-key mode have no platform certificate; nothing to install.
            let mut c = self.lock();
            c.fetched_at = Some(Instant::now());
            return Ok(());
        }
        if answer.status != 200 {
            return Err(unavailable(format!(
                "/v3/certificates answered HTTP {}",
                answer.status
            )));
        }
        let parsed: CertificatesResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| unavailable(format!("unexpected certificate list: {e}")))?;
        let certs = decrypt_certificates(&parsed, &self.apiv3_key)
            .map_err(|e| unavailable(e.to_string()))?;
        // The answer must be signed by one of the certificates it carries (or a key we
        // already trust): otherwise anyone who can answer could plant a key. An answer
        // that does not verify means no certificates, which WeChat Pay retries (503),
        // not a bad notification.
        self.verify_download(&answer, &certs, now)
            .map_err(|e| unavailable(format!("the certificate list did not verify: {e}")))?;
        let mut c = self.lock();
        c.by_serial.retain(|_, cert| cert.not_after > now);
        for cert in certs.into_iter().filter(|c| c.not_after > now) {
            c.by_serial.insert(cert.serial.to_ascii_uppercase(), cert);
        }
        c.fetched_at = Some(Instant::now());
        Ok(())
    }

    fn verify_download(
        &self,
        answer: &RawAnswer,
        certs: &[PlatformCert],
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        let sig = SignatureHeaders::from_headers(&answer.headers)?;
        sig.precheck(now)?;
        let signer = certs
            .iter()
            .find(|c| c.serial.eq_ignore_ascii_case(&sig.serial))
            .map(|c| c.key.clone())
            .or_else(|| self.configured_key(&sig.serial, now))
            .or_else(|| {
                self.lock()
                    .by_serial
                    .get(&sig.serial.to_ascii_uppercase())
                    .map(|c| c.key.clone())
            })
            .ok_or_else(|| VerifyError::UnknownSerial(sig.serial.clone()))?;
        let message = response_message(&sig.timestamp, &sig.nonce, &answer.body);
        if signer.verify(&message, &sig.signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Verifies a response or notification per contract §6, §10, downloading certificates if needed.
    pub async fn verify(
        &self,
        sig: &SignatureHeaders,
        body: &[u8],
        source: &dyn CertificateSource,
    ) -> Result<(), VerifyError> {
        let now = OffsetDateTime::now_utc();
        sig.precheck(now)?;
        let key = self.key_for(&sig.serial, source, now).await?;
        let message = response_message(&sig.timestamp, &sig.nonce, body);
        if key.verify(&message, &sig.signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
