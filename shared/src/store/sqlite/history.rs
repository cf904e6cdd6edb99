//! [`OrderHistory`] on SQLite.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::{map_err, order_from_row, ts, SqliteStore, ORDER_COLS};
use crate::store::history::{
    list_orders_clause, stats_clause, OrderHistory, OrderListQuery, StatsQuery, StatusTotals,
};
use crate::store::{Order, OrderStatus, StoreError};

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
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params_from_iter(params), order_from_row)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
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
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params_from_iter(params), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let (status, count, amount, refunded_amount) = r.map_err(map_err)?;
            Ok(StatusTotals {
                status: OrderStatus::parse(&status)
                    .ok_or_else(|| StoreError::Query(format!("unknown order status `{status}`")))?,
                count,
                amount,
                refunded_amount,
            })
        })
        .collect()
    }
}
