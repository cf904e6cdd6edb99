//! The bodies the business backend receives (contract §8): one per event, `payment` or
//! `refund`, each saying the order's status and its paid and refunded amounts as the
//! transition that queued it left them. Payment bodies keep every field they had before
//! `event` existed, so a backend written for them keeps working.

use crate::store::{rules::paid_total, Order, OrderStatus, Refund};

/// A payment recorded: `status` is `paid`, or `refunded` when WeChat Pay reported the
/// payment already refunded — never `paid` alone for money that went back. Its refunded
/// amount is `null` then: WeChat Pay said a refund exists, not how much it was.
pub(super) fn payment(
    order: &Order,
    transaction_id: &str,
    payer_openid: Option<String>,
    total: i64,
    status: OrderStatus,
) -> String {
    let refunded_amount = match status {
        OrderStatus::Refunded => None,
        _ => Some(order.refunded_amount),
    };
    serde_json::json!({
        "event": "payment",
        "outTradeNo": order.out_trade_no,
        "transactionId": transaction_id,
        "status": status.as_str(),
        "packageType": order.package_type,
        "generationId": order.generation_id,
        "openid": order.openid.clone().or(payer_openid),
        "userId": order.user_id,
        "businessType": order.business_type,
        "businessId": order.business_id,
        "amount": total,
        "paidAmount": total,
        "refundedAmount": refunded_amount,
        "orderStatus": status.as_str(),
    })
    .to_string()
}

/// A refund outcome recorded (`success`, `closed`, `abnormal`), with the order after it.
pub(super) fn refund(order: &Order, refund: &Refund) -> String {
    serde_json::json!({
        "event": "refund",
        "outTradeNo": order.out_trade_no,
        "transactionId": order.transaction_id,
        "outRefundNo": refund.out_refund_no,
        "refundId": refund.refund_id,
        "status": refund.status.as_str(),
        "amount": refund.amount,
        "paidAmount": paid_total(order),
        "refundedAmount": order.refunded_amount,
        "orderStatus": order.status.as_str(),
        "packageType": order.package_type,
        "generationId": order.generation_id,
        "openid": order.openid,
        "userId": order.user_id,
        "businessType": order.business_type,
        "businessId": order.business_id,
    })
    .to_string()
}
