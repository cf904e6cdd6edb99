//! WeChat Pay APIv3 cryptography: merchant request signing, response and notification
//! signature verification, AES-256-GCM resource decryption, and client pay signatures.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("private key is not a PEM or base64 PEM RSA key: {0}")]
    BadPrivateKey(String),
    #[error("public key is not a PEM RSA public key or certificate: {0}")]
    BadPublicKey(String),
    #[error("signing failed")]
    SignFailed,
    #[error("ciphertext is not valid base64")]
    BadCiphertext,
    #[error("decryption failed: wrong APIv3 key, nonce, associated data or tampered ciphertext")]
    DecryptFailed,
}

/// The merchant's private key, used to sign API requests and client pay parameters.
pub struct MerchantKey {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKey([redacted])")
    }
}

impl MerchantKey {
    /// Accepts PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM, with real
    /// or literal `\n` line breaks (how keys survive environment variables), or base64 of it.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let pem_text = normalize_pem_text(text)
            .ok_or_else(|| CryptoError::BadPrivateKey("no PEM block found".into()))?;
        let block = pem::parse(pem_text.as_bytes())
            .map_err(|e| CryptoError::BadPrivateKey(format!("PEM: {e}")))?;
        let key = match block.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
            other => {
                return Err(CryptoError::BadPrivateKey(format!(
                    "unexpected PEM block `{other}`"
                )))
            }
        }
        .map_err(|e| CryptoError::BadPrivateKey(format!("RSA: {e}")))?;
        Ok(MerchantKey {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// SHA256withRSA (PKCS#1 v1.5) over `message`, base64.
    pub fn sign(&self, message: &[u8]) -> Result<String, CryptoError> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| CryptoError::SignFailed)?;
        Ok(B64.encode(sig))
    }

    /// The matching public key as PKCS#1 DER (what [`VerifyKey`] takes), for self-checks.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public().as_ref().to_vec()
    }
}

/// A merchant request as WeChat Pay signs it.
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    /// The exact body sent; empty for GET.
    pub body: &'a str,
}

impl RequestToSign<'_> {
    /// `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`.
    pub fn message(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n",
            self.method, self.path_and_query, self.timestamp, self.nonce, self.body
        )
    }
}

/// The `Authorization` header value for a merchant request.
pub fn authorization_header(
    key: &MerchantKey,
    mchid: &str,
    serial_no: &str,
    request: &RequestToSign<'_>,
) -> Result<String, CryptoError> {
    let signature = key.sign(request.message().as_bytes())?;
    Ok(format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{}\",signature=\"{signature}\",timestamp=\"{}\",serial_no=\"{serial_no}\"",
        request.nonce, request.timestamp
    ))
}

/// JSAPI / mini-program `paySign`: signs `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn jsapi_pay_sign(
    key: &MerchantKey,
    app_id: &str,
    time_stamp: &str,
    nonce_str: &str,
    package: &str,
) -> Result<String, CryptoError> {
    key.sign(format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n").as_bytes())
}

/// APP `sign`: signs `appid\ntimestamp\nnoncestr\nprepayid\n`.
pub fn app_pay_sign(
    key: &MerchantKey,
    app_id: &str,
    timestamp: &str,
    nonce_str: &str,
    prepay_id: &str,
) -> Result<String, CryptoError> {
    key.sign(format!("{app_id}\n{timestamp}\n{nonce_str}\n{prepay_id}\n").as_bytes())
}

/// The message WeChat Pay signs on responses and notifications: `TIMESTAMP\nNONCE\nBODY\n`,
/// with the body exactly as received.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// An RSA public key WeChat Pay signs with (platform certificate or WeChat Pay public key).
#[derive(Clone)]
pub struct VerifyKey {
    /// PKCS#1 `RSAPublicKey` DER, the form ring verifies with.
    pkcs1_der: Vec<u8>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyKey")
    }
}

impl VerifyKey {
    pub fn from_pkcs1_der(der: Vec<u8>) -> Self {
        VerifyKey { pkcs1_der: der }
    }

    /// From a `BEGIN PUBLIC KEY` (SPKI) PEM, literal `\n` and base64-of-PEM accepted.
    pub fn from_public_key_pem(text: &str) -> Result<Self, CryptoError> {
        let pem_text = normalize_pem_text(text)
            .ok_or_else(|| CryptoError::BadPublicKey("no PEM block found".into()))?;
        let block = pem::parse(pem_text.as_bytes())
            .map_err(|e| CryptoError::BadPublicKey(format!("PEM: {e}")))?;
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(block.contents()),
            "RSA PUBLIC KEY" => Ok(Self::from_pkcs1_der(block.contents().to_vec())),
            other => Err(CryptoError::BadPublicKey(format!(
                "unexpected PEM block `{other}`"
            ))),
        }
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| CryptoError::BadPublicKey(format!("SPKI: {e}")))?;
        Ok(Self::from_pkcs1_der(spki.subject_public_key.data.to_vec()))
    }

    /// Verifies a base64 SHA256withRSA signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = B64.decode(signature_b64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.pkcs1_der)
            .verify(message, &sig)
            .is_ok()
    }
}

