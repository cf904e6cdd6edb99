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

/// A statement parameter, before a dialect turns it into its own value type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Time(OffsetDateTime),
    Int(i64),
}

/// MySQL must be told to use this index: without it MariaDB reads the payer's whole
/// history backwards from the newest order to reach a deep page.
pub(crate) const MYSQL_LIST_INDEX: &str = "idx_orders_openid_created";

/// The `WHERE … ORDER BY … LIMIT` of a page, with its parameters in binding order, so the
/// two can never disagree.
pub(crate) fn list_orders_clause(query: &OrderListQuery) -> (String, Vec<Param>) {
    let mut sql = String::from("WHERE openid = ?");
    let mut params = vec![Param::Text(query.openid.clone())];
    if let Some(status) = query.status {
        sql.push_str(" AND status = ?");
        params.push(Param::Text(status.as_str().to_string()));
    }
    if let Some(after) = &query.after {
        // `created_at <= ?` is what makes the page a range of the index; the OR then drops
        // the orders of that very millisecond up to and including the cursor's.
        sql.push_str(" AND created_at <= ? AND (created_at < ? OR out_trade_no < ?)");
        params.extend([
            Param::Time(after.created_at),
            Param::Time(after.created_at),
            Param::Text(after.out_trade_no.clone()),
        ]);
    }
    sql.push_str(" ORDER BY created_at DESC, out_trade_no DESC LIMIT ?");
    params.push(Param::Int(i64::from(query.limit)));
    (sql, params)
}

/// The `WHERE` of the totals (empty without filters), with its parameters in binding order.
pub(crate) fn stats_clause(query: &StatsQuery) -> (String, Vec<Param>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(from) = query.from {
        conditions.push("created_at >= ?");
        params.push(Param::Time(from));
    }
    if let Some(to) = query.to {
        conditions.push("created_at < ?");
        params.push(Param::Time(to));
    }
    if let Some(business) = &query.business_type {
        conditions.push("business_type = ?");
        params.push(Param::Text(business.clone()));
    }
    let sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (sql, params)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(sql: &str) -> usize {
        sql.matches('?').count()
    }

    #[test]
    fn every_clause_binds_as_many_parameters_as_it_has_placeholders() {
        let t = OffsetDateTime::UNIX_EPOCH;
        for status in [None, Some(OrderStatus::Paid)] {
            for after in [
                None,
                Some(PagePosition {
                    created_at: t,
                    out_trade_no: "WX1".into(),
                }),
            ] {
                let query = OrderListQuery {
                    openid: "o".into(),
                    status,
                    after,
                    limit: 21,
                };
                let (sql, params) = list_orders_clause(&query);
                assert_eq!(placeholders(&sql), params.len(), "{sql}");
                assert_eq!(params.last(), Some(&Param::Int(21)));
            }
        }
        let all = StatsQuery {
            from: Some(t),
            to: Some(t),
            business_type: Some("vip".into()),
        };
        for query in [StatsQuery::default(), all] {
            let (sql, params) = stats_clause(&query);
            assert_eq!(placeholders(&sql), params.len(), "{sql}");
        }
    }
}
