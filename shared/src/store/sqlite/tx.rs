//! The store's transactions on SQLite, each one `BEGIN IMMEDIATE` (the write lock first, so
//! what they read cannot change before they write). The decisions are [`rules`]', the
//! statements `sql`'s, the same as MySQL's; dropping an unfinished transaction rolls back.

use rusqlite::{params, Connection, TransactionBehavior};

use super::{exec, map_err, move_order, select_order, select_refund, ts, ts_opt, write_log};
use super::{insert_refund, SqliteStore};
use crate::store::rules::{self, existing_reservation, result_applies, OrderDelta};
use crate::store::{
    outbox_sql, sql, FinishedRefund, NewRefund, OutboxRow, PaidOutcome, PaidTransition, Refund,
    RefundDelivery, RefundOutcome, RefundReservation, RefundResult, RefundStatus, StoreError,
};
use crate::util::now_utc;

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)
}

impl SqliteStore {
    pub(super) fn mark_paid_sync(
        conn: &mut Connection,
        paid: &PaidTransition,
    ) -> Result<PaidOutcome, StoreError> {
        let tx = immediate(conn)?;
        let now = ts(paid.now)?;
        let changed = exec(
            &tx,
            &sql::MARK_PAID,
            params![
                paid.status().as_str(),
                paid.transaction_id,
                paid.paid_amount,
                paid.payer_openid,
                ts(paid.paid_at)?,
                now,
                paid.out_trade_no,
            ],
        )?;
        if changed != 1 {
            // Dropping `tx` rolls back; nothing was written anyway.
            return Ok(match select_order(&tx, &paid.out_trade_no)? {
                Some(order) => PaidOutcome::AlreadyPaid(order),
                None => PaidOutcome::NotFound,
            });
        }
        write_log(&tx, &paid.log, paid.now)?;
        if let Some(refunded) = &paid.refunded {
            write_log(&tx, refunded, paid.now)?;
        }
        let lease = rules::new_lease_token();
        exec(
            &tx,
            &outbox_sql::SQLITE.insert_leased,
            params![
                paid.out_trade_no,
                paid.business_type,
                paid.outbox_payload,
                outbox_sql::secs(paid.lease_secs),
                lease,
                now,
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(map_err)?;
        Ok(PaidOutcome::Transitioned {
            outbox: rules::leased_outbox_row(id, paid, lease),
        })
    }

    pub(super) fn reserve_refund_sync(
        conn: &mut Connection,
        refund: &NewRefund,
    ) -> Result<RefundReservation, StoreError> {
        let tx = immediate(conn)?;
        if let Some(existing) = select_refund(&tx, &refund.out_refund_no)? {
            return Ok(existing_reservation(existing, &refund.out_trade_no));
        }
        let Some(order) = select_order(&tx, &refund.out_trade_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        let amount = match rules::reserve(&order, refund.amount) {
            Ok(amount) => amount,
            Err(refusal) => return Ok(refusal.into()),
        };
        let created = rules::reserved_refund(refund, amount);
        let delta = OrderDelta::of(None, (created.status, amount));
        move_order(&tx, &refund.out_trade_no, delta, true, refund.now)?;
        insert_refund(&tx, &created)?;
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Created(created))
    }

    pub(super) fn revive_failed_refund_sync(
        conn: &mut Connection,
        out_refund_no: &str,
    ) -> Result<RefundReservation, StoreError> {
        let tx = immediate(conn)?;
        let Some(refund) = select_refund(&tx, out_refund_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if refund.status != RefundStatus::Failed {
            return Ok(RefundReservation::Existing(refund));
        }
        let Some(order) = select_order(&tx, &refund.out_trade_no)? else {
            return Ok(RefundReservation::OrderNotFound);
        };
        if let Err(refusal) = rules::reserve(&order, Some(refund.amount)) {
            return Ok(refusal.into());
        }
        let revived = Refund {
            status: RefundStatus::Processing,
            ..refund.clone()
        };
        let delta = OrderDelta::of(
            Some((refund.status, refund.amount)),
            (revived.status, revived.amount),
        );
        move_order(&tx, &refund.out_trade_no, delta, true, now_utc())?;
        let revived_at = ts(now_utc())?;
        if exec(
            &tx,
            sql::REVIVE_FAILED_REFUND,
            params![revived_at, out_refund_no],
        )? != 1
        {
            return Err(StoreError::Query(format!(
                "refund {out_refund_no} changed inside a write transaction"
            )));
        }
        tx.commit().map_err(map_err)?;
        Ok(RefundReservation::Revived(revived))
    }

    /// `before`: only if still reserved before then (the sweep).
    pub(super) fn fail_refund_sync(
        conn: &mut Connection,
        out_refund_no: &str,
        before: Option<time::OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let tx = immediate(conn)?;
        let Some(refund) = select_refund(&tx, out_refund_no)? else {
            return Ok(false);
        };
        let changed = match before {
            None => exec(&tx, sql::FAIL_REFUND, [out_refund_no])?,
            Some(before) => {
                let before = ts(before)?;
                exec(
                    &tx,
                    sql::FAIL_STALE_REFUND,
                    params![out_refund_no, before, before],
                )?
            }
        };
        if changed != 1 {
            return Ok(false);
        }
        let delta = OrderDelta::of(
            Some((refund.status, refund.amount)),
            (RefundStatus::Failed, refund.amount),
        );
        move_order(&tx, &refund.out_trade_no, delta, false, now_utc())?;
        tx.commit().map_err(map_err)?;
        Ok(true)
    }

    pub(super) fn finish_refund_sync(
        conn: &mut Connection,
        result: &RefundResult,
    ) -> Result<FinishedRefund, StoreError> {
        rules::require_final(result)?;
        let tx = immediate(conn)?;
        let order = select_order(&tx, &result.out_trade_no)?;
        let known = select_refund(&tx, &result.out_refund_no)?;
        if let Err(m) = rules::check_result(order.as_ref(), known.as_ref(), result) {
            return Ok(RefundOutcome::Mismatch(m).into());
        }
        let recorded = match known {
            None => {
                let r = rules::reported_refund(result);
                let delta = OrderDelta::of(None, (r.status, r.amount));
                move_order(&tx, &result.out_trade_no, delta, true, result.now)?;
                insert_refund(&tx, &r)?;
                r
            }
            Some(known) => {
                if !result_applies(&known, result) {
                    return Ok(RefundOutcome::Unchanged.into());
                }
                let r = rules::applied_result(&known, result);
                let changed = exec(
                    &tx,
                    sql::APPLY_REFUND_RESULT,
                    params![
                        r.status.as_str(),
                        r.refund_id,
                        ts_opt(r.success_at)?,
                        r.amount,
                        r.out_refund_no,
                        known.status.as_str(),
                    ],
                )?;
                if changed != 1 {
                    return Ok(RefundOutcome::Unchanged.into());
                }
                let delta =
                    OrderDelta::of(Some((known.status, known.amount)), (r.status, r.amount));
                move_order(&tx, &result.out_trade_no, delta, false, result.now)?;
                r
            }
        };
        write_log(&tx, &result.log, result.now)?;
        let outbox = match &result.delivery {
            Some(delivery) => queue_refund_delivery(&tx, result, delivery, &recorded)?,
            None => None,
        };
        tx.commit().map_err(map_err)?;
        Ok(FinishedRefund {
            outcome: RefundOutcome::Applied,
            outbox,
        })
    }
}

/// Queues the delivery of a refund outcome just recorded, with the order as the
/// transition left it, leased to this caller.
fn queue_refund_delivery(
    tx: &Connection,
    result: &RefundResult,
    delivery: &RefundDelivery,
    refund: &Refund,
) -> Result<Option<OutboxRow>, StoreError> {
    let Some(order) = select_order(tx, &result.out_trade_no)? else {
        return Ok(None);
    };
    let payload = (delivery.payload)(&order, refund);
    let lease = rules::new_lease_token();
    exec(
        tx,
        &outbox_sql::SQLITE.insert_leased,
        params![
            order.out_trade_no,
            order.business_type,
            payload,
            outbox_sql::secs(delivery.lease_secs),
            lease,
            ts(result.now)?,
        ],
    )?;
    Ok(Some(rules::leased_row(
        tx.last_insert_rowid(),
        &order.out_trade_no,
        order.business_type.clone(),
        payload,
        lease,
        result.now,
    )))
}
