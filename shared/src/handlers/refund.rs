//! `wxpay_refund` and `wxpay_refund_query`, for trusted callers only.
//!
//! A refund is checked and written `processing` in one transaction before WeChat Pay hears
//! of it, so two concurrent requests can never together refund more than was paid; the same
//! `outRefundNo` retried is the same refund (WeChat Pay is idempotent on it too).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{bounded, parse_amount, Call};
use crate::api::{RefundAmountRequest, RefundInfo, RefundRequest};
use crate::client::ClientError;
use crate::error::AppError;
use crate::settlement::SettleError;
use crate::state::App;
use crate::store::{NewRefund, Order, PaymentLog, Refund, RefundReservation, RefundStatus};
use crate::util::{is_valid_reference, new_reference, now_utc};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    amount: Option<Value>,
    reason: Option<String>,
    out_refund_no: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    out_refund_no: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefundAnswer {
    out_refund_no: String,
    out_trade_no: String,
    refund_id: Option<String>,
    /// WeChat Pay's status: PROCESSING, SUCCESS, CLOSED, ABNORMAL.
    status: String,
    amount: i64,
    refund: Option<Refund>,
}

async fn find_order(app: &App, req: &CreateRequest) -> Result<Order, AppError> {
    let order = match (&req.out_trade_no, &req.transaction_id) {
        (Some(no), _) => {
            if !is_valid_reference(no) {
                return Err(AppError::invalid("field `outTradeNo` is malformed"));
            }
            app.store.get_order(no).await?
        }
        (None, Some(id)) => app.store.get_order_by_transaction_id(id).await?,
        (None, None) => {
            return Err(AppError::invalid(
                "give `outTradeNo` or `transactionId` of the order to refund",
            ))
        }
    };
    let order = order.ok_or_else(|| AppError::NotFound("no such order".into()))?;
    crate::invocation::record_out_trade_no(&order.out_trade_no);
    Ok(order)
}

fn status_of(info: &RefundInfo) -> String {
    info.state().unwrap_or("PROCESSING").to_string()
}

async fn log(
    app: &App,
    order: &Order,
    out_refund_no: &str,
    amount: i64,
    event: &str,
    detail: Option<String>,
) {
    let entry = PaymentLog {
        log_type: "refund".into(),
        out_trade_no: Some(order.out_trade_no.clone()),
        transaction_id: order.transaction_id.clone(),
        openid: order.openid.clone(),
        package_type: order.package_type.clone(),
        generation_id: order.generation_id.clone(),
        event_type: Some(event.into()),
        amount_total: Some(amount),
        detail: Some(
            serde_json::json!({ "out_refund_no": out_refund_no, "error": detail }).to_string(),
        ),
    };
    if let Err(e) = app.store.insert_log(&entry, now_utc()).await {
        tracing::warn!("refund log not written: {e}");
    }
}

