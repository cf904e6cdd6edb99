//! Checking the merchant's `Authorization: WECHATPAY2-SHA256-RSA2048 ...` header.

use std::collections::HashMap;

use crate::crypto::Verifier;

pub(crate) const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// How far a request timestamp may drift from the simulator's clock, as on the real API.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// The parameters of the Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthParams {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

/// Parses `SCHEME k="v",k="v"...` in any order, with or without quotes and spaces.
pub(crate) fn parse_authorization(header: &str) -> Result<AuthParams, String> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .ok_or_else(|| "Authorization头缺少认证类型或认证信息".to_string())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(format!("不支持的认证类型 {scheme}，应为 {SCHEME}"));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err("Authorization头格式错误：参数缺少“=”".into());
        }
        let key = rest[key_start..i].trim().to_string();
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let start = i;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            if i >= bytes.len() {
                return Err("Authorization头格式错误：引号未闭合".into());
            }
            let v = rest[start..i].to_string();
            i += 1;
            v
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            rest[start..i].trim().to_string()
        };
        if key.is_empty() {
            return Err("Authorization头格式错误：参数名为空".into());
        }
        if params.insert(key.clone(), value).is_some() {
            return Err(format!("Authorization头格式错误：参数 {key} 重复"));
        }
    }
    let mut take = |name: &str| -> Result<String, String> {
        match params.remove(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("Authorization头缺少参数 {name}")),
        }
    };
    Ok(AuthParams {
        mchid: take("mchid")?,
        nonce_str: take("nonce_str")?,
        signature: take("signature")?,
        timestamp: take("timestamp")?,
        serial_no: take("serial_no")?,
    })
}

/// The message the merchant signs: `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`.
pub(crate) fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + path_and_query.len() + 96);
    for part in [method, path_and_query, timestamp, nonce] {
        m.extend_from_slice(part.as_bytes());
        m.push(b'\n');
    }
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

pub(crate) struct Expected<'a> {
    pub mchid: &'a str,
    pub serial_no: &'a str,
    pub key: &'a Verifier,
}

/// Verifies the request; the error is the message of a 401 SIGN_ERROR.
pub(crate) fn verify(
    expected: &Expected<'_>,
    authorization: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<AuthParams, String> {
    let header = authorization.ok_or_else(|| {
        "Http头缺少Authorization或格式错误，请参考《微信支付商户REST API签名规则》".to_string()
    })?;
    let p = parse_authorization(header)?;
    if p.mchid != expected.mchid {
        return Err(format!("商户号 {} 与签名商户不匹配", p.mchid));
    }
    if !p.serial_no.eq_ignore_ascii_case(expected.serial_no) {
        return Err(format!(
            "商户证书序列号 {} 有误，请确认商户API证书序列号",
            p.serial_no
        ));
    }
    let ts: i64 = p
        .timestamp
        .parse()
        .map_err(|_| format!("timestamp {} 不是合法的Unix时间戳", p.timestamp))?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err("签名时间戳已过期或与系统时间相差超过5分钟".into());
    }
    let message = request_message(method, path_and_query, &p.timestamp, &p.nonce_str, body);
    if !expected.key.verify_base64(&message, &p.signature) {
        return Err("签名错误，请检查后再试".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_order_and_quoting() {
        let h = r#"WECHATPAY2-SHA256-RSA2048 serial_no="ABC", timestamp=123,nonce_str="n o",  signature="c2ln==",mchid="1900000001""#;
        let p = parse_authorization(h).unwrap();
        assert_eq!(p.mchid, "1900000001");
        assert_eq!(p.nonce_str, "n o");
        assert_eq!(p.signature, "c2ln==");
        assert_eq!(p.timestamp, "123");
        assert_eq!(p.serial_no, "ABC");
    }

    #[test]
    fn rejects_malformed_headers() {
        for h in [
            "",
            "WECHATPAY2-SHA256-RSA2048",
            "Bearer x",
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1,nonce_str="x""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="a",signature="b",timestamp="1",serial_no="s""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid,nonce_str="a""#,
        ] {
            assert!(parse_authorization(h).is_err(), "{h}");
        }
    }
}
