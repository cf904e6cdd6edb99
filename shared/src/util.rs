//! Small helpers shared by several modules: randomness, secrets, time.

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random characters of `[0-9A-Za-z]` from the OS RNG.
pub fn random_alnum(len: usize) -> String {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        // The OS RNG failing is not something a caller can cause; there is no safe fallback.
        rng.fill(&mut buf).expect("operating system RNG failed");
        for b in buf {
            // Rejection sampling keeps the distribution uniform (248 = 62 * 4).
            if b < 248 && out.len() < len {
                out.push(ALNUM[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A fresh `out_trade_no`/`out_refund_no`: `prefix` + UTC time + randomness, 32 chars of
/// `[0-9A-Za-z]` at most, sortable by creation time, unguessable.
pub fn new_reference(prefix: &str) -> String {
    let now = OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let prefix: String = prefix.chars().take(4).collect();
    let rest = 32 - prefix.len() - stamp.len();
    format!("{prefix}{stamp}{}", random_alnum(rest))
}

/// Constant-time comparison of a presented secret with the configured one.
pub fn secret_eq(presented: &str, expected: &str) -> bool {
    // Lengths leak through timing anyway; comparing digests hides even that.
    let a = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
    let b = ring::digest::digest(&ring::digest::SHA256, expected.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

/// Whether `s` is a valid merchant reference (`out_trade_no`, `out_refund_no`):
/// 6–32 characters of `[0-9A-Za-z_-]`.
pub fn is_valid_reference(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` looks like an openid: 1–128 characters of `[0-9A-Za-z_-]` (WeChat's are 28).
pub fn is_valid_openid(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Parses WeChat Pay's RFC 3339 times (`2018-06-08T10:34:56+08:00`).
pub fn parse_wechat_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_valid_and_unique() {
        let a = new_reference("WX");
        let b = new_reference("WX");
        assert!(is_valid_reference(&a), "{a}");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn reference_rules() {
        assert!(!is_valid_reference("abc"));
        assert!(!is_valid_reference("abc def1"));
        assert!(!is_valid_reference(&"a".repeat(33)));
        assert!(is_valid_reference("order_2024-01"));
    }

    #[test]
    fn secret_comparison() {
        assert!(secret_eq("s3cret", "s3cret"));
        assert!(!secret_eq("s3cret", "s3cres"));
        assert!(!secret_eq("", "s3cret"));
    }
}
