//! Reading orders back: a payer's orders page by page, and the totals operators watch.
//! Both are one indexed statement per call on either store.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Order, OrderStatus, StoreError};

/// Where a page starts: strictly after this order in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePosition {
    pub created_at: OffsetDateTime,
    pub out_trade_no: String,
}

/// One page of one payer's orders, newest first (`created_at`, then `out_trade_no`).
#[derive(Debug, Clone)]
pub struct OrderListQuery {
    pub openid: String,
    pub status: Option<OrderStatus>,
    pub after: Option<PagePosition>,
    /// Rows to return at most.
    pub limit: u32,
}

/// Which orders the totals cover; every filter is optional. `to` is exclusive.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub business_type: Option<String>,
}

/// Totals for the orders in one status. Amounts in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusTotals {
    pub status: OrderStatus,
    pub count: i64,
    /// Sum of the orders' amounts.
    pub amount: i64,
    /// Sum of what was refunded of them.
    pub refunded_amount: i64,
}

#[async_trait]
pub trait OrderHistory: Send + Sync {
    async fn list_orders(&self, query: &OrderListQuery) -> Result<Vec<Order>, StoreError>;

    /// One entry per status that has orders.
    async fn order_stats(&self, query: &StatsQuery) -> Result<Vec<StatusTotals>, StoreError>;
}

/// The `WHERE … ORDER BY … LIMIT` both dialects share; each binds the parameters in this
/// order: openid, [status], [created_at, created_at, out_trade_no], limit.
/// MySQL must also be told to use `MYSQL_LIST_INDEX`: without it MariaDB reads the payer's
/// whole history backwards from the newest order to reach a deep page.
pub(crate) const MYSQL_LIST_INDEX: &str = "idx_orders_openid_created";

pub(crate) fn list_orders_clause(query: &OrderListQuery) -> String {
    let mut sql = String::from("WHERE openid = ?");
    if query.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if query.after.is_some() {
        // `created_at <= ?` is what makes the page a range of the index; the OR then drops
        // the orders of that very millisecond up to and including the cursor's.
        sql.push_str(" AND created_at <= ? AND (created_at < ? OR out_trade_no < ?)");
    }
    sql.push_str(" ORDER BY created_at DESC, out_trade_no DESC LIMIT ?");
    sql
}

/// The `WHERE` of the totals; parameters in this order: [from], [to], [business_type].
pub(crate) fn stats_clause(query: &StatsQuery) -> String {
    let mut conditions = Vec::new();
    if query.from.is_some() {
        conditions.push("created_at >= ?");
    }
    if query.to.is_some() {
        conditions.push("created_at < ?");
    }
    if query.business_type.is_some() {
        conditions.push("business_type = ?");
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// One row of the totals query, checked: an unknown status is a store fault, not a zero.
pub(crate) fn status_totals(
    status: String,
    count: i64,
    amount: i64,
    refunded_amount: i64,
) -> Result<StatusTotals, StoreError> {
    Ok(StatusTotals {
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Query(format!("unknown order status `{status}`")))?,
        count,
        amount,
        refunded_amount,
    })
}
