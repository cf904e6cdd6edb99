//! Notifications WeChat Pay POSTs to the merchant, and ways to tamper with them.

use std::sync::Arc;

use serde_json::Value;

use crate::crypto;
use crate::platform::Identity;

/// What to put in a notification: the plaintext is encrypted into `resource`.
#[derive(Debug, Clone)]
pub struct NotificationEvent {
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`...
    pub event_type: String,
    /// `transaction` or `refund`; also used as the AES-GCM associated data.
    pub original_type: String,
    pub plaintext: Value,
}

/// What the merchant's endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOutcome {
    pub status: u16,
    pub body: String,
}

/// Which key a notification is signed with.
#[derive(Clone)]
pub(crate) enum SigningKey {
    Platform(Arc<Identity>),
    Foreign,
}

impl SigningKey {
    fn sign(&self, message: &[u8]) -> String {
        match self {
            SigningKey::Platform(id) => id.signer.sign_base64(message),
            SigningKey::Foreign => crate::keys::foreign_signer().sign_base64(message),
        }
    }
}

/// A notification ready to deliver: exact headers and body as they go on the wire.
#[derive(Clone)]
pub struct SignedNotification {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub(crate) key: SigningKey,
}

impl std::fmt::Debug for SignedNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedNotification")
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

impl SignedNotification {
    pub(crate) fn build(identity: Arc<Identity>, body: String) -> SignedNotification {
        let timestamp = crypto::unix_now().to_string();
        let nonce = crypto::nonce32();
        let key = SigningKey::Platform(identity.clone());
        let signature = key.sign(&crypto::response_message(
            &timestamp,
            &nonce,
            body.as_bytes(),
        ));
        SignedNotification {
            headers: vec![
                ("Wechatpay-Serial".into(), identity.serial.clone()),
                ("Wechatpay-Signature".into(), signature),
                ("Wechatpay-Timestamp".into(), timestamp),
                ("Wechatpay-Nonce".into(), nonce),
                (
                    "Wechatpay-Signature-Type".into(),
                    "WECHATPAY2-SHA256-RSA2048".into(),
                ),
                ("Content-Type".into(), "application/json".into()),
            ],
            body,
            key,
        }
    }

    /// The header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: String) {
        match self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.headers.push((name.to_string(), value)),
        }
    }

    /// Sets (or adds) a header without re-signing.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.set_header(&name, value.into());
        self
    }

    /// Drops a header (e.g. to test a notification missing `Wechatpay-Signature`).
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the body but keeps the old signature: a forged notification.
    pub fn with_body(mut self, body: String) -> Self {
        self.body = body;
        self
    }

    /// Re-signs the current body with a key unrelated to the simulator, keeping the serial.
    pub fn signed_by_foreign_key(mut self) -> Self {
        self.key = SigningKey::Foreign;
        self.resign();
        self
    }

    /// Validly re-signs the current body with this timestamp (for staleness tests).
    pub fn with_timestamp(mut self, ts: i64) -> Self {
        self.set_header("Wechatpay-Timestamp", ts.to_string());
        self.resign();
        self
    }

    /// Changes `Wechatpay-Serial` only; the signature stays that of the original key.
    pub fn with_serial(self, serial: impl Into<String>) -> Self {
        self.with_header("Wechatpay-Serial", serial)
    }

    /// Turns the notification into a signature probe: WeChat Pay occasionally sends
    /// `WECHATPAY/SIGNTEST/...` signatures that merchants must reject.
    pub fn as_sign_test_probe(self) -> Self {
        let sig = format!("WECHATPAY/SIGNTEST/{}", crypto::random_alnum(64));
        self.with_header("Wechatpay-Signature", sig)
    }

    /// The same notification signed anew with a fresh timestamp and nonce, as a retry is
    /// sent (one sent hours later must still be within the merchant's ±300 s).
    pub(crate) fn refreshed(&self) -> SignedNotification {
        let mut n = self.clone();
        n.set_header("Wechatpay-Timestamp", crypto::unix_now().to_string());
        n.set_header("Wechatpay-Nonce", crypto::nonce32());
        n.resign();
        n
    }

    /// Re-signs `Wechatpay-Timestamp`, `Wechatpay-Nonce` and the current body.
    pub fn resign(&mut self) {
        let ts = self
            .header("Wechatpay-Timestamp")
            .unwrap_or_default()
            .to_string();
        let nonce = self
            .header("Wechatpay-Nonce")
            .unwrap_or_default()
            .to_string();
        let sig = self
            .key
            .sign(&crypto::response_message(&ts, &nonce, self.body.as_bytes()));
        self.set_header("Wechatpay-Signature", sig);
    }
}

pub(crate) fn summary_for(event_type: &str) -> &'static str {
    match event_type {
        "TRANSACTION.SUCCESS" => "支付成功",
        "REFUND.SUCCESS" => "退款成功",
        "REFUND.ABNORMAL" => "退款异常",
        "REFUND.CLOSED" => "退款关闭",
        _ => "通知",
    }
}
