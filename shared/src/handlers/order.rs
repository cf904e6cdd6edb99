//! `wxpay_order`: create the order row, call prepay, answer what the client needs to pay.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{bounded, parse_amount, string_or_number, Call};
use crate::api::{Amount, H5Info, Payer, PrepayRequest, SceneInfo};
use crate::client::TradeType;
use crate::crypto::{app_pay_sign, jsapi_pay_sign};
use crate::error::AppError;
use crate::state::App;
use crate::store::{NewOrder, PaymentLog};
use crate::util::{new_reference, now_utc, random_alnum};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderRequest {
    package_type: Option<String>,
    trade_type: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "string_or_number::deserialize")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_number::deserialize")]
    generation_id: Option<String>,
    business_type: Option<String>,
    #[serde(default, deserialize_with = "string_or_number::deserialize")]
    business_id: Option<String>,
    attach: Option<String>,
    /// Fen; trusted callers only. Kept raw so bad values get a precise message.
    amount: Option<Value>,
    /// H5 orders: the payer's IP, when a trusted server relays the order.
    client_ip: Option<String>,
}

/// What the mini-program's `wx.requestPayment` takes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsapiPayment {
    out_trade_no: String,
    app_id: String,
    time_stamp: String,
    nonce_str: String,
    package: String,
    /// `package` again: it is a reserved word in some client code.
    package_val: String,
    sign_type: &'static str,
    pay_sign: String,
}

/// What the APP SDK's `PayReq` takes (its own lower-case names).
#[derive(Serialize)]
struct AppPayment {
    #[serde(rename = "outTradeNo")]
    out_trade_no: String,
    appid: String,
    partnerid: String,
    prepayid: String,
    package: &'static str,
    noncestr: String,
    timestamp: String,
    sign: String,
}

