//! Transactions that end explicitly. Every multi-statement change runs its steps on a
//! `Transaction` and hands the outcome to [`ended`], which sends COMMIT or ROLLBACK itself,
//! on every path, errors included: a lock is never left for the pool to clean up after the
//! connection comes back, which a sandbox frozen in between would postpone indefinitely.

use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::conn::Fail;
use super::{
    dt, insert_log, insert_refund, last_id, lock_order, move_order, select_order, select_refund,
};
use crate::store::rules::{self, existing_reservation, result_applies, OrderDelta};
use crate::store::{
    outbox_sql, sql, FinishedRefund, NewRefund, OutboxRow, PaidTransition, Refund, RefundDelivery,
    RefundOutcome, RefundReservation, RefundResult, RefundStatus,
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
            paid.status().as_str(),
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
    if let Some(refunded) = &paid.refunded {
        insert_log(tx, refunded, paid.now).await?;
    }
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
    let amount = match rules::reserve(&order, refund.amount) {
        Ok(amount) => amount,
        Err(refusal) => return Ok(End::Rollback(Some(refusal.into()))),
    };
    let created = rules::reserved_refund(refund, amount);
    let delta = OrderDelta::of(None, (created.status, amount));
    move_order(tx, &refund.out_trade_no, delta, true, refund.now).await?;
    if !insert_refund(tx, &created).await? {
        return Ok(End::Rollback(None));
    }
    Ok(End::Commit(Some(RefundReservation::Created(created))))
}

pub(super) async fn revive_failed_refund_in(
    tx: &mut Transaction<'_>,
    out_trade_no: &str,
    out_refund_no: &str,
) -> Result<End<RefundReservation>, Fail> {
    let order = lock_order(tx, out_trade_no).await?;
    let Some(refund) = select_refund(tx, out_refund_no).await? else {
        return Ok(End::Rollback(RefundReservation::OrderNotFound));
    };
    let Some(order) = order.filter(|_| refund.status == RefundStatus::Failed) else {
        return Ok(End::Rollback(RefundReservation::Existing(refund)));
    };
    if let Err(refusal) = rules::reserve(&order, Some(refund.amount)) {
        return Ok(End::Rollback(refusal.into()));
    }
    let revived = Refund {
        status: RefundStatus::Processing,
        ..refund.clone()
    };
    let delta = OrderDelta::of(
        Some((refund.status, refund.amount)),
        (revived.status, revived.amount),
    );
    move_order(
        tx,
        &refund.out_trade_no,
        delta,
        true,
        crate::util::now_utc(),
    )
    .await?;
    tx.exec_drop(
        sql::REVIVE_FAILED_REFUND,
        params![dt(crate::util::now_utc())?, out_refund_no],
    )
    .await?;
    if tx.affected_rows() != 1 {
        return Err(Fail::Conflict("the refund"));
    }
    Ok(End::Commit(RefundReservation::Revived(revived)))
}

/// `processing → failed`, its amount given back to the order. `false`: it was not
/// processing (or, with `before`, it was reserved again since).
pub(super) async fn fail_refund_in(
    tx: &mut Transaction<'_>,
    out_trade_no: &str,
    out_refund_no: &str,
    before: Option<time::OffsetDateTime>,
) -> Result<End<bool>, Fail> {
    lock_order(tx, out_trade_no).await?;
    let Some(refund) = select_refund(tx, out_refund_no).await? else {
        return Ok(End::Rollback(false));
    };
    if refund.status != RefundStatus::Processing {
        return Ok(End::Rollback(false));
    }
    match before {
        None => {
            tx.exec_drop(sql::FAIL_REFUND, params![out_refund_no])
                .await?
        }
        Some(before) => {
            let before = dt(before)?;
            tx.exec_drop(
                sql::FAIL_STALE_REFUND,
                params![out_refund_no, before, before],
            )
            .await?;
            if tx.affected_rows() == 0 {
                return Ok(End::Rollback(false));
            }
        }
    }
    if tx.affected_rows() != 1 {
        return Err(Fail::Conflict("the refund"));
    }
    let delta = OrderDelta::of(
        Some((refund.status, refund.amount)),
        (RefundStatus::Failed, refund.amount),
    );
    move_order(
        tx,
        &refund.out_trade_no,
        delta,
        false,
        crate::util::now_utc(),
    )
    .await?;
    Ok(End::Commit(true))
}