/// The 32-byte APIv3 key that encrypts notification resources and downloaded certificates.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key([redacted])")
    }
}

impl ApiV3Key {
    /// The key is used as its 32 ASCII bytes, exactly as set in the merchant portal.
    pub fn new(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = text.as_bytes().try_into().ok()?;
        Some(ApiV3Key(bytes))
    }

    /// AEAD_AES_256_GCM: `ciphertext_b64` is the ciphertext with the 16-byte tag appended.
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let data = B64
            .decode(ciphertext_b64.trim())
            .map_err(|_| CryptoError::BadCiphertext)?;
        if nonce.len() != 12 {
            return Err(CryptoError::DecryptFailed);
        }
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|_| CryptoError::DecryptFailed)?;
        cipher
            .decrypt(
                Nonce::from_slice(nonce.as_bytes()),
                Payload {
                    msg: &data,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::DecryptFailed)
    }
}

/// Turns what people paste into environment variables back into PEM text: literal `\n`
/// sequences, surrounding quotes, or the whole PEM base64-encoded once more.
pub(crate) fn normalize_pem_text(text: &str) -> Option<String> {
    let trimmed = text.trim().trim_matches('"').trim();
    if trimmed.contains("-----BEGIN") {
        return Some(trimmed.replace("\\r\\n", "\n").replace("\\n", "\n"));
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = B64.decode(compact).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    decoded.contains("-----BEGIN").then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let text = include_str!("../tests/data/wechatpay-published.json");
        serde_json::from_str(text).expect("vectors parse")
    }

    fn vector_key(v: &Value) -> MerchantKey {
        MerchantKey::from_text(v["pay_sign"]["private_key_pkcs8_pem"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn jsapi_pay_sign_matches_published_vector() {
        let v = vectors();
        let p = &v["pay_sign"];
        let key = vector_key(&v);
        let package = format!("prepay_id={}", p["prepay_id"].as_str().unwrap());
        let sign = jsapi_pay_sign(
            &key,
            p["app_id"].as_str().unwrap(),
            p["time_stamp"].as_str().unwrap(),
            p["nonce_str"].as_str().unwrap(),
            &package,
        )
        .unwrap();
        assert_eq!(sign, p["jsapi_pay_sign"].as_str().unwrap());
    }

    #[test]
    fn app_sign_matches_published_vector() {
        let v = vectors();
        let p = &v["pay_sign"];
        let key = vector_key(&v);
        let sign = app_pay_sign(
            &key,
            p["app_id"].as_str().unwrap(),
            p["time_stamp"].as_str().unwrap(),
            p["nonce_str"].as_str().unwrap(),
            p["prepay_id"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(sign, p["app_sign"].as_str().unwrap());
    }

    #[test]
    fn signature_verifies_with_matching_public_key_only() {
        let v = vectors();
        let key = vector_key(&v);
        let verify = VerifyKey::from_pkcs1_der(key.public_key_der());
        let msg = v["pay_sign"]["jsapi_message"].as_str().unwrap().as_bytes();
        let sig = v["pay_sign"]["jsapi_pay_sign"].as_str().unwrap();
        assert!(verify.verify(msg, sig));
        assert!(!verify.verify(b"tampered", sig));
        assert!(!verify.verify(msg, "not base64!"));
    }

    #[test]
    fn private_key_accepts_literal_newlines_and_base64() {
        let v = vectors();
        let pem_text = v["pay_sign"]["private_key_pkcs8_pem"].as_str().unwrap();
        let escaped = pem_text.replace('\n', "\\n");
        assert!(MerchantKey::from_text(&escaped).is_ok());
        let b64 = B64.encode(pem_text);
        assert!(MerchantKey::from_text(&b64).is_ok());
        let err = MerchantKey::from_text("not a key").unwrap_err();
        assert!(err.to_string().contains("private key"));
    }

    #[test]
    fn aes_gcm_matches_published_vector() {
        let v = vectors();
        let a = &v["aes_256_gcm"];
        let key = ApiV3Key::new(a["key"].as_str().unwrap()).unwrap();
        let plain = key
            .decrypt(
                a["nonce"].as_str().unwrap(),
                a["associated_data"].as_str().unwrap(),
                a["ciphertext_b64"].as_str().unwrap(),
            )
            .unwrap();
        assert_eq!(plain, a["plaintext"].as_str().unwrap().as_bytes());
        // Wrong associated data must fail: the tag covers it.
        assert!(key
            .decrypt(
                a["nonce"].as_str().unwrap(),
                "other",
                a["ciphertext_b64"].as_str().unwrap()
            )
            .is_err());
    }

    #[test]
    fn apiv3_key_must_be_32_bytes() {
        assert!(ApiV3Key::new("short").is_none());
        assert!(ApiV3Key::new(&"k".repeat(32)).is_some());
    }
}
