//! Reading a merchant request's fields, with the real API's wording for what is wrong.

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::reply::Reply;

pub(crate) fn decode_segment(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Reply::param("请求体为空，应为JSON对象"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::param(format!("请求体不是合法的JSON：{e}")))?;
    if !v.is_object() {
        return Err(Reply::param("请求体应为JSON对象"));
    }
    Ok(v)
}

pub(crate) fn query_mchid(query: &str, auth_mchid: &str) -> Result<(), Reply> {
    let mchid = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode_segment(k) == "mchid").then(|| decode_segment(&v.replace('+', " ")))
    });
    match mchid {
        None => Err(Reply::param(
            "输入源“/query/mchid”映射到值字段“商户号”必填性规则校验失败，此字段为必填项",
        )),
        Some(m) if m.is_empty() => Err(Reply::param(
            "输入源“/query/mchid”映射到值字段“商户号”必填性规则校验失败，此字段为必填项",
        )),
        Some(m) if m != auth_mchid => {
            Err(Reply::param(format!("商户号 {m} 与发起调用的商户号不一致")))
        }
        Some(_) => Ok(()),
    }
}

pub(crate) fn field<'a>(body: &'a Value, ptr: &str) -> Option<&'a Value> {
    body.pointer(ptr).filter(|v| !v.is_null())
}

pub(crate) fn missing(ptr: &str, name: &str) -> Reply {
    Reply::param(format!(
        "输入源“/body{ptr}”映射到值字段“{name}”必填性规则校验失败，此字段为必填项"
    ))
}

pub(crate) fn wrong_type(ptr: &str, name: &str, want: &str) -> Reply {
    Reply::param(format!(
        "输入源“/body{ptr}”映射到值字段“{name}”类型错误，应为{want}"
    ))
}

/// Lengths are UTF-8 bytes, as the real API counts them (a Chinese character is 3).
pub(crate) fn opt_string(
    body: &Value,
    ptr: &str,
    name: &str,
    max: usize,
) -> Result<Option<String>, Reply> {
    match field(body, ptr) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.len() > max {
                Err(Reply::param(format!(
                    "输入源“/body{ptr}”映射到值字段“{name}”字符串规则校验失败，字节数 {}，大于最大值 {max}",
                    s.len()
                )))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(wrong_type(ptr, name, "string")),
    }
}

pub(crate) fn req_string(body: &Value, ptr: &str, name: &str, max: usize) -> Result<String, Reply> {
    match opt_string(body, ptr, name, max)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”字符串规则校验失败，字节数 0，小于最小值 1"
        ))),
        None => Err(missing(ptr, name)),
    }
}

pub(crate) fn req_int(body: &Value, ptr: &str, name: &str) -> Result<i64, Reply> {
    match field(body, ptr) {
        None => Err(missing(ptr, name)),
        Some(v) => v.as_i64().ok_or_else(|| wrong_type(ptr, name, "integer")),
    }
}

pub(crate) fn req_positive(body: &Value, ptr: &str, name: &str) -> Result<i64, Reply> {
    let n = req_int(body, ptr, name)?;
    if n < 1 {
        return Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”数值规则校验失败，值 {n}，小于最小值 1"
        )));
    }
    Ok(n)
}

pub(crate) fn check_currency(
    body: &Value,
    ptr: &str,
    name: &str,
    required: bool,
) -> Result<(), Reply> {
    let c = if required {
        Some(req_string(body, ptr, name, 16)?)
    } else {
        opt_string(body, ptr, name, 16)?
    };
    match c {
        Some(c) if c != "CNY" => Err(Reply::param(format!(
            "输入源“/body{ptr}”映射到值字段“{name}”取值错误，境内商户仅支持CNY"
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

pub(crate) fn valid_out_refund_no(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

pub(crate) fn valid_notify_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

pub(crate) fn check_mchid(body: &Value, auth_mchid: &str) -> Result<String, Reply> {
    let mchid = req_string(body, "/mchid", "直连商户号", 32)?;
    if mchid != auth_mchid {
        return Err(Reply::param(format!(
            "mchid {mchid} 与发起调用的商户号 {auth_mchid} 不一致"
        )));
    }
    Ok(mchid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_identifiers() {
        assert!(valid_out_trade_no("ORDER_123-*|"));
        assert!(!valid_out_trade_no("short"));
        assert!(!valid_out_trade_no("has space 123"));
        assert!(!valid_out_trade_no(&"x".repeat(33)));
        assert!(valid_out_refund_no("R@1"));
        assert!(!valid_out_refund_no(""));
        assert!(valid_notify_url("https://example.com/notify"));
        assert!(valid_notify_url("http://127.0.0.1:9000/pay"));
        assert!(!valid_notify_url("ftp://example.com"));
        assert!(!valid_notify_url("https:///x"));
    }
}