pub async fn create(app: &App, call: &Call) -> Result<Value, AppError> {
    let req: OrderRequest = call.parse()?;
    let trade_type = match req.trade_type.as_deref().map(str::trim) {
        None | Some("") => TradeType::Jsapi,
        Some(t) => TradeType::parse(t).ok_or_else(|| {
            AppError::invalid(format!(
                "field `tradeType` must be JSAPI, NATIVE, H5 or APP (got `{t}`)"
            ))
        })?,
    };
    let openid = call.caller.openid.clone();
    if trade_type == TradeType::Jsapi && openid.is_none() {
        return Err(AppError::Unauthenticated(
            "JSAPI orders need the payer's openid: call from the mini-program (callFunction adds userInfo) or through CloudBase (X-WX-OPENID)".into(),
        ));
    }

    let business_type = bounded("businessType", req.business_type, 32)?;
    if let Some(b) = &business_type {
        if !b
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(AppError::invalid(
                "field `businessType` may only contain letters, digits, `_` and `-`",
            ));
        }
    }
    let description = bounded("description", req.description, 127)?;
    let package_type = bounded("packageType", req.package_type, 32)?;
    let (amount, package_type, description) = match &req.amount {
        Some(raw) => {
            call.require_trusted("setting `amount`")?;
            let amount = parse_amount("amount", raw)?;
            let description = description
                .or_else(|| package_type.clone())
                .unwrap_or_else(|| "Payment".to_string());
            (amount, package_type, description)
        }
        None => {
            let name = package_type.ok_or_else(|| {
                AppError::invalid("field `packageType` is required (a key of the price list)")
            })?;
            let prices = app
                .prices_for(business_type.as_deref(), call.caller.trusted)?
                .current(crate::client::http_client())
                .await;
            let amount = prices.get(&name).ok_or_else(|| AppError::UnknownPackage {
                name: name.clone(),
                known: prices.names().collect::<Vec<_>>().join(", "),
            })?;
            let description = if call.caller.trusted {
                description.unwrap_or_else(|| name.clone())
            } else {
                name.clone()
            };
            (amount, Some(name), description)
        }
    };
    let user_id = bounded("userId", req.user_id, 64)?;
    let generation_id = bounded("generationId", req.generation_id, 64)?;
    let business_id = bounded("businessId", req.business_id, 64)?;
    let attach = bounded("attach", req.attach, 128)?;
    no_backtick("attach", attach.as_deref())?;
    no_backtick("description", Some(&description))?;
    let scene_info = if trade_type == TradeType::H5 {
        let named = match call.caller.trusted {
            true => bounded("clientIp", req.client_ip, 45)?,
            false => None,
        };
        let ip = match (named, call.caller.client_ip.as_deref()) {
            (Some(named), _) => payer_ip("field `clientIp`", &named)?,
            (None, Some(platform)) => payer_ip("the platform's client address", platform)?,
            (None, None) => return Err(AppError::invalid(
                "H5 orders need the payer's IP: call over HTTP, or pass `clientIp` as a trusted caller",
            )),
        };
        Some(SceneInfo {
            payer_client_ip: ip.to_string(),
            h5_info: Some(H5Info {
                h5_type: "Wap".into(),
            }),
        })
    } else {
        None
    };

    // The row exists before WeChat Pay hears of the order, so a notification can never
    // arrive for an order we do not know.
    let out_trade_no = new_reference("WX");
    crate::invocation::record_out_trade_no(&out_trade_no);
    let now = now_utc();
    let order = NewOrder {
        out_trade_no: out_trade_no.clone(),
        openid: openid.clone(),
        user_id,
        generation_id: generation_id.clone(),
        package_type: package_type.clone(),
        business_type,
        business_id,
        amount,
        description: description.clone(),
        trade_type: trade_type.as_str().to_string(),
        created_at: now,
    };
    app.store.insert_order(&order).await?;

    let prepay = PrepayRequest {
        appid: app.config.appid.clone(),
        mchid: app.config.mchid.clone(),
        description,
        out_trade_no: out_trade_no.clone(),
        notify_url: app.config.notify_url.clone(),
        attach,
        amount: Amount {
            total: amount,
            currency: "CNY".into(),
        },
        payer: (trade_type == TradeType::Jsapi).then(|| Payer {
            openid: openid.clone(),
        }),
        scene_info,
    };
    let answer = match app.wechat.prepay(trade_type, &prepay).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%out_trade_no, "prepay failed: {e}");
            // Nobody may mistake this order for payable; a late notification still wins.
            if let Err(se) = app.store.mark_order_failed(&out_trade_no, now_utc()).await {
                tracing::error!(%out_trade_no, "could not mark order failed: {se}");
            }
            log(app, &order, "prepay_failed", Some(e.to_string())).await;
            return Err(e.into());
        }
    };
    log(app, &order, "prepay", None).await;

    let missing = |what: &str| AppError::Internal(format!("prepay answer has no {what}"));
    let config = &app.config;
    let data = match trade_type {
        TradeType::Jsapi => {
            let prepay_id = answer.prepay_id.ok_or_else(|| missing("prepay_id"))?;
            let time_stamp = now_utc().unix_timestamp().to_string();
            let nonce_str = random_alnum(32);
            let package = format!("prepay_id={prepay_id}");
            let pay_sign = jsapi_pay_sign(
                &config.private_key,
                &config.appid,
                &time_stamp,
                &nonce_str,
                &package,
            )
            .map_err(|e| AppError::Internal(e.to_string()))?;
            serde_json::to_value(JsapiPayment {
                out_trade_no,
                app_id: config.appid.clone(),
                time_stamp,
                nonce_str,
                package_val: package.clone(),
                package,
                sign_type: "RSA",
                pay_sign,
            })
        }
        TradeType::App => {
            let prepay_id = answer.prepay_id.ok_or_else(|| missing("prepay_id"))?;
            let timestamp = now_utc().unix_timestamp().to_string();
            let noncestr = random_alnum(32);
            let sign = app_pay_sign(
                &config.private_key,
                &config.appid,
                &timestamp,
                &noncestr,
                &prepay_id,
            )
            .map_err(|e| AppError::Internal(e.to_string()))?;
            serde_json::to_value(AppPayment {
                out_trade_no,
                appid: config.appid.clone(),
                partnerid: config.mchid.clone(),
                prepayid: prepay_id,
                package: "Sign=WXPay",
                noncestr,
                timestamp,
                sign,
            })
        }
        TradeType::Native => {
            let code_url = answer.code_url.ok_or_else(|| missing("code_url"))?;
            Ok(serde_json::json!({ "outTradeNo": out_trade_no, "codeUrl": code_url }))
        }
        TradeType::H5 => {
            let h5_url = answer.h5_url.ok_or_else(|| missing("h5_url"))?;
            Ok(serde_json::json!({ "outTradeNo": out_trade_no, "h5Url": h5_url }))
        }
    };
    let data = data.map_err(|e| AppError::Internal(e.to_string()))?;
    crate::metric::order_created();
    Ok(data)
}

/// WeChat Pay takes `payer_client_ip` as an IPv4 or IPv6 address and nothing else; text
/// that is not one never leaves this function.
fn payer_ip(name: &str, text: &str) -> Result<std::net::IpAddr, AppError> {
    text.trim().parse().map_err(|_| {
        AppError::invalid(format!(
            "{name} must be an IPv4 or IPv6 address (got `{}`)",
            text.escape_default()
        ))
    })
}

/// The order log is for operators; failing to write it never fails the order.
async fn log(app: &App, order: &NewOrder, event: &str, detail: Option<String>) {
    let entry = PaymentLog {
        log_type: "order".into(),
        out_trade_no: Some(order.out_trade_no.clone()),
        openid: order.openid.clone(),
        package_type: order.package_type.clone(),
        generation_id: order.generation_id.clone(),
        event_type: Some(event.into()),
        amount_total: Some(order.amount),
        detail: detail.map(|d| serde_json::json!({ "error": d }).to_string()),
        ..Default::default()
    };
    if let Err(e) = app.store.insert_log(&entry, now_utc()).await {
        tracing::warn!(out_trade_no = %order.out_trade_no, "order log not written: {e}");
    }
}

/// WeChat Pay's bill puts a backtick before every field and splits fields at a comma
/// followed by one, so a backtick in a text it prints back could move the row's columns.
/// Commas alone (JSON) stay allowed.
fn no_backtick(name: &str, value: Option<&str>) -> Result<(), AppError> {
    if value.is_some_and(|v| v.contains('`')) {
        return Err(AppError::invalid(format!(
            "field `{name}` may not contain a backtick (`): WeChat Pay's bill uses it to separate fields"
        )));
    }
    Ok(())
}
