//! The outbox statements, timed by the database's clock.
//!
//! Leases and retry times decide who may send a delivery. Instances' clocks drift apart; if
//! each computed lease ends from its own clock, an instance running ahead would see a
//! lease as lapsed while its holder is still sending, and take the row over. So every
//! outbox time is written and compared as the database's `now`, the one clock all
//! instances share, and callers pass only durations. These are the only statements whose
//! text differs by dialect, in how each spells "now" and "now plus n seconds".

use once_cell::sync::Lazy;

use super::schema::Dialect;

/// The outbox statements of one dialect.
pub(super) struct OutboxSql {
    /// A delivery queued already leased to the instance that queued it, its first attempt
    /// counted, due at once should that lease lapse: nobody else sends it while that
    /// instance tries. Binds: out_trade_no, business_type, payload, lease_secs,
    /// lease_token, created_at.
    pub insert_leased: String,
    /// The guarded lease: only a pending row whose lease has lapsed can be taken, so of any
    /// number of concurrent claimers exactly one sees a changed row, and the lease token it
    /// writes is its own. Binds: lease_secs, lease_token, id.
    pub claim: String,
    /// Binds: force, limit.
    pub due_ids: String,
    /// Every write that ends a delivery names the lease it holds: a holder whose lease
    /// lapsed and was taken over changes nothing. Binds: id, lease_token.
    pub mark_delivered: String,
    /// Binds: last_error, retry_in_secs, id, lease_token.
    pub mark_delivery_failed: String,
    /// Whole seconds since the oldest pending delivery was queued, by the database's now;
    /// NULL when nothing is pending. No binds.
    pub oldest_pending_secs: String,
}

/// A lease or retry delay as bound: never negative, and at most a day, so that no dialect
/// meets a time out of its range (SQLite's date functions answer NULL there, and a NULL
/// `locked_until` would read as "not leased").
pub(super) fn secs(n: i64) -> i64 {
    n.clamp(0, 86_400)
}

/// The database's `now` and `now + ? seconds`, in the form each stores times (SQLite keeps
/// fixed-width UTC text, so the string comparisons below stay chronological).
fn clock(dialect: Dialect) -> (&'static str, &'static str) {
    match dialect {
        Dialect::MySql => ("UTC_TIMESTAMP(3)", "(UTC_TIMESTAMP(3) + INTERVAL ? SECOND)"),
        Dialect::Sqlite => (
            "strftime('%Y-%m-%d %H:%M:%f', 'now')",
            "strftime('%Y-%m-%d %H:%M:%f', 'now', ? || ' seconds')",
        ),
    }
}

impl OutboxSql {
    fn new(dialect: Dialect) -> Self {
        let (now, now_plus) = clock(dialect);
        OutboxSql {
            insert_leased: format!(
                "INSERT INTO notify_outbox (out_trade_no, business_type, payload, status, \
                 attempts, next_try_at, locked_until, lease_token, created_at) \
                 VALUES (?, ?, ?, 'pending', 1, {now}, {now_plus}, ?, ?)"
            ),
            claim: format!(
                "UPDATE notify_outbox \
                 SET locked_until = {now_plus}, lease_token = ?, attempts = attempts + 1 \
                 WHERE id = ? AND status = 'pending' \
                   AND (locked_until IS NULL OR locked_until <= {now})"
            ),
            due_ids: format!(
                "SELECT id FROM notify_outbox \
                 WHERE status = 'pending' AND (? OR next_try_at <= {now}) \
                   AND (locked_until IS NULL OR locked_until <= {now}) \
                 ORDER BY created_at, id LIMIT ?"
            ),
            mark_delivered: format!(
                "UPDATE notify_outbox SET status = 'delivered', delivered_at = {now}, \
                 locked_until = NULL, lease_token = NULL \
                 WHERE id = ? AND status = 'pending' AND lease_token = ?"
            ),
            mark_delivery_failed: format!(
                "UPDATE notify_outbox SET last_error = ?, next_try_at = {now_plus}, \
                 locked_until = NULL, lease_token = NULL \
                 WHERE id = ? AND status = 'pending' AND lease_token = ?"
            ),
            oldest_pending_secs: match dialect {
                Dialect::MySql => {
                    "SELECT TIMESTAMPDIFF(SECOND, MIN(created_at), UTC_TIMESTAMP(3)) \
                     FROM notify_outbox WHERE status = 'pending'"
                        .into()
                }
                Dialect::Sqlite => "SELECT CAST((julianday('now') - julianday(MIN(created_at))) \
                     * 86400 AS INTEGER) FROM notify_outbox WHERE status = 'pending'"
                    .into(),
            },
        }
    }
}

pub(super) static MYSQL: Lazy<OutboxSql> = Lazy::new(|| OutboxSql::new(Dialect::MySql));
#[cfg(feature = "sqlite")]
pub(super) static SQLITE: Lazy<OutboxSql> = Lazy::new(|| OutboxSql::new(Dialect::Sqlite));

/// Test helper: moves every time of an order's outbox rows `?` seconds into the past, as
/// if that much time had gone by. Binds: secs, secs, secs, out_trade_no.
#[cfg(feature = "test-helpers")]
pub(super) fn rewind(dialect: Dialect) -> String {
    let back = |col: &str| match dialect {
        Dialect::MySql => format!("{col} = {col} - INTERVAL ? SECOND"),
        Dialect::Sqlite => {
            format!("{col} = strftime('%Y-%m-%d %H:%M:%f', {col}, '-' || ? || ' seconds')")
        }
    };
    format!(
        "UPDATE notify_outbox SET {}, {}, {} WHERE out_trade_no = ?",
        back("next_try_at"),
        back("locked_until"),
        back("delivered_at")
    )
}
