//! Transactions that end explicitly. Every multi-statement change runs its steps on a
//! `Transaction` and hands the outcome to [`ended`], which sends COMMIT or ROLLBACK itself,
//! on every path, errors included: a lock is never left for the pool to clean up after the
//! connection comes back, which a sandbox frozen in between would postpone indefinitely.

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Transaction, Value};

use super::conn::Fail;
use super::{dt, insert_log, insert_refund, last_id, lock_order, select_refund};
use crate::store::rules::{self, after_refund, existing_reservation, result_applies};
use crate::store::{
    outbox_sql, sql, NewRefund, OrderStatus, OutboxRow, PaidTransition, Refund, RefundOutcome,
    RefundReservation, RefundResult, RefundStatus,
};

/// What a transaction's steps decided.
pub(super) enum End<T> {
    Commit(T),
    Rollback(T),
}

/// Ends `tx` as its steps decided, and rolls back after an error in them.
pub(super) async fn ended<T>(tx: Transaction<'_>, work: Result<End<T>, Fail>) -> Result<T, Fail> {
    match work {
        Ok(End::Commit(value)) => {
            tx.commit().await?;
            Ok(value)
        }
        Ok(End::Rollback(value)) => {
            tx.rollback().await?;
            Ok(value)
        }
        Err(failure) => {
            if let Err(e) = tx.rollback().await {
                // The connection is broken; the server ends the transaction with it.
                tracing::warn!("rollback after a failed transaction step failed: {e}");
            }
            Err(failure)
        }
    }
}

/// `None`: the order was not pending (rolled back).
pub(super) async fn mark_paid_in(
    tx: &mut Transaction<'_>,
    paid: &PaidTransition,
) -> Result<End<Option<OutboxRow>>, Fail> {
    let now = dt(paid.now)?;
    tx.exec_drop(
        &*sql::MARK_PAID,
        params![
            &paid.transaction_id,
            paid.paid_amount,
            &paid.payer_openid,
            dt(paid.paid_at)?,
            now,
            &paid.out_trade_no,
        ],
    )
    .await?;
    if tx.affected_rows() != 1 {
        return Ok(End::Rollback(None));
    }
    insert_log(tx, &paid.log, paid.now).await?;
    let lease = rules::new_lease_token();
    tx.exec_drop(
        &outbox_sql::MYSQL.insert_leased,
        params![
            &paid.out_trade_no,
            &paid.business_type,
            &paid.outbox_payload,
            outbox_sql::secs(paid.lease_secs),
            &lease,
            now,
        ],
    )
    .await?;
    let id = last_id(tx.last_insert_id())?;
    Ok(End::Commit(Some(rules::leased_outbox_row(id, paid, lease))))
}

/// `None`: the refund number was taken concurrently (rolled back).
pub(super) async fn reserve_refund_in(
    tx: &mut Transaction<'_>,
    refund: &NewRefund,
) -> Result<End<Option<RefundReservation>>, Fail> {
    // The lock comes first: see the module comment of the store.
    let order = lock_order(tx, &refund.out_trade_no).await?;
    if let Some(existing) = select_refund(tx, &refund.out_refund_no).await? {
        return Ok(End::Rollback(Some(existing_reservation(
            existing,
            &refund.out_trade_no,
        ))));
    }
    let Some(order) = order else {
        return Ok(End::Rollback(Some(RefundReservation::OrderNotFound)));
    };
    let in_flight: Option<i64> = if order.status == OrderStatus::Paid {
        tx.exec_first(&*sql::IN_FLIGHT_SUM, params![&refund.out_trade_no])
            .await?
    } else {
        None
    };
    let amount = match rules::reserve(&order, in_flight.unwrap_or(0), refund.amount) {
        Ok(amount) => amount,
        Err(refusal) => return Ok(End::Rollback(Some(refusal.into()))),
    };
    let created = rules::reserved_refund(refund, amount);
    if !insert_refund(tx, &created).await? {
        return Ok(End::Rollback(None));
    }
    Ok(End::Commit(Some(RefundReservation::Created(created))))
}

pub(super) async fn revive_failed_refund_in(
    tx: &mut Transaction<'_>,
    seen: Refund,
    out_refund_no: &str,
) -> Result<End<RefundReservation>, Fail> {
    // The lock comes first: see the module comment of the store.
    let order = lock_order(tx, &seen.out_trade_no).await?;
    let Some(refund) = select_refund(tx, out_refund_no).await? else {
        return Ok(End::Rollback(RefundReservation::OrderNotFound));
    };
    let Some(order) = order.filter(|_| refund.status == RefundStatus::Failed) else {
        return Ok(End::Rollback(RefundReservation::Existing(refund)));
    };
    let in_flight: Option<i64> = tx
        .exec_first(&*sql::IN_FLIGHT_SUM, params![&refund.out_trade_no])
        .await?;
    if let Err(refusal) = rules::reserve(&order, in_flight.unwrap_or(0), Some(refund.amount)) {
        return Ok(End::Rollback(refusal.into()));
    }
    tx.exec_drop(sql::REVIVE_FAILED_REFUND, params![out_refund_no])
        .await?;
    Ok(End::Commit(RefundReservation::Existing(Refund {
        status: RefundStatus::Processing,
        ..refund
    })))
}

/// `None`: a concurrent caller inserted the same unknown refund first.
pub(super) async fn finish_refund_in(
    tx: &mut Transaction<'_>,
    result: &RefundResult,
) -> Result<End<Option<RefundOutcome>>, Fail> {
    // Serialises with reserve_refund and with duplicates of this result; see the module
    // comment of the store for why the lock precedes every read.
    let order = lock_order(tx, &result.out_trade_no).await?;
    let known = select_refund(tx, &result.out_refund_no).await?;
    let in_flight: Option<i64> = tx
        .exec_first(&*sql::IN_FLIGHT_SUM, params![&result.out_trade_no])
        .await?;
    let checked = rules::check_result(
        order.as_ref(),
        known.as_ref(),
        in_flight.unwrap_or(0),
        result,
    );
    if let Err(m) = checked {
        return Ok(End::Rollback(Some(RefundOutcome::Mismatch(m))));
    }
    match known {
        None => {
            // Made in the merchant portal (or our reservation was lost): record it as
            // WeChat Pay reports it.
            if !insert_refund(tx, &rules::reported_refund(result)).await? {
                return Ok(End::Rollback(None));
            }
        }
        Some(known) => {
            if !result_applies(&known, result) {
                return Ok(End::Rollback(Some(RefundOutcome::Unchanged)));
            }
            let r = rules::applied_result(&known, result);
            tx.exec_drop(
                &*sql::APPLY_REFUND_RESULT,
                params![
                    r.status.as_str(),
                    &r.refund_id,
                    r.success_at.map(dt).transpose()?,
                    r.amount,
                    &r.out_refund_no,
                ],
            )
            .await?;
            if tx.affected_rows() != 1 {
                return Ok(End::Rollback(Some(RefundOutcome::Unchanged)));
            }
        }
    }
    if let (RefundStatus::Success, Some(order)) = (result.status, &order) {
        let (refunded, status) = after_refund(order, result.amount);
        tx.exec_drop(
            sql::SET_ORDER_REFUNDED,
            params![
                refunded,
                status.as_str(),
                dt(result.now)?,
                &result.out_trade_no
            ],
        )
        .await?;
    }
    insert_log(tx, &result.log, result.now).await?;
    Ok(End::Commit(Some(RefundOutcome::Applied)))
}
