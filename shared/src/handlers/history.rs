//! `wxpay_order_list` (a payer's own orders, page by page) and `wxpay_stats` (totals per
//! status, for operators).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{bounded, Call};
use crate::error::AppError;
use crate::state::App;
use crate::store::history::{OrderListQuery, PagePosition, StatsQuery};
use crate::store::{Order, OrderStatus};
use crate::util::{is_valid_reference, parse_wechat_time};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 50;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    orders: Vec<Order>,
    /// Pass it back as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsRequest {
    from: Option<String>,
    to: Option<String>,
    business_type: Option<String>,
}

fn parse_status(s: &str) -> Result<OrderStatus, AppError> {
    OrderStatus::parse(s).ok_or_else(|| {
        let known: Vec<&str> = OrderStatus::ALL.iter().map(|k| k.as_str()).collect();
        AppError::invalid(format!(
            "field `status` must be one of {} (got `{s}`)",
            known.join(", ")
        ))
    })
}

/// The cursor is opaque to callers; inside it is where the last page ended.
fn encode_cursor(order: &Order) -> String {
    let millis = order.created_at.unix_timestamp_nanos() / 1_000_000;
    B64URL.encode(format!("{millis}.{}", order.out_trade_no))
}

fn decode_cursor(cursor: &str) -> Result<PagePosition, AppError> {
    let bad = || {
        AppError::invalid(
            "field `cursor` is not one this API returned; omit it to start from the newest order",
        )
    };
    let text = B64URL
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (millis, out_trade_no) = text.split_once('.').ok_or_else(bad)?;
    let millis: i128 = millis.parse().map_err(|_| bad())?;
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000).map_err(|_| bad())?;
    if !is_valid_reference(out_trade_no) {
        return Err(bad());
    }
    Ok(PagePosition {
        created_at,
        out_trade_no: out_trade_no.to_string(),
    })
}

pub async fn list(app: &App, call: &Call) -> Result<Value, AppError> {
    let req: ListRequest = call.parse()?;
    let Some(openid) = call.caller.openid.clone() else {
        return Err(if call.caller.trusted {
            AppError::invalid("field `openid` is required: whose orders to list")
        } else {
            AppError::Unauthenticated(
                "listing orders needs the payer's identity: call from the mini-program, or log in with wxpay_login and send the session token".into(),
            )
        });
    };
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "field `limit` must be from 1 to {MAX_LIMIT} (got {limit})"
        )));
    }
    let query = OrderListQuery {
        openid,
        status: req.status.as_deref().map(parse_status).transpose()?,
        after: req.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let mut orders = app.store.list_orders(&query).await?;
    let next_cursor = if orders.len() > limit as usize {
        orders.truncate(limit as usize);
        orders.last().map(encode_cursor)
    } else {
        None
    };
    serde_json::to_value(ListAnswer {
        orders,
        next_cursor,
    })
    .map_err(|e| AppError::Internal(e.to_string()))
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, AppError> {
    value
        .map(|v| {
            parse_wechat_time(&v).ok_or_else(|| {
                AppError::invalid(format!(
                    "field `{name}` must be an RFC 3339 time such as 2026-12-01T00:00:00+08:00 (got `{v}`)"
                ))
            })
        })
        .transpose()
}

pub async fn stats(app: &App, call: &Call) -> Result<Value, AppError> {
    call.require_trusted("wxpay_stats")?;
    let req: StatsRequest = call.parse()?;
    let query = StatsQuery {
        from: parse_time("from", req.from)?,
        to: parse_time("to", req.to)?,
        business_type: bounded("businessType", req.business_type, 64)?,
    };
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from >= to {
            return Err(AppError::invalid("field `from` must be before `to`"));
        }
    }
    let totals = app.store.order_stats(&query).await?;
    let mut by_status = Map::new();
    let (mut count, mut amount, mut refunded) = (0i64, 0i64, 0i64);
    for status in OrderStatus::ALL {
        let t = totals.iter().find(|t| t.status == status);
        let (c, a, r) = t.map_or((0, 0, 0), |t| (t.count, t.amount, t.refunded_amount));
        count += c;
        amount += a;
        refunded += r;
        by_status.insert(
            status.as_str().to_string(),
            json!({ "count": c, "amount": a }),
        );
    }
    let rfc3339 = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    Ok(json!({
        "total": { "count": count, "amount": amount },
        "byStatus": by_status,
        "refundedAmount": refunded,
        "from": rfc3339(query.from),
        "to": rfc3339(query.to),
        "businessType": query.business_type,
    }))
}