pub async fn create(app: &App, call: &Call) -> Result<Value, AppError> {
    call.require_trusted("wxpay_refund")?;
    let req: CreateRequest = call.parse()?;
    let amount = req
        .amount
        .as_ref()
        .map(|a| parse_amount("amount", a))
        .transpose()?;
    let reason = bounded("reason", req.reason.clone(), 80)?;
    let out_refund_no = match bounded("outRefundNo", req.out_refund_no.clone(), 64)? {
        Some(no) if is_valid_reference(&no) => no,
        Some(_) => {
            return Err(AppError::invalid(
                "field `outRefundNo` must be 6–32 characters of letters, digits, `_` or `-`",
            ))
        }
        None => new_reference("RF"),
    };
    let order = find_order(app, &req).await?;

    let reservation = app
        .store
        .reserve_refund(&NewRefund {
            out_refund_no: out_refund_no.clone(),
            out_trade_no: order.out_trade_no.clone(),
            amount,
            reason: reason.clone(),
            now: now_utc(),
        })
        .await?;
    // Whether this call reserved the amount itself. Only then can a refusal show that no
    // request with this outRefundNo is pending at WeChat Pay: an earlier call that timed
    // out, or one running right now, may still land.
    let mut fresh = false;
    let refund = match reservation {
        RefundReservation::Created(r) | RefundReservation::Revived(r) => {
            fresh = true;
            crate::metric::refund_requested();
            r
        }
        RefundReservation::Existing(r) => {
            if amount.is_some_and(|a| a != r.amount) {
                return Err(AppError::Conflict(format!(
                    "outRefundNo {out_refund_no} is already a refund of {} fen",
                    r.amount
                )));
            }
            match r.status {
                RefundStatus::Success | RefundStatus::Closed => {
                    let status = r.status.as_str().to_ascii_uppercase();
                    return answer(app, &r, r.refund_id.clone(), status).await;
                }
                // WeChat Pay advises retrying a refused refund with its own number; its
                // amount is reserved again first, if it still fits. Only the call that
                // revived it is fresh. A concurrent retry that lost the race neither counts
                // as fresh nor sends a second request: the winner's may be on its way, and
                // a refusal of one with "not found" for the other would free an amount
                // WeChat Pay then takes.
                RefundStatus::Failed => match revived(app, &order, &out_refund_no).await? {
                    (r, true) => {
                        fresh = true;
                        r
                    }
                    (r, false) if matches!(r.status, RefundStatus::Success | RefundStatus::Closed) => {
                        let status = r.status.as_str().to_ascii_uppercase();
                        return answer(app, &r, r.refund_id.clone(), status).await;
                    }
                    (_, false) => {
                        return Err(AppError::RefundUnsettled {
                            out_refund_no,
                            reason: "another call is retrying it right now".into(),
                        })
                    }
                },
                // Still processing (an earlier call timed out, say): asking WeChat Pay
                // again with the same outRefundNo resolves it without a second refund.
                RefundStatus::Processing | RefundStatus::Abnormal => r,
            }
        }
        RefundReservation::OtherOrder(_) => {
            return Err(AppError::Conflict(format!(
                "outRefundNo {out_refund_no} already belongs to another order"
            )))
        }
        RefundReservation::OrderNotFound => return Err(AppError::NotFound("no such order".into())),
        RefundReservation::NotRefundable(status) => {
            return Err(AppError::Conflict(format!(
                "order {} is {}; only paid orders with something left to refund can be refunded",
                order.out_trade_no,
                status.as_str()
            )))
        }
        RefundReservation::Exceeds { requested, remaining } => {
            return Err(AppError::Conflict(format!(
                "a refund of {requested} fen exceeds what remains of order {} ({remaining} fen, counting refunds in flight)",
                order.out_trade_no
            )))
        }
    };

    let request = RefundRequest {
        transaction_id: None,
        out_trade_no: Some(order.out_trade_no.clone()),
        out_refund_no: refund.out_refund_no.clone(),
        reason: refund.reason.clone(),
        notify_url: Some(app.config.refund_notify_url.clone()),
        amount: RefundAmountRequest {
            refund: refund.amount,
            total: order.paid_amount.unwrap_or(order.amount),
            currency: "CNY".into(),
        },
    };
    match app.wechat.create_refund(&request).await {
        Ok(info) => {
            if let Some(id) = &info.refund_id {
                app.store.set_refund_id(&refund.out_refund_no, id).await?;
            }
            sync_final(app, &info).await?;
            log(
                app,
                &order,
                &refund.out_refund_no,
                refund.amount,
                "REFUND.CREATE",
                None,
            )
            .await;
            answer(app, &refund, info.refund_id.clone(), status_of(&info)).await
        }
        Err(e) => {
            log(
                app,
                &order,
                &refund.out_refund_no,
                refund.amount,
                "REFUND.ERROR",
                Some(e.to_string()),
            )
            .await;
            match &e {
                ClientError::Api { status, .. } if (400..500).contains(status) => {
                    settle_refused(app, &refund, e, fresh).await
                }
                // WeChat Pay may have taken it: the caller must retry with this number
                // (generated here when none was given), never with a new one.
                _ => Err(AppError::RefundUnsettled {
                    out_refund_no: refund.out_refund_no.clone(),
                    reason: unknown_outcome(&e),
                }),
            }
        }
    }
}

/// Re-reserves a refund WeChat Pay refused, for a retry with its own `outRefundNo`; and
/// whether this call did it (another call may have revived it a moment before).
async fn revived(
    app: &App,
    order: &Order,
    out_refund_no: &str,
) -> Result<(Refund, bool), AppError> {
    match app.store.revive_failed_refund(out_refund_no).await? {
        RefundReservation::Revived(r) => Ok((r, true)),
        RefundReservation::Existing(r) if r.status != RefundStatus::Failed => Ok((r, false)),
        RefundReservation::Exceeds { requested, remaining } => Err(AppError::Conflict(format!(
            "refund {out_refund_no} of {requested} fen no longer fits what remains of order {} ({remaining} fen, counting refunds in flight)",
            order.out_trade_no
        ))),
        RefundReservation::NotRefundable(status) => Err(AppError::Conflict(format!(
            "order {} is {}; refund {out_refund_no} cannot be retried",
            order.out_trade_no,
            status.as_str()
        ))),
        _ => Err(AppError::NotFound(format!("no refund {out_refund_no}"))),
    }
}

/// A refusal that shows this very request was not accepted: WeChat Pay answered (signed)
/// that it will not do it. A 429 only says "not now", and may answer a retry of a refund
/// an earlier, timed-out request already started.
fn proves_not_accepted(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, verified: true, .. } if (400..=404).contains(status))
}

