//! `wxpay_query_order_by_out_trade_no`, `wxpay_query_order_by_transaction_id`,
//! `wxpay_close_order`: ask WeChat Pay, and bring the stored order in line with it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Call;
use crate::api::Transaction;
use crate::client::ClientError;
use crate::error::AppError;
use crate::settlement::{PaymentRecord, SettleError};
use crate::state::App;
use crate::store::{Order, OrderStatus, PaymentLog};
use crate::util::{is_valid_reference, now_utc};

const SYNC_BUDGET: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByOutTradeNo {
    out_trade_no: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByTransactionId {
    transaction_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryAnswer {
    out_trade_no: String,
    /// WeChat Pay's `trade_state`; `null` when WeChat Pay has no such order (prepay failed).
    trade_state: Option<String>,
    trade_state_desc: Option<String>,
    transaction_id: Option<String>,
    amount: Option<i64>,
    payer_total: Option<i64>,
    success_time: Option<String>,
    /// Whether this query changed the stored order.
    synced: bool,
    order: Option<Order>,
}

fn not_found(out_trade_no: &str) -> AppError {
    AppError::NotFound(format!("no order {out_trade_no} for this caller"))
}

/// The order, if the caller may see it. Everyone not allowed gets the same 404 as for an
/// order that does not exist, so nobody learns which orders exist.
async fn owned_order(app: &App, call: &Call, out_trade_no: &str) -> Result<Order, AppError> {
    if !is_valid_reference(out_trade_no) {
        return Err(AppError::invalid(
            "field `outTradeNo` must be 6–32 characters of letters, digits, `_` or `-`",
        ));
    }
    if !call.caller.trusted && call.caller.openid.is_none() {
        return Err(AppError::Unauthenticated(
            "querying an order needs the payer's openid (mini-program) or the internal secret"
                .into(),
        ));
    }
    let order = app.store.get_order(out_trade_no).await?;
    match order {
        Some(o) if call.caller.trusted || o.openid.is_some() && o.openid == call.caller.openid => {
            // Only now: a stranger's refused call is not part of this order's story, and
            // must not be able to write lines into it.
            crate::invocation::record_out_trade_no(out_trade_no);
            Ok(o)
        }
        _ => Err(not_found(out_trade_no)),
    }
}

/// Applies what WeChat Pay says to the stored order. Returns whether anything changed.
async fn sync(app: &App, order: &Order, tx: &Transaction) -> Result<bool, AppError> {
    match tx.trade_state.as_deref() {
        Some("SUCCESS") | Some("REFUND") if order.status.is_unpaid() => {
            // A missed or late notification: the same checked transition as the callback.
            let courier = app.courier();
            let settled = app
                .settlement(&courier)
                .record_transaction(tx, "query", "TRANSACTION.SUCCESS", SYNC_BUDGET)
                .await;
            match settled {
                Ok(PaymentRecord::Recorded) => Ok(true),
                Ok(PaymentRecord::Duplicate | PaymentRecord::NotPaid) => Ok(false),
                Err(SettleError::Store(e)) => Err(e.into()),
                Err(SettleError::Mismatch(m)) => {
                    Err(AppError::Conflict(format!(
                        "WeChat Pay reports a payment that does not match this order ({m}); an operator must check it"
                    )))
                }
            }
        }
        Some("CLOSED") | Some("REVOKED") if order.status == OrderStatus::Pending => Ok(app
            .store
            .mark_closed(&order.out_trade_no, now_utc())
            .await?),
        _ => Ok(false),
    }
}

/// `order` is the row as read before the sync; it is read again only if the sync changed it.
async fn answer(
    app: &App,
    out_trade_no: &str,
    order: Option<Order>,
    tx: Option<Transaction>,
    synced: bool,
) -> Result<Value, AppError> {
    let order = if synced {
        app.store.get_order(out_trade_no).await?
    } else {
        order
    };
    let tx = tx.unwrap_or_default();
    let amount = tx.amount.clone().unwrap_or_default();
    let log = PaymentLog {
        log_type: "query".into(),
        out_trade_no: Some(out_trade_no.to_string()),
        transaction_id: tx.transaction_id.clone(),
        openid: order.as_ref().and_then(|o| o.openid.clone()),
        package_type: order.as_ref().and_then(|o| o.package_type.clone()),
        generation_id: order.as_ref().and_then(|o| o.generation_id.clone()),
        event_type: tx.trade_state.clone(),
        amount_total: amount.total,
        detail: Some(serde_json::json!({ "synced": synced }).to_string()),
    };
    if let Err(e) = app.store.insert_log(&log, now_utc()).await {
        tracing::warn!(%out_trade_no, "query log not written: {e}");
    }
    let answer = QueryAnswer {
        out_trade_no: out_trade_no.to_string(),
        trade_state: tx.trade_state,
        trade_state_desc: tx.trade_state_desc,
        transaction_id: tx.transaction_id,
        amount: amount.total,
        payer_total: amount.payer_total,
        success_time: tx.success_time,
        synced,
        order,
    };
    serde_json::to_value(answer).map_err(|e| AppError::Internal(e.to_string()))
}

/// WeChat Pay's answer, treating "no such order" (prepay never succeeded) as `None`.
fn absent_is_none(r: Result<Transaction, ClientError>) -> Result<Option<Transaction>, AppError> {
    match r {
        Ok(tx) => Ok(Some(tx)),
        Err(ClientError::Api { code, .. })
            if code == "ORDER_NOT_EXIST" || code == "RESOURCE_NOT_EXISTS" =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn by_out_trade_no(app: &App, call: &Call) -> Result<Value, AppError> {
    let req: ByOutTradeNo = call.parse()?;
    let order = owned_order(app, call, &req.out_trade_no).await?;
    let tx = absent_is_none(app.wechat.query_by_out_trade_no(&order.out_trade_no).await)?;
    let synced = match &tx {
        Some(tx) => sync(app, &order, tx).await?,
        None => false,
    };
    answer(app, &req.out_trade_no, Some(order), tx, synced).await
}

pub async fn by_transaction_id(app: &App, call: &Call) -> Result<Value, AppError> {
    call.require_trusted("querying by transactionId")?;
    let req: ByTransactionId = call.parse()?;
    let id = req.transaction_id.trim();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::invalid("field `transactionId` must be WeChat Pay's transaction id (up to 32 letters and digits)"));
    }
    let Some(tx) = absent_is_none(app.wechat.query_by_transaction_id(id).await)? else {
        return Err(AppError::NotFound(format!(
            "WeChat Pay has no transaction {id}"
        )));
    };
    let out_trade_no = tx
        .out_trade_no
        .clone()
        .ok_or_else(|| AppError::Internal("WeChat Pay answer has no out_trade_no".into()))?;
    crate::invocation::record_out_trade_no(&out_trade_no);
    let order = app.store.get_order(&out_trade_no).await?;
    let synced = match &order {
        Some(order) => sync(app, order, &tx).await?,
        None => false,
    };
    answer(app, &out_trade_no, order, Some(tx), synced).await
}

pub async fn close(app: &App, call: &Call) -> Result<Value, AppError> {
    let req: ByOutTradeNo = call.parse()?;
    let order = owned_order(app, call, &req.out_trade_no).await?;
    let closed = || serde_json::json!({ "outTradeNo": order.out_trade_no, "status": "closed" });
    match order.status {
        OrderStatus::Closed => return Ok(closed()),
        OrderStatus::Paid | OrderStatus::Refunded => {
            return Err(AppError::Conflict(format!(
                "order {} is {}; a paid order cannot be closed (refund it instead)",
                order.out_trade_no,
                order.status.as_str()
            )))
        }
        OrderStatus::Pending | OrderStatus::Failed => {}
    }
    match app.wechat.close(&order.out_trade_no).await {
        Ok(()) => {}
        Err(ClientError::Api { code, .. }) if code == "ORDERPAID" || code == "ORDER_PAID" => {
            // Paid while we were closing: record the payment instead of losing it.
            if let Ok(tx) = app.wechat.query_by_out_trade_no(&order.out_trade_no).await {
                sync(app, &order, &tx).await?;
            }
            return Err(AppError::Conflict(format!(
                "order {} was paid; it cannot be closed (refund it instead)",
                order.out_trade_no
            )));
        }
        // Prepay never reached WeChat Pay: there is nothing to close there.
        Err(ClientError::Api { code, .. }) if code == "ORDER_NOT_EXIST" => {}
        Err(e) => return Err(e.into()),
    }
    app.store
        .mark_closed(&order.out_trade_no, now_utc())
        .await?;
    let log = PaymentLog {
        log_type: "query".into(),
        out_trade_no: Some(order.out_trade_no.clone()),
        openid: order.openid.clone(),
        event_type: Some("CLOSE".into()),
        amount_total: Some(order.amount),
        ..Default::default()
    };
    if let Err(e) = app.store.insert_log(&log, now_utc()).await {
        tracing::warn!("close log not written: {e}");
    }
    Ok(closed())
}
