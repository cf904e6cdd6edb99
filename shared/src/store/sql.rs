//! The statements both dialects run as written: positional `?` parameters, and nothing
//! either database lacks. The status lists come from [`super::rules`].

use once_cell::sync::Lazy;

use super::rules::{CLOSABLE_SQL, FAILABLE_SQL, UNPAID_SQL};

pub(super) const ORDER_COLS: &str = "out_trade_no, transaction_id, openid, user_id, \
     generation_id, package_type, business_type, business_id, amount, paid_amount, \
     refunded_amount, description, trade_type, status, paid_at, created_at, updated_at, \
     refund_reserved";

pub(super) const REFUND_COLS: &str =
    "out_refund_no, out_trade_no, refund_id, amount, status, reason, created_at, success_at";

pub(super) const OUTBOX_COLS: &str = "id, out_trade_no, business_type, payload, status, \
     attempts, last_error, next_try_at, created_at, delivered_at, lease_token";

pub(super) const LOG_COLS: &str = "`type`, out_trade_no, transaction_id, openid, package_type, \
     generation_id, event_type, amount_total, detail";

/// Binds: out_trade_no, openid, user_id, generation_id, package_type, business_type,
/// business_id, amount, description, trade_type, created_at, updated_at.
pub(super) static INSERT_ORDER: Lazy<String> = Lazy::new(|| {
    format!(
        "INSERT INTO orders ({ORDER_COLS}) \
         VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, 'pending', NULL, ?, ?, 0)"
    )
});

pub(super) static SELECT_ORDER: Lazy<String> =
    Lazy::new(|| format!("SELECT {ORDER_COLS} FROM orders WHERE out_trade_no = ?"));

pub(super) static SELECT_ORDER_BY_TRANSACTION: Lazy<String> = Lazy::new(|| {
    format!("SELECT {ORDER_COLS} FROM orders WHERE transaction_id = ? ORDER BY created_at LIMIT 1")
});

fn order_status_update(from: &str) -> String {
    format!(
        "UPDATE orders SET status = ?, updated_at = ? WHERE out_trade_no = ? AND status IN ({from})"
    )
}

/// Binds: status, updated_at, out_trade_no.
pub(super) static FAIL_ORDER: Lazy<String> = Lazy::new(|| order_status_update(&FAILABLE_SQL));
/// Binds: status, updated_at, out_trade_no.
pub(super) static CLOSE_ORDER: Lazy<String> = Lazy::new(|| order_status_update(&CLOSABLE_SQL));

/// The guarded `unpaid → paid` update (`refunded` for a payment WeChat Pay reports
/// already refunded): of any number of concurrent callers exactly one changes the row.
/// Binds: status, transaction_id, paid_amount, payer openid, paid_at, updated_at,
/// out_trade_no.
pub(super) static MARK_PAID: Lazy<String> = Lazy::new(|| {
    format!(
        "UPDATE orders SET status = ?, transaction_id = ?, paid_amount = ?, \
             openid = COALESCE(openid, ?), paid_at = ?, updated_at = ? \
         WHERE out_trade_no = ? AND status IN ({}{})",
        *UNPAID_SQL,
        if crate::planted::bug("unguarded-paid") {
            ", 'paid'"
        } else {
            ""
        }
    )
});

/// Binds: the log's nine columns, created_at.
pub(super) static INSERT_LOG: Lazy<String> = Lazy::new(|| {
    format!(
        "INSERT INTO payment_logs ({LOG_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
});

pub(super) static SELECT_REFUND: Lazy<String> =
    Lazy::new(|| format!("SELECT {REFUND_COLS} FROM refunds WHERE out_refund_no = ?"));

/// Binds: the refund's eight columns, then reserved_at (its created_at: a new row is
/// reserved as it is written).
pub(super) static INSERT_REFUND: Lazy<String> = Lazy::new(|| {
    format!("INSERT INTO refunds ({REFUND_COLS}, reserved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
});

/// `processing` refunds reserved before a time (a row without `reserved_at`, written by a
/// release before migration 3, counts from its creation), oldest first: the refund
/// sweep's work. Binds: before (twice), limit.
pub(super) static STALE_REFUNDS: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT {REFUND_COLS} FROM refunds WHERE status = 'processing' \
         AND (reserved_at < ? OR (reserved_at IS NULL AND created_at < ?)) \
         ORDER BY reserved_at, out_refund_no LIMIT ?"
    )
});

/// A result applied to a known refund, guarded by the status it was read in (which
/// [`super::rules::result_applies`] judged, and the order's totals move from): a refund that
/// changed since is not changed again. Binds: status, refund_id (kept when NULL),
/// success_at, amount, out_refund_no, the status read.
pub(super) const APPLY_REFUND_RESULT: &str = "UPDATE refunds SET status = ?, \
     refund_id = COALESCE(?, refund_id), success_at = ?, amount = ? \
     WHERE out_refund_no = ? AND status = ?";

