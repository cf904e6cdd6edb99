//! The cashier: what the WeChat client does with `wx.requestPayment`'s parameters (JSAPI
//! and mini-program orders) or the App SDK's `PayReq`, written from WeChat Pay's
//! documentation of 调起支付:
//!
//! - JSAPI / 小程序: `appId`, `timeStamp`, `nonceStr`, `package` (`prepay_id=…`),
//!   `signType` (`RSA` only) and `paySign`, the SHA256withRSA signature under the merchant's
//!   API key of `appId\ntimeStamp\nnonceStr\npackage\n`.
//! - App: `appid`, `partnerid` (the mchid), `prepayid`, `package` (`Sign=WXPay`),
//!   `noncestr`, `timestamp` and `sign`, over `appid\ntimestamp\nnoncestr\nprepayid\n`.
//! - The appid must be the one the order was placed with, the timestamp seconds (10
//!   digits), and the prepay id one WeChat Pay issued, valid for 2 hours, for an order
//!   still unpaid.
//!
//! What does not verify is refused with every reason found, and nothing can be paid.

use maud::{html, Markup};
use serde_json::{Map, Value};

use crate::console::{layout, Nav};
use crate::crypto;
use crate::error::SimError;
use crate::model::SimOrder;
use crate::money::yuan;
use crate::sim::{lock, Simulator};

/// An example to start from, with the simulator's own appid.
fn example(appid: &str) -> String {
    format!(
        "{{\n  \"appId\": \"{appid}\",\n  \"timeStamp\": \"1414561699\",\n  \"nonceStr\": \"5K8264ILTKCH16CQ2502SI8ZNMTM67VS\",\n  \"package\": \"prepay_id=wx201410272009395522657a690389285100\",\n  \"signType\": \"RSA\",\n  \"paySign\": \"…\"\n}}"
    )
}

/// Which client call the parameters are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Jsapi,
    App,
}

/// Parameters that verified, and the order they pay.
struct Verified {
    call: Call,
    order: SimOrder,
}

fn text<'a>(m: &'a Map<String, Value>, key: &str, missing: &mut Vec<String>) -> &'a str {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(_)) => {
            missing.push(format!("`{key}` must be a string, as the client takes it"));
            ""
        }
        _ => {
            missing.push(format!("`{key}` is missing"));
            ""
        }
    }
}

