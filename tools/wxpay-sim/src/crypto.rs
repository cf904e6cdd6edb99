//! Primitive operations shared by the simulator: randomness, RSA-SHA256 signing and
//! verification, AES-256-GCM, identifiers and WeChat Pay's time format.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

const UPPER_ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const OPENID_CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
const DIGITS: &[u8] = b"0123456789";
const LOWER_HEX: &[u8] = b"0123456789abcdef";

/// Random bytes from the OS. A failing system RNG leaves nothing sensible to do in a
/// test tool, so it panics rather than returning an error every caller would unwrap.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random number generator failed");
    buf
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling keeps it unbiased).
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// The 32-character nonce WeChat Pay puts in `Wechatpay-Nonce`.
pub fn nonce32() -> String {
    random_from(UPPER_ALNUM, 32)
}

/// The 12-character nonce of AES-GCM resources (WeChat Pay uses printable ASCII).
pub fn nonce12() -> String {
    random_from(ALNUM, 12)
}

pub fn random_digits(len: usize) -> String {
    random_from(DIGITS, len)
}

pub fn random_lower_hex(len: usize) -> String {
    random_from(LOWER_HEX, len)
}

pub fn random_alnum(len: usize) -> String {
    random_from(ALNUM, len)
}

/// An openid-looking identifier: 28 characters starting with `o`.
pub fn random_openid() -> String {
    format!("o{}", random_from(OPENID_CHARS, 27))
}

/// A certificate serial as WeChat Pay prints it: 40 upper-hex digits. The first byte is
/// kept in 0x10..=0x7f so the DER INTEGER is exactly these 20 bytes (no sign padding, no
/// leading zero stripped) and the serial read back from the certificate is the same text.
pub fn random_serial() -> (Vec<u8>, String) {
    let mut bytes = random_bytes(20);
    bytes[0] = 0x10 + (bytes[0] % 0x70);
    let text = hex::encode_upper(&bytes);
    (bytes, text)
}

/// A uuid-shaped identifier for notification ids and request ids.
pub fn uuid_like() -> String {
    let h = random_lower_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// China Standard Time: WeChat Pay renders every `*_time` field at +08:00.
pub fn cst() -> UtcOffset {
    UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// Now, at +08:00, truncated to whole seconds as WeChat Pay reports times.
pub fn now_cst() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().to_offset(cst());
    now.replace_nanosecond(0).unwrap_or(now)
}

pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `2024-01-02T03:04:05+08:00`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(cst());
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// `yyyyMMdd` in China time, as embedded in transaction and refund ids.
pub fn date_digits(t: OffsetDateTime) -> String {
    let t = t.to_offset(cst());
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

/// `yyyyMMddHHmmss` in China time, as embedded in prepay ids.
pub fn datetime_digits(t: OffsetDateTime) -> String {
    let t = t.to_offset(cst());
    format!(
        "{}{:02}{:02}{:02}",
        date_digits(t),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RSA private key that signs with SHA256withRSA (PKCS#1 v1.5).
pub struct Signer {
    key: RsaKeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Signer, String> {
        let block = pem::parse(pem_text).map_err(|e| format!("bad PEM: {e}"))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(format!(
                "expected a PKCS#8 PRIVATE KEY, got {}",
                block.tag()
            ));
        }
        let key = RsaKeyPair::from_pkcs8(block.contents())
            .map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
        Ok(Signer { key })
    }

    /// The key's size in bytes (256 for RSA-2048).
    pub fn modulus_len(&self) -> usize {
        self.key.public().modulus_len()
    }

    /// base64 of the signature over `message`.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        // Signing only fails for a broken RNG or an unusable key, both ruled out when the
        // key was loaded; there is no request input here.
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut sig,
            )
            .expect("RSA signing failed");
        B64.encode(sig)
    }
}

/// An RSA public key that verifies SHA256withRSA signatures (ring wants PKCS#1 DER).
#[derive(Clone)]
pub struct Verifier {
    pkcs1_der: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// Accepts an SPKI `PUBLIC KEY` or a PKCS#1 `RSA PUBLIC KEY` PEM.
    pub fn from_pem(pem_text: &str) -> Result<Verifier, String> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let block =
            pem::parse(pem_text.trim()).map_err(|e| format!("not an RSA public key PEM: {e}"))?;
        let pkcs1_der = match block.tag() {
            "PUBLIC KEY" => {
                let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(block.contents())
                    .map_err(|e| format!("not an SPKI public key: {e}"))?;
                match spki.parsed() {
                    Ok(PublicKey::RSA(_)) => spki.subject_public_key.data.to_vec(),
                    Ok(_) => return Err("not an RSA public key".into()),
                    Err(e) => return Err(format!("not an RSA public key: {e}")),
                }
            }
            "RSA PUBLIC KEY" => block.contents().to_vec(),
            other => return Err(format!("expected a PUBLIC KEY PEM, got {other}")),
        };
        // Both shapes end as PKCS#1 RSAPublicKey DER: check it is one now, not at the
        // first signature.
        x509_parser::public_key::RSAPublicKey::from_der(&pkcs1_der)
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        Ok(Verifier { pkcs1_der })
    }

    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = B64.decode(signature_b64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.pkcs1_der)
            .verify(message, &sig)
            .is_ok()
    }
}

/// AES-256-GCM as WeChat Pay uses it: base64(ciphertext || 16-byte tag).
pub fn aes_gcm_encrypt(
    key: &[u8],
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, String> {
    let cipher =
        Aes256Gcm::new_from_slice(key).map_err(|_| "the APIv3 key must be 32 bytes".to_string())?;
    if nonce.len() != 12 {
        return Err("the AES-GCM nonce must be 12 bytes".into());
    }
    let out = cipher
        .encrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: plaintext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM encryption failed".to_string())?;
    Ok(B64.encode(out))
}

pub fn aes_gcm_decrypt(
    key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, String> {
    let cipher =
        Aes256Gcm::new_from_slice(key).map_err(|_| "the APIv3 key must be 32 bytes".to_string())?;
    if nonce.len() != 12 {
        return Err("the AES-GCM nonce must be 12 bytes".into());
    }
    let data = B64
        .decode(ciphertext_b64)
        .map_err(|e| format!("ciphertext is not base64: {e}"))?;
    cipher
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &data,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM authentication failed".to_string())
}

/// The message WeChat Pay signs on responses and notifications.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 64);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_have_the_requested_shape() {
        let n = nonce32();
        assert_eq!(n.len(), 32);
        assert!(n.bytes().all(|b| UPPER_ALNUM.contains(&b)));
        assert_eq!(nonce12().len(), 12);
        let (bytes, serial) = random_serial();
        assert_eq!(bytes.len(), 20);
        assert_eq!(serial.len(), 40);
        assert!((0x10..0x80).contains(&bytes[0]));
        assert_eq!(random_openid().len(), 28);
        assert_eq!(uuid_like().len(), 36);
    }

    #[test]
    fn times_are_rendered_at_plus_eight() {
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(format_time(t), "1970-01-01T08:00:00+08:00");
        assert_eq!(datetime_digits(t), "19700101080000");
    }

    #[test]
    fn aes_gcm_round_trips() {
        let key = [7u8; 32];
        let ct = aes_gcm_encrypt(&key, "abcdefghijkl", "transaction", b"hello").unwrap();
        let pt = aes_gcm_decrypt(&key, "abcdefghijkl", "transaction", &ct).unwrap();
        assert_eq!(pt, b"hello");
        assert!(aes_gcm_decrypt(&key, "abcdefghijkl", "refund", &ct).is_err());
    }
}
