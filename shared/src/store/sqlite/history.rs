//! [`OrderHistory`] on SQLite.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::{all, ts, SqliteStore};
use crate::store::history::{
    list_orders_clause, stats_clause, status_totals, OrderHistory, OrderListQuery, Param,
    StatsQuery, StatusTotals,
};
use crate::store::rows::{self, Fields};
use crate::store::sql::ORDER_COLS;
use crate::store::{Order, StoreError};

fn values(params: Vec<Param>) -> Result<Vec<Value>, StoreError> {
    params
        .into_iter()
        .map(|p| {
            Ok(match p {
                Param::Text(s) => Value::from(s),
                Param::Time(t) => Value::from(ts(t)?),
                Param::Int(i) => Value::from(i),
            })
        })
        .collect()
}

fn totals(r: &mut dyn Fields) -> Result<StatusTotals, StoreError> {
    let int = |r: &mut dyn Fields, i| r.int(i).map(Option::unwrap_or_default);
    status_totals(
        r.text(0)?.unwrap_or_default(),
        int(r, 1)?,
        int(r, 2)?,
        int(r, 3)?,
    )
}

#[async_trait]
impl OrderHistory for SqliteStore {
    async fn list_orders(&self, query: &OrderListQuery) -> Result<Vec<Order>, StoreError> {
        let (clause, params) = list_orders_clause(query);
        let sql = format!("SELECT {ORDER_COLS} FROM orders {clause}");
        let params = values(params)?;
        self.run(move |c| all(c, &sql, params_from_iter(params), rows::order))
            .await
    }

    async fn order_stats(&self, query: &StatsQuery) -> Result<Vec<StatusTotals>, StoreError> {
        let (clause, params) = stats_clause(query);
        let sql = format!(
            "SELECT status, COUNT(*), COALESCE(SUM(amount), 0), COALESCE(SUM(refunded_amount), 0) \
             FROM orders {clause} GROUP BY status"
        );
        let params = values(params)?;
        self.run(move |c| all(c, &sql, params_from_iter(params), totals))
            .await
    }
}
