//! Rows into values, once for both dialects: each dialect only says how to read one typed
//! column of its own row type.

use time::{OffsetDateTime, UtcOffset};

use super::{Order, OrderStatus, OutboxRow, OutboxStatus, Refund, RefundStatus, StoreError};

/// One row of a result, read column by column.
pub(super) trait Fields {
    fn text(&mut self, idx: usize) -> Result<Option<String>, StoreError>;
    fn int(&mut self, idx: usize) -> Result<Option<i64>, StoreError>;
    fn time(&mut self, idx: usize) -> Result<Option<OffsetDateTime>, StoreError>;
}

fn missing(idx: usize) -> StoreError {
    // The value itself is left out: it may be an openid or a payload.
    StoreError::Query(format!("column {idx} is NULL"))
}

fn text(r: &mut dyn Fields, idx: usize) -> Result<String, StoreError> {
    r.text(idx)?.ok_or_else(|| missing(idx))
}

fn int(r: &mut dyn Fields, idx: usize) -> Result<i64, StoreError> {
    r.int(idx)?.ok_or_else(|| missing(idx))
}

fn time(r: &mut dyn Fields, idx: usize) -> Result<OffsetDateTime, StoreError> {
    r.time(idx)?.ok_or_else(|| missing(idx))
}

fn status<T>(
    r: &mut dyn Fields,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let s = text(r, idx)?;
    parse(&s).ok_or_else(|| StoreError::Query(format!("unknown status {s:?} in column {idx}")))
}

/// A row of [`super::sql::ORDER_COLS`].
pub(super) fn order(r: &mut dyn Fields) -> Result<Order, StoreError> {
    Ok(Order {
        out_trade_no: text(r, 0)?,
        transaction_id: r.text(1)?,
        openid: r.text(2)?,
        user_id: r.text(3)?,
        generation_id: r.text(4)?,
        package_type: r.text(5)?,
        business_type: r.text(6)?,
        business_id: r.text(7)?,
        amount: int(r, 8)?,
        paid_amount: r.int(9)?,
        refunded_amount: int(r, 10)?,
        description: text(r, 11)?,
        trade_type: text(r, 12)?,
        status: status(r, 13, OrderStatus::parse)?,
        paid_at: r.time(14)?,
        created_at: time(r, 15)?,
        updated_at: time(r, 16)?,
        refund_reserved: int(r, 17)?,
    })
}

/// A row of [`super::sql::REFUND_COLS`].
pub(super) fn refund(r: &mut dyn Fields) -> Result<Refund, StoreError> {
    Ok(Refund {
        out_refund_no: text(r, 0)?,
        out_trade_no: text(r, 1)?,
        refund_id: r.text(2)?,
        amount: int(r, 3)?,
        status: status(r, 4, RefundStatus::parse)?,
        reason: r.text(5)?,
        created_at: time(r, 6)?,
        success_at: r.time(7)?,
    })
}

/// A row of [`super::sql::OUTBOX_COLS`].
pub(super) fn outbox(r: &mut dyn Fields) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: int(r, 0)?,
        out_trade_no: text(r, 1)?,
        business_type: r.text(2)?,
        payload: text(r, 3)?,
        status: status(r, 4, OutboxStatus::parse)?,
        attempts: int(r, 5)?,
        last_error: r.text(6)?,
        next_try_at: time(r, 7)?,
        created_at: time(r, 8)?,
        delivered_at: r.time(9)?,
        lease: r.text(10)?,
    })
}

/// A row of [`super::sql::LOG_COLS`].
#[cfg(feature = "test-helpers")]
pub(super) fn log(r: &mut dyn Fields) -> Result<super::PaymentLog, StoreError> {
    Ok(super::PaymentLog {
        log_type: text(r, 0)?,
        out_trade_no: r.text(1)?,
        transaction_id: r.text(2)?,
        openid: r.text(3)?,
        package_type: r.text(4)?,
        generation_id: r.text(5)?,
        event_type: r.text(6)?,
        amount_total: r.int(7)?,
        detail: r.text(8)?,
    })
}

/// What both stores keep of a time: milliseconds in UTC (MySQL `DATETIME(3)`), so a value
/// read back equals the one written, whichever store.
pub(super) fn stored(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}
