//! Misbehaviour on demand: the next answers to the merchant fail the way WeChat Pay (or
//! the network) sometimes does. Armed from Rust ([`Simulator::inject_fault`]) or over the
//! control API, so a harness in any language can use them:
//!
//! `POST /sim/faults` with
//! `{"path": "/v3/pay/transactions/jsapi", "times": 1, "kind": "status", "status": 500,
//!   "code": "SYSTEM_ERROR", "message": "系统错误"}`; `DELETE /sim/faults` clears them.
//!
//! [`Simulator::inject_fault`]: crate::Simulator::inject_fault

use std::time::Duration;

use serde::Deserialize;

/// Misbehaviour to apply to the next merchant request(s) whose path starts with
/// `path_prefix` (query string excluded).
#[derive(Debug, Clone)]
pub struct Fault {
    pub path_prefix: String,
    /// How many matching requests it applies to.
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    pub fn new(path_prefix: impl Into<String>, times: usize, kind: FaultKind) -> Fault {
        Fault {
            path_prefix: path_prefix.into(),
            times,
            kind,
        }
    }
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer `(status, code, message)` as a signed error body without touching state.
    Status(u16, String, String),
    /// Process the request, then hold the answer back this long.
    Delay(Duration),
    /// Process the request; the answer carries a well-formed signature that does not verify.
    BadSignature,
    /// Process the request; the answer has no `Wechatpay-*` signature headers.
    Unsigned,
    /// Process the request; the signature is a `WECHATPAY/SIGNTEST/...` probe.
    SignTestProbe,
    /// Process the request; the answer is signed as usual but its `Wechatpay-Signature-Type`
    /// names this algorithm instead (empty: the header is left out).
    SignatureType(String),
    /// Drop the connection without answering (the request is not processed).
    Disconnect,
}

impl FaultKind {
    pub fn status(status: u16, code: impl Into<String>, message: impl Into<String>) -> FaultKind {
        FaultKind::Status(status, code.into(), message.into())
    }
}

/// What a harness sends; `kind` picks which of the other fields matter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    /// Requests whose path (query excluded) starts with this are affected.
    path: String,
    #[serde(default = "one")]
    times: usize,
    kind: String,
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    delay_ms: Option<u64>,
    signature_type: Option<String>,
}

fn one() -> usize {
    1
}

pub(crate) const KINDS: &str =
    "status, delay, bad_signature, unsigned, signtest_probe, signature_type, disconnect";

/// Reads a fault from a control API body; the error says what to fix.
pub(crate) fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    let spec: FaultSpec =
        serde_json::from_slice(body).map_err(|e| format!("not a fault description: {e}"))?;
    if !spec.path.starts_with('/') {
        return Err(format!("path must start with /, got `{}`", spec.path));
    }
    if spec.times == 0 {
        return Err("times must be at least 1".into());
    }
    let kind = match spec.kind.as_str() {
        "status" => {
            let status = spec.status.ok_or("kind status needs `status`")?;
            if !(400..=599).contains(&status) {
                return Err(format!("status must be 400..599, got {status}"));
            }
            FaultKind::Status(
                status,
                spec.code.unwrap_or_else(|| "SYSTEM_ERROR".into()),
                spec.message.unwrap_or_else(|| "系统错误".into()),
            )
        }
        "delay" => FaultKind::Delay(Duration::from_millis(
            spec.delay_ms.ok_or("kind delay needs `delay_ms`")?,
        )),
        "bad_signature" => FaultKind::BadSignature,
        "unsigned" => FaultKind::Unsigned,
        "signtest_probe" => FaultKind::SignTestProbe,
        "signature_type" => {
            let named = spec
                .signature_type
                .ok_or("kind signature_type needs `signature_type` (\"\" leaves the header out)")?;
            // It becomes a header value: printable ASCII only, or the answer itself breaks.
            if !named.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err("signature_type must be printable ASCII".into());
            }
            FaultKind::SignatureType(named)
        }
        "disconnect" => FaultKind::Disconnect,
        other => return Err(format!("unknown kind `{other}` ({KINDS})")),
    };
    Ok(Fault::new(spec.path, spec.times, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_and_refuses_what_it_cannot_apply() {
        let f = parse_fault(br#"{"path":"/v3/pay/","kind":"status","status":500}"#).unwrap();
        assert_eq!(f.times, 1);
        assert!(matches!(f.kind, FaultKind::Status(500, ref c, _) if c == "SYSTEM_ERROR"));
        let f =
            parse_fault(br#"{"path":"/v3/","times":2,"kind":"delay","delay_ms":1500}"#).unwrap();
        assert!(matches!(f.kind, FaultKind::Delay(d) if d == Duration::from_millis(1500)));
        let f = parse_fault(
            br#"{"path":"/v3/","kind":"signature_type","signature_type":"WECHATPAY2-SM2-WITH-SM3"}"#,
        )
        .unwrap();
        assert!(
            matches!(f.kind, FaultKind::SignatureType(ref t) if t == "WECHATPAY2-SM2-WITH-SM3")
        );
        for bad in [
            &br#"{"path":"/v3/","kind":"status"}"#[..],
            br#"{"path":"/v3/","kind":"status","status":200}"#,
            br#"{"path":"v3","kind":"unsigned"}"#,
            br#"{"path":"/v3/","kind":"unsigned","times":0}"#,
            br#"{"path":"/v3/","kind":"explode"}"#,
            br#"{"path":"/v3/","kind":"unsigned","typo":1}"#,
            br#"{"path":"/v3/","kind":"signature_type","signature_type":"A\r\nX-Evil: 1"}"#,
            b"not json",
        ] {
            assert!(
                parse_fault(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
