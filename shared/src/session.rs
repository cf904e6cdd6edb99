//! Session tokens: what `wxpay_login` hands a mini-program after WeChat vouched for its
//! openid, and what identifies the payer on deployments where no gateway does.
//!
//! A token is `v1.<claims>.<mac>`: base64url JSON claims (`sub` openid, `aud` appid, `iat`,
//! `exp`) and an HMAC-SHA256 over `v1.<claims>` under `SESSION_SECRET`. It carries nothing
//! secret — never the `session_key` — and the MAC is checked in constant time before any
//! claim is believed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const VERSION: &str = "v1";
/// Longer input is not a token of ours; refuse before decoding anything.
const MAX_TOKEN_LEN: usize = 1024;

/// Why a presented token is not an identity. Each message tells the user what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the session token is malformed; log in again with wx.login() and wxpay_login")]
    Malformed,
    #[error(
        "the session token was not issued by this deployment or has been altered; log in again"
    )]
    BadSignature,
    #[error("the session token was issued for another app; log in again")]
    OtherApp,
    #[error("the session token expired; log in again")]
    Expired,
    #[error("session tokens are not enabled here: set SESSION_SECRET and WECHAT_APP_SECRET")]
    Disabled,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Issues and checks tokens for one app under one secret.
pub struct SessionTokens {
    key: hmac::Key,
    appid: String,
    ttl_secs: i64,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl SessionTokens {
    pub fn new(secret: &[u8], appid: &str, ttl: std::time::Duration) -> Self {
        SessionTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            appid: appid.to_string(),
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token naming `openid`, valid from `now` for the configured lifetime.
    pub fn issue(&self, openid: &str, now: OffsetDateTime) -> String {
        let iat = now.unix_timestamp();
        let claims = Claims {
            sub: openid.to_string(),
            aud: self.appid.clone(),
            iat,
            exp: iat.saturating_add(self.ttl_secs),
        };
        // Serialising four plain fields cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}", B64URL.encode(json));
        let mac = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64URL.encode(mac.as_ref()))
    }

    /// The openid a genuine, unexpired token of this app names.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (version, claims) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if version != VERSION {
            return Err(TokenError::Malformed);
        }
        let mac = B64URL.decode(mac).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        let claims = B64URL.decode(claims).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| TokenError::Malformed)?;
        if claims.aud != self.appid {
            return Err(TokenError::OtherApp);
        }
        if now.unix_timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tokens() -> SessionTokens {
        SessionTokens::new(SECRET, "wx8888888888888888", Duration::from_secs(3600))
    }

    #[test]
    fn a_token_names_the_openid_it_was_issued_for_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let token = tokens().issue("o_user_1", now);
        assert_eq!(tokens().verify(&token, now), Ok("o_user_1".to_string()));
        let later = now + time::Duration::seconds(3599);
        assert_eq!(tokens().verify(&token, later), Ok("o_user_1".to_string()));
        let expired = now + time::Duration::seconds(3600);
        assert_eq!(tokens().verify(&token, expired), Err(TokenError::Expired));
    }

    #[test]
    fn an_altered_token_is_refused() {
        let now = OffsetDateTime::now_utc();
        let token = tokens().issue("o_user_1", now);
        let (signed, mac) = token.rsplit_once('.').unwrap();
        // Another user's claims under the first user's MAC.
        let forged_claims = B64URL.encode(
            serde_json::to_vec(&Claims {
                sub: "o_victim".into(),
                aud: "wx8888888888888888".into(),
                iat: now.unix_timestamp(),
                exp: now.unix_timestamp() + 3600,
            })
            .unwrap(),
        );
        let forged = format!("v1.{forged_claims}.{mac}");
        assert_eq!(tokens().verify(&forged, now), Err(TokenError::BadSignature));
        // A flipped bit in the MAC.
        let mut raw = B64URL.decode(mac).unwrap();
        raw[0] ^= 1;
        let flipped = format!("{signed}.{}", B64URL.encode(raw));
        assert_eq!(
            tokens().verify(&flipped, now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_from_another_deployment_or_app_is_refused() {
        let now = OffsetDateTime::now_utc();
        let other_secret = SessionTokens::new(
            b"another-deployment-secret-000000",
            "wx8888888888888888",
            Duration::from_secs(3600),
        );
        let token = other_secret.issue("o_user_1", now);
        assert_eq!(tokens().verify(&token, now), Err(TokenError::BadSignature));

        let other_app = SessionTokens::new(SECRET, "wx0000000000000000", Duration::from_secs(3600));
        let token = other_app.issue("o_user_1", now);
        assert_eq!(tokens().verify(&token, now), Err(TokenError::OtherApp));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let now = OffsetDateTime::now_utc();
        for bad in [
            "",
            ".",
            "..",
            "v1..",
            "v2.e30.AAAA",
            "v1.@@.@@",
            "x".repeat(5000).as_str(),
        ] {
            assert!(tokens().verify(bad, now).is_err(), "{bad:?}");
        }
    }
}