/// Checks the parameters as the WeChat client and WeChat Pay would.
fn verify(sim: &Simulator, submitted: &str) -> Result<Verified, Vec<String>> {
    let value: Value = serde_json::from_str(submitted.trim())
        .map_err(|e| vec![format!("this is not JSON: {e}")])?;
    let Value::Object(m) = value else {
        return Err(vec!["the parameters must be a JSON object".into()]);
    };
    let call = if m.contains_key("paySign") || m.contains_key("timeStamp") {
        Call::Jsapi
    } else if m.contains_key("prepayid") || m.contains_key("partnerid") {
        Call::App
    } else {
        return Err(vec![
            "these are neither wx.requestPayment's parameters (appId, timeStamp, nonceStr, package, signType, paySign) nor the App SDK's (appid, partnerid, prepayid, package, noncestr, timestamp, sign)".into(),
        ]);
    };
    let mut why = Vec::new();
    let (appid, timestamp, prepay_id, message, signature) = match call {
        Call::Jsapi => {
            let appid = text(&m, "appId", &mut why);
            let ts = text(&m, "timeStamp", &mut why);
            let nonce = text(&m, "nonceStr", &mut why);
            let package = text(&m, "package", &mut why);
            let sign_type = text(&m, "signType", &mut why);
            let sig = text(&m, "paySign", &mut why);
            if !sign_type.is_empty() && sign_type != "RSA" {
                why.push(format!(
                    "signType is `{sign_type}`: API v3 payments are signed RSA (MD5 and HMAC-SHA256 were API v2's)"
                ));
            }
            let prepay = package.strip_prefix("prepay_id=").unwrap_or_default();
            if !package.is_empty() && prepay.is_empty() {
                why.push(format!("package must be `prepay_id=…`, not `{package}`"));
            }
            let message = format!("{appid}\n{ts}\n{nonce}\n{package}\n");
            (appid, ts, prepay, message, sig)
        }
        Call::App => {
            let appid = text(&m, "appid", &mut why);
            let partner = text(&m, "partnerid", &mut why);
            let prepay = text(&m, "prepayid", &mut why);
            let package = text(&m, "package", &mut why);
            let ts = text(&m, "timestamp", &mut why);
            let nonce = text(&m, "noncestr", &mut why);
            let sig = text(&m, "sign", &mut why);
            if !partner.is_empty() && partner != sim.config().mchid {
                why.push(format!(
                    "partnerid `{partner}` is not the merchant's mchid {}",
                    sim.config().mchid
                ));
            }
            if !package.is_empty() && package != "Sign=WXPay" {
                why.push(format!("package must be `Sign=WXPay`, not `{package}`"));
            }
            let message = format!("{appid}\n{ts}\n{nonce}\n{prepay}\n");
            (appid, ts, prepay, message, sig)
        }
    };
    if !timestamp.is_empty() {
        if timestamp.len() == 13 && timestamp.bytes().all(|b| b.is_ascii_digit()) {
            why.push(
                "the timestamp is in milliseconds: the client wants seconds (10 digits)".into(),
            );
        } else if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            why.push(format!(
                "the timestamp `{timestamp}` is not a number of seconds"
            ));
        }
    }
    if !signature.is_empty()
        && !sim
            .inner
            .merchant_key
            .verify_base64(message.as_bytes(), signature)
    {
        why.push(format!(
            "the signature does not verify under the merchant's API key (serial {}): signed with another key, or a parameter changed after signing",
            sim.config().merchant_serial_no
        ));
    }
    let order = lock(&sim.inner.state)
        .orders
        .values()
        .find(|o| !prepay_id.is_empty() && o.prepay_id == prepay_id)
        .cloned();
    match &order {
        None if !prepay_id.is_empty() => why.push(format!(
            "unknown prepay id: this WeChat Pay never issued `{prepay_id}`"
        )),
        None => {}
        Some(o) => {
            if !appid.is_empty() && appid != o.appid {
                why.push(format!(
                    "wrong appid: the order was placed for {}, these parameters name {appid}",
                    o.appid
                ));
            }
            let wants = match call {
                Call::Jsapi => "JSAPI",
                Call::App => "APP",
            };
            if o.trade_type != wants {
                why.push(format!(
                    "the prepay id is of a {} order; these are {} parameters",
                    o.trade_type, wants
                ));
            }
            let now = crypto::now_cst();
            if !o.is_open() {
                why.push(format!(
                    "order {} is {} ({}): there is nothing to pay",
                    o.out_trade_no,
                    o.trade_state,
                    crate::model::trade_state_desc(&o.trade_state)
                ));
            } else if o.prepay_expires().is_some_and(|t| t <= now) {
                why.push(format!(
                    "the prepay id expired: it was issued at {} and is valid for 2 hours",
                    o.create_time
                ));
            } else if o.is_expired(now) {
                why.push(format!(
                    "order {} expired at {} (time_expire)",
                    o.out_trade_no,
                    o.time_expire.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    match order {
        Some(order) if why.is_empty() => Ok(Verified { call, order }),
        _ => Err(why),
    }
}

/// The `params` field of the cashier's form.
fn submitted(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "params")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn form(params: &str) -> Markup {
    html! {
        form.card method="post" action="/cashier" {
            label for="params" { "wx.requestPayment's parameters (JSAPI, mini-program), or the App SDK's PayReq, as JSON: paste what the order call returned" }
            textarea #params name="params" spellcheck="false" { (params) }
            div.actions {
                button.primary type="submit" { "Check the signature" }
            }
        }
    }
}

pub(super) fn form_page(sim: &Simulator) -> Markup {
    layout(
        sim,
        "Cashier",
        Nav::Cashier,
        html! {
            h2 { "Cashier" small { "what the WeChat client does with wx.requestPayment" } }
            p.muted {
                "It checks paySign under the merchant's public key, that the appid is the order's, and that the prepay id is one this WeChat Pay issued and is still open (2 hours, unpaid). Then you can pay."
            }
            (form(&example(&sim.config().appid)))
        },
    )
}

fn verdict(params: &str, result: &Result<Verified, Vec<String>>) -> Markup {
    match result {
        Ok(v) => html! {
            div.verdict.ok #verdict data-verified="true" {
                strong { "The signature verifies. " }
                span.muted { (match v.call { Call::Jsapi => "JSAPI / mini-program", Call::App => "App" }) " payment of order " (v.order.out_trade_no) }
                div.big.amount #amount { "¥" (yuan(v.order.amount_total)) }
                div #description { (v.order.description) }
                div.meta { "payer " (v.order.payer_openid.as_deref().unwrap_or("(whoever pays)")) " · notify_url " (v.order.notify_url) }
                form method="post" action="/cashier/pay" {
                    input type="hidden" name="params" value=(params);
                    div.actions { button.primary #pay type="submit" { "Pay" } }
                }
            }
        },
        Err(why) => html! {
            div.verdict.bad #verdict data-verified="false" {
                strong { "The signature does not verify, so the client would not pay:" }
                ul { @for w in why { li.reason { (w) } } }
            }
        },
    }
}

/// `POST /cashier`: the verdict on the submitted parameters.
pub(super) fn check_page(sim: &Simulator, body: &[u8]) -> (u16, Markup) {
    let params = submitted(body);
    let result = verify(sim, &params);
    let status = if result.is_ok() { 200 } else { 422 };
    let page = layout(
        sim,
        "Cashier",
        Nav::Cashier,
        html! {
            h2 { "Cashier" }
            (verdict(&params, &result))
            (form(&params))
        },
    );
    (status, page)
}

/// `POST /cashier/pay`: checks the parameters again, then pays the order and notifies.
pub(super) async fn pay_page(sim: &Simulator, body: &[u8]) -> (u16, Markup) {
    let params = submitted(body);
    let result = match verify(sim, &params) {
        Ok(v) => Ok((v.order.clone(), sim.pay(&v.order.out_trade_no).await)),
        Err(why) => Err(why),
    };
    let (status, content) = match result {
        Ok((order, Err(e @ (SimError::InvalidState(_) | SimError::OrderNotFound(_))))) => (
            409,
            html! {
                div.verdict.bad #verdict data-paid="false" {
                    strong { "Not paid: " } (e.to_string()) " (order " (order.out_trade_no) ")"
                }
            },
        ),
        Ok((order, paid)) => {
            let answer = match &paid {
                Ok(o) => format!("the merchant answered {}", o.status),
                Err(e) => format!("{e}; WeChat Pay retries on its schedule"),
            };
            (
                200,
                html! {
                    div.verdict.ok #verdict data-paid="true" {
                        strong { "Paid. " }
                        "Order " (order.out_trade_no) ", ¥" (yuan(order.amount_total)) ". TRANSACTION.SUCCESS sent to " (order.notify_url) ": "
                        span #notify-answer { (answer) }
                        "."
                        div.actions { a.button href="/" { "See it in the console" } }
                    }
                },
            )
        }
        Err(why) => (
            422,
            html! {
                (verdict(&params, &Err(why)))
                (form(&params))
            },
        ),
    };
    (
        status,
        layout(
            sim,
            "Cashier",
            Nav::Cashier,
            html! { h2 { "Cashier" } (content) },
        ),
    )
}
