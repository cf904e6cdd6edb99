//! The merchant-facing WeChat Pay API v3: which endpoint a request is for, the merchant's
//! signature, and the certificates download. Each resource answers in its own module.

use serde_json::json;

use crate::auth;
use crate::bill;
use crate::crypto;
use crate::fields::{decode_segment, parse_body, query_mchid};
use crate::payments::{self, TradeKind};
use crate::refunds;
use crate::reply::Reply;
use crate::sim::{lock, Simulator};

/// A merchant request as received.
pub(crate) struct MerchantRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Exactly as sent: what the merchant signed.
    pub path_and_query: &'a str,
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

enum Route {
    Prepay(TradeKind),
    QueryByOutTradeNo(String),
    QueryByTransactionId(String),
    Close(String),
    CreateRefund,
    QueryRefund(String),
    Certificates,
    TradeBill,
}

fn route(method: &str, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match (method, segs.as_slice()) {
        ("POST", ["v3", "pay", "transactions", kind]) => Some(Route::Prepay(match *kind {
            "jsapi" => TradeKind::Jsapi,
            "app" => TradeKind::App,
            "native" => TradeKind::Native,
            "h5" => TradeKind::H5,
            _ => return None,
        })),
        ("GET", ["v3", "pay", "transactions", "out-trade-no", no]) if !no.is_empty() => {
            Some(Route::QueryByOutTradeNo(decode_segment(no)))
        }
        ("GET", ["v3", "pay", "transactions", "id", id]) if !id.is_empty() => {
            Some(Route::QueryByTransactionId(decode_segment(id)))
        }
        ("POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]) if !no.is_empty() => {
            Some(Route::Close(decode_segment(no)))
        }
        ("POST", ["v3", "refund", "domestic", "refunds"]) => Some(Route::CreateRefund),
        ("GET", ["v3", "refund", "domestic", "refunds", no]) if !no.is_empty() => {
            Some(Route::QueryRefund(decode_segment(no)))
        }
        ("GET", ["v3", "certificates"]) => Some(Route::Certificates),
        ("GET", ["v3", "bill", "tradebill"]) => Some(Route::TradeBill),
        _ => None,
    }
}

pub(crate) fn handle(sim: &Simulator, req: &MerchantRequest<'_>) -> Reply {
    let Some(route) = route(req.method, req.path) else {
        return Reply::error(404, "NOT_FOUND", "请求的资源不存在");
    };

    let inner = &sim.inner;
    let auth = match authenticate(sim, req) {
        Ok(a) => a,
        Err(reply) => return reply,
    };

    let result = match route {
        Route::Prepay(kind) => {
            parse_body(req.body).and_then(|b| payments::prepay(sim, &auth.mchid, kind, &b))
        }
        Route::QueryByOutTradeNo(no) => query_mchid(req.query, &auth.mchid).and_then(|()| {
            let st = lock(&inner.state);
            st.orders
                .get(&no)
                .map(|o| Reply::json(200, &o.transaction_json(None)))
                .ok_or_else(Reply::order_not_exist)
        }),
        Route::QueryByTransactionId(id) => query_mchid(req.query, &auth.mchid).and_then(|()| {
            let st = lock(&inner.state);
            st.order_by_transaction_id(&id)
                .map(|o| Reply::json(200, &o.transaction_json(None)))
                .ok_or_else(Reply::order_not_exist)
        }),
        Route::Close(no) => {
            parse_body(req.body).and_then(|b| payments::close(sim, &auth.mchid, &no, &b))
        }
        Route::CreateRefund => parse_body(req.body).and_then(|b| refunds::create_refund(sim, &b)),
        Route::QueryRefund(no) => {
            let st = lock(&inner.state);
            st.refunds
                .get(&no)
                .map(|r| Reply::json(200, &r.refund_json()))
                .ok_or_else(|| Reply::error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
        }
        Route::Certificates => Ok(certificates(sim)),
        Route::TradeBill => {
            let base_url = sim.base_url();
            let mut st = lock(&inner.state);
            let st = &mut *st;
            Ok(bill::endpoint::trade_bill(
                &st.orders,
                &st.refunds,
                &mut st.bill,
                &base_url,
                req.query,
            ))
        }
    };
    result.unwrap_or_else(|e| e)
}

/// Checks the merchant's request signature; the error is the signed 401 to answer.
pub(crate) fn authenticate(
    sim: &Simulator,
    req: &MerchantRequest<'_>,
) -> Result<auth::AuthParams, Reply> {
    let inner = &sim.inner;
    let expected = auth::Expected {
        mchid: &inner.config.mchid,
        serial_no: &inner.config.merchant_serial_no,
        key: &inner.merchant_key,
    };
    auth::verify(
        &expected,
        req.authorization,
        req.method,
        req.path_and_query,
        req.body,
        crypto::unix_now(),
    )
    .map_err(|message| Reply::error(401, "SIGN_ERROR", message))
}

fn certificates(sim: &Simulator) -> Reply {
    let certs = lock(&sim.inner.platform).certs.clone();
    if certs.is_empty() {
        return Reply::error(404, "NOT_FOUND", "无可用的平台证书");
    }
    let key = sim.inner.config.apiv3_key.as_bytes();
    let mut data = Vec::new();
    for id in certs.iter().rev() {
        let Some(cert) = &id.cert else { continue };
        let nonce = crypto::nonce12();
        let ciphertext =
            match crypto::aes_gcm_encrypt(key, &nonce, "certificate", cert.pem.as_bytes()) {
                Ok(c) => c,
                Err(e) => return Reply::error(500, "SYSTEM_ERROR", e),
            };
        data.push(json!({
            "serial_no": id.serial,
            "effective_time": crypto::format_time(cert.not_before),
            "expire_time": crypto::format_time(cert.not_after),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": "certificate",
                "ciphertext": ciphertext,
            },
        }));
    }
    Reply::json(200, &json!({ "data": data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert!(matches!(
            route("POST", "/v3/pay/transactions/jsapi"),
            Some(Route::Prepay(TradeKind::Jsapi))
        ));
        assert!(route("GET", "/v3/pay/transactions/jsapi").is_none());
        assert!(matches!(
            route("GET", "/v3/pay/transactions/out-trade-no/A%2AB"),
            Some(Route::QueryByOutTradeNo(n)) if n == "A*B"
        ));
        assert!(matches!(
            route("POST", "/v3/pay/transactions/out-trade-no/ABCDEF/close"),
            Some(Route::Close(n)) if n == "ABCDEF"
        ));
        assert!(route("GET", "/v3/pay/transactions/out-trade-no/").is_none());
        assert!(route("GET", "/v3/certificates/").is_none());
    }
}