/// `None`: a concurrent caller inserted the same unknown refund first.
pub(super) async fn finish_refund_in(
    tx: &mut Transaction<'_>,
    result: &RefundResult,
) -> Result<End<Option<FinishedRefund>>, Fail> {
    // Serialises with reserve_refund and with duplicates of this result; see the module
    // comment of the store for why the lock precedes every read.
    let order = lock_order(tx, &result.out_trade_no).await?;
    let known = select_refund(tx, &result.out_refund_no).await?;
    if let Err(m) = rules::check_result(order.as_ref(), known.as_ref(), result) {
        return Ok(End::Rollback(Some(RefundOutcome::Mismatch(m).into())));
    }
    let recorded = match known {
        None => {
            // Made in the merchant portal (or our reservation was lost): record it as
            // WeChat Pay reports it, if it still fits what remains of the order.
            let r = rules::reported_refund(result);
            let delta = OrderDelta::of(None, (r.status, r.amount));
            move_order(tx, &result.out_trade_no, delta, true, result.now).await?;
            if !insert_refund(tx, &r).await? {
                return Ok(End::Rollback(None));
            }
            r
        }
        Some(known) => {
            if !result_applies(&known, result) {
                return Ok(End::Rollback(Some(RefundOutcome::Unchanged.into())));
            }
            let r = rules::applied_result(&known, result);
            tx.exec_drop(
                sql::APPLY_REFUND_RESULT,
                params![
                    r.status.as_str(),
                    &r.refund_id,
                    r.success_at.map(dt).transpose()?,
                    r.amount,
                    &r.out_refund_no,
                    known.status.as_str(),
                ],
            )
            .await?;
            if tx.affected_rows() != 1 {
                return Err(Fail::Conflict("the refund"));
            }
            // WeChat Pay's word on a refund we hold: recorded whatever remains.
            let delta = OrderDelta::of(Some((known.status, known.amount)), (r.status, r.amount));
            move_order(tx, &result.out_trade_no, delta, false, result.now).await?;
            r
        }
    };
    insert_log(tx, &result.log, result.now).await?;
    let outbox = match &result.delivery {
        Some(delivery) => queue_refund_delivery(tx, result, delivery, &recorded).await?,
        None => None,
    };
    Ok(End::Commit(Some(FinishedRefund {
        outcome: RefundOutcome::Applied,
        outbox,
    })))
}

/// Queues the delivery of a refund outcome just recorded, with the order as the
/// transition left it, leased to this caller.
async fn queue_refund_delivery(
    tx: &mut Transaction<'_>,
    result: &RefundResult,
    delivery: &RefundDelivery,
    refund: &Refund,
) -> Result<Option<OutboxRow>, Fail> {
    let Some(order) = select_order(tx, &result.out_trade_no).await? else {
        return Ok(None);
    };
    let payload = (delivery.payload)(&order, refund);
    let lease = rules::new_lease_token();
    tx.exec_drop(
        &outbox_sql::MYSQL.insert_leased,
        params![
            &order.out_trade_no,
            &order.business_type,
            &payload,
            outbox_sql::secs(delivery.lease_secs),
            &lease,
            dt(result.now)?,
        ],
    )
    .await?;
    let id = last_id(tx.last_insert_id())?;
    Ok(Some(rules::leased_row(
        id,
        &order.out_trade_no,
        order.business_type.clone(),
        payload,
        lease,
        result.now,
    )))
}
