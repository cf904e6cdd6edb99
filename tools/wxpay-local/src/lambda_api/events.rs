//! Events as the platform delivers them.

use serde_json::{json, Value};

/// An API Gateway HTTP API (payload 2.0) event, as `template.yaml` deploys the functions.
pub fn http_v2_event(method: &str, path: &str, headers: Value, body: Option<String>) -> Value {
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.24",
                "userAgent": "lambda-runtime-test"
            },
            "requestId": "Yx1AbcDEFgHIjkl=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "12/Mar/2026:08:00:00 +0000",
            "timeEpoch": 1773302400000u64
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["body"] = Value::String(body);
    }
    event
}

/// Has the simulator mark the order paid without telling anyone, and returns its signed
/// `TRANSACTION.SUCCESS` notification, byte for byte, as an API Gateway (payload 2.0) event.
/// Signed now: the functions refuse timestamps more than 300 s old.
pub async fn payment_notification_event(
    sim: &wxpay_sim::Simulator,
    out_trade_no: &str,
) -> Result<Value, String> {
    sim.mark_paid_silently(out_trade_no)
        .await
        .map_err(|e| format!("the simulator could not pay {out_trade_no}: {e}"))?;
    let n = sim
        .build_transaction_notification(out_trade_no)
        .ok_or_else(|| format!("the simulator has no paid order {out_trade_no}"))?;
    let headers: serde_json::Map<String, Value> = n
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    Ok(http_v2_event(
        "POST",
        "/pay",
        Value::Object(headers),
        Some(n.body),
    ))
}