/// Moves an order's totals by a refund transition ([`super::rules::OrderDelta`]): refunded
/// money adds to `refunded_amount` (and the order is `refunded` once nothing remains),
/// reserved money to `refund_reserved`, never below zero. Relative, so it is right
/// whatever the row held when it was read. `status` comes first: MySQL evaluates
/// assignments left to right, with the values already assigned, SQLite with the old ones;
/// first, both see the old row. Binds: refunded delta (twice), reserved delta (twice),
/// updated_at, out_trade_no.
pub(super) const ORDER_DELTA: &str = "UPDATE orders SET \
     status = CASE WHEN status = 'paid' AND refunded_amount + ? >= COALESCE(paid_amount, amount) \
         THEN 'refunded' ELSE status END, \
     refunded_amount = refunded_amount + ?, \
     refund_reserved = CASE WHEN refund_reserved + ? < 0 THEN 0 ELSE refund_reserved + ? END, \
     updated_at = ? \
     WHERE out_trade_no = ?";

/// [`ORDER_DELTA`] for a transition that is this store's decision — a reservation, a
/// revival, a refund we did not know recorded — guarded by that decision's own condition:
/// the order is paid (or recorded refunded before its refunds were known, see
/// [`super::rules::reserve_reported`]) and what it takes still fits what remains. Of concurrent writers that
/// read the same row, those the row no longer fits change nothing (0 rows), on one server
/// and on a multi-primary cluster alike. Binds: [`ORDER_DELTA`]'s, then what it takes.
pub(super) static GUARDED_ORDER_DELTA: Lazy<String> = Lazy::new(|| {
    format!(
        "{ORDER_DELTA} AND status IN ('paid', 'refunded') \
         AND COALESCE(paid_amount, amount) - refunded_amount - refund_reserved >= ?"
    )
});

pub(super) const SET_REFUND_ID: &str = "UPDATE refunds SET refund_id = ? WHERE out_refund_no = ?";

/// `processing → failed`; its order's `refund_reserved` gives the amount back in the same
/// transaction. Binds: out_refund_no.
pub(super) const FAIL_REFUND: &str =
    "UPDATE refunds SET status = 'failed' WHERE out_refund_no = ? AND status = 'processing'";

/// [`FAIL_REFUND`] for the refund sweep, guarded by "still reserved before the time it
/// looked": a refund revived (and sent again) since is not failed under the retry's feet.
/// Binds: out_refund_no, before (twice).
pub(super) const FAIL_STALE_REFUND: &str = "UPDATE refunds SET status = 'failed' \
     WHERE out_refund_no = ? AND status = 'processing' \
     AND (reserved_at < ? OR (reserved_at IS NULL AND created_at < ?))";

pub(super) static SELECT_OUTBOX: Lazy<String> =
    Lazy::new(|| format!("SELECT {OUTBOX_COLS} FROM notify_outbox WHERE id = ?"));

/// A claimed delivery that was never sent: the lease goes back and the claim's attempt is
/// taken back. Binds: id, lease_token.
pub(super) const RELEASE_UNATTEMPTED: &str = "UPDATE notify_outbox \
     SET attempts = attempts - 1, locked_until = NULL, lease_token = NULL \
     WHERE id = ? AND status = 'pending' AND lease_token = ?";

#[cfg(feature = "test-helpers")]
pub(super) const COUNT_ORDERS: &str = "SELECT COUNT(*) FROM orders";

#[cfg(feature = "test-helpers")]
pub(super) static OUTBOX_FOR_ORDER: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT {OUTBOX_COLS} FROM notify_outbox WHERE out_trade_no = ? ORDER BY created_at, id"
    )
});

#[cfg(feature = "test-helpers")]
pub(super) static LOGS_FOR_ORDER: Lazy<String> = Lazy::new(|| {
    format!("SELECT {LOG_COLS} FROM payment_logs WHERE out_trade_no = ? ORDER BY created_at, id")
});

#[cfg(feature = "test-helpers")]
pub(super) static REFUNDS_FOR_ORDER: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT {REFUND_COLS} FROM refunds WHERE out_trade_no = ? \
         ORDER BY created_at, out_refund_no"
    )
});

/// Longest `last_error` kept: enough to diagnose, small enough that a backend returning a
/// huge HTML error page does not bloat the table.
pub(super) const MAX_ERROR_CHARS: usize = 1000;

pub(super) fn truncated_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// `failed → processing` for a refused refund retried with its own number, after its
/// order's guarded reservation; of concurrent revivals exactly one changes the row. Binds:
/// reserved_at, out_refund_no.
pub(super) const REVIVE_FAILED_REFUND: &str = "UPDATE refunds SET status = 'processing', \
     reserved_at = ? WHERE out_refund_no = ? AND status = 'failed'";