/// After a 4xx, WeChat Pay is asked whether the refund exists, since an earlier attempt
/// with this `out_refund_no` may have been accepted. Only "it does not exist", after a
/// refusal that proves this attempt was not accepted, by a call that reserved the amount
/// itself (`fresh`: no earlier attempt can still be on its way), frees the amount.
async fn settle_refused(
    app: &App,
    refund: &Refund,
    refusal: ClientError,
    fresh: bool,
) -> Result<Value, AppError> {
    let no = &refund.out_refund_no;
    let unsettled = |reason: String| AppError::RefundUnsettled {
        out_refund_no: no.clone(),
        reason,
    };
    match app.wechat.query_refund(no).await {
        Ok(info) if info.out_refund_no.as_deref() == Some(no.as_str()) => {
            tracing::warn!(out_refund_no = %no, "refund refused ({refusal}) but WeChat Pay has it: recording its state");
            if let Some(id) = &info.refund_id {
                app.store.set_refund_id(no, id).await?;
            }
            sync_final(app, &info).await?;
            answer(app, refund, info.refund_id.clone(), status_of(&info)).await
        }
        Ok(_) => Err(AppError::Internal(
            "WeChat Pay answered about another refund".into(),
        )),
        Err(ClientError::Api {
            code,
            verified: true,
            ..
        }) if code == "RESOURCE_NOT_EXISTS" && fresh && proves_not_accepted(&refusal) => {
            // WeChat Pay refused it and does not have it: the amount is free again.
            app.store.fail_refund(no).await?;
            Err(refusal.into())
        }
        Err(query_error) => {
            tracing::warn!(out_refund_no = %no, "refund refused ({refusal}); its state is unknown ({query_error}): it stays processing");
            Err(unsettled(format!(
                "WeChat Pay answered {}",
                refusal_code(&refusal)
            )))
        }
    }
}

/// Why a refund's outcome is unknown, in words fit for the caller (no error text).
fn unknown_outcome(e: &ClientError) -> String {
    match e {
        ClientError::Timeout => "WeChat Pay did not answer in time".into(),
        ClientError::Api { status, .. } => format!("WeChat Pay answered HTTP {status}"),
        _ => "WeChat Pay's answer did not arrive or could not be used".into(),
    }
}

fn refusal_code(e: &ClientError) -> String {
    match e {
        ClientError::Api { status, code, .. } => format!("HTTP {status} {code}"),
        other => other.to_string(),
    }
}

/// How long the backend's delivery of an outcome learned in an answer may take before the
/// caller hears it; a delivery not done by then waits in the outbox.
const SYNC_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Records a final state WeChat Pay reported in an API answer.
async fn sync_final(app: &App, info: &RefundInfo) -> Result<(), AppError> {
    let courier = app.courier();
    let settled = app
        .settlement(&courier)
        .record_refund(info, "refund", None, SYNC_BUDGET)
        .await;
    match settled {
        Ok(_) => Ok(()),
        Err(SettleError::Store(e)) => Err(e.into()),
        // Logged and recorded by settlement; the refund keeps its amount reserved.
        Err(SettleError::Mismatch(m)) => Err(AppError::Conflict(format!(
            "WeChat Pay reports a refund that does not match ours ({m}); an operator must check it"
        ))),
    }
}

async fn answer(
    app: &App,
    refund: &Refund,
    refund_id: Option<String>,
    status: String,
) -> Result<Value, AppError> {
    let stored = app.store.get_refund(&refund.out_refund_no).await?;
    let out = RefundAnswer {
        out_refund_no: refund.out_refund_no.clone(),
        out_trade_no: refund.out_trade_no.clone(),
        refund_id: refund_id.or_else(|| stored.as_ref().and_then(|r| r.refund_id.clone())),
        status,
        amount: refund.amount,
        refund: stored,
    };
    serde_json::to_value(out).map_err(|e| AppError::Internal(e.to_string()))
}

pub async fn query(app: &App, call: &Call) -> Result<Value, AppError> {
    call.require_trusted("wxpay_refund_query")?;
    let req: QueryRequest = call.parse()?;
    if !is_valid_reference(&req.out_refund_no) {
        return Err(AppError::invalid("field `outRefundNo` is malformed"));
    }
    let info = match app.wechat.query_refund(&req.out_refund_no).await {
        Ok(info) => info,
        Err(ClientError::Api { code, .. })
            if code == "RESOURCE_NOT_EXISTS" || code == "NOT_FOUND" =>
        {
            return Err(AppError::NotFound(format!(
                "no refund {}",
                req.out_refund_no
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if info.out_refund_no.as_deref() != Some(req.out_refund_no.as_str()) {
        return Err(AppError::Internal(
            "WeChat Pay answered about another refund".into(),
        ));
    }
    if let Some(no) = &info.out_trade_no {
        crate::invocation::record_out_trade_no(no);
    }
    sync_final(app, &info).await?;
    let stored = app.store.get_refund(&req.out_refund_no).await?;
    let out = RefundAnswer {
        out_refund_no: req.out_refund_no.clone(),
        out_trade_no: info.out_trade_no.clone().unwrap_or_default(),
        refund_id: info.refund_id.clone(),
        status: status_of(&info),
        amount: info
            .amount
            .as_ref()
            .and_then(|a| a.refund)
            .unwrap_or_default(),
        refund: stored,
    };
    serde_json::to_value(out).map_err(|e| AppError::Internal(e.to_string()))
}
