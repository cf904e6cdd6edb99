//! [`OrderHistory`] on SQLite.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::{all, ts, SqliteStore};
use crate::store::history::{
    list_orders_clause, stats_clause, status_totals, OrderHistory, OrderListQuery, StatsQuery,
    StatusTotals,
};
use crate::store::rows::{self, Fields};
use crate::store::sql::ORDER_COLS;
use crate::store::{Order, StoreError};

#[async_trait]
impl OrderHistory for SqliteStore {
    async fn list_orders(&self, query: &OrderListQuery) -> Result<Vec<Order>, StoreError> {
        let mut params = vec![Value::from(query.openid.clone())];
        if let Some(status) = query.status {
            params.push(Value::from(status.as_str().to_string()));
        }
        if let Some(after) = &query.after {
            let at = ts(after.created_at)?;
            params.extend([
                Value::from(at.clone()),
                Value::from(at),
                Value::from(after.out_trade_no.clone()),
            ]);
        }
        params.push(Value::from(i64::from(query.limit)));
        let sql = format!(
            "SELECT {ORDER_COLS} FROM orders {}",
            list_orders_clause(query)
        );
        all(&self.lock(), &sql, params_from_iter(params), rows::order)
    }

    async fn order_stats(&self, query: &StatsQuery) -> Result<Vec<StatusTotals>, StoreError> {
        let mut params = Vec::new();
        if let Some(from) = query.from {
            params.push(Value::from(ts(from)?));
        }
        if let Some(to) = query.to {
            params.push(Value::from(ts(to)?));
        }
        if let Some(b) = &query.business_type {
            params.push(Value::from(b.clone()));
        }
        let sql = format!(
            "SELECT status, COUNT(*), COALESCE(SUM(amount), 0), COALESCE(SUM(refunded_amount), 0) \
             FROM orders {} GROUP BY status",
            stats_clause(query)
        );
        let map = |r: &mut dyn Fields| -> Result<StatusTotals, StoreError> {
            let int = |r: &mut dyn Fields, i| r.int(i).map(Option::unwrap_or_default);
            status_totals(
                r.text(0)?.unwrap_or_default(),
                int(r, 1)?,
                int(r, 2)?,
                int(r, 3)?,
            )
        };
        all(&self.lock(), &sql, params_from_iter(params), map)
    }
}
