//! [`OrderHistory`] on MySQL.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, Value};

use super::{dt, take, Fail, MySqlStore};
use crate::store::history::{
    list_orders_clause, stats_clause, status_totals, OrderHistory, OrderListQuery, StatsQuery,
    StatusTotals, MYSQL_LIST_INDEX,
};
use crate::store::rows;
use crate::store::sql::ORDER_COLS;
use crate::store::{Order, StoreError};

#[async_trait]
impl OrderHistory for MySqlStore {
    async fn list_orders(&self, query: &OrderListQuery) -> Result<Vec<Order>, StoreError> {
        let mut params = vec![Value::from(query.openid.as_str())];
        if let Some(status) = query.status {
            params.push(Value::from(status.as_str()));
        }
        if let Some(after) = &query.after {
            let at = dt(after.created_at)?;
            params.extend([
                Value::from(at),
                Value::from(at),
                Value::from(after.out_trade_no.as_str()),
            ]);
        }
        params.push(Value::from(query.limit));
        let sql = format!(
            "SELECT {ORDER_COLS} FROM orders FORCE INDEX ({MYSQL_LIST_INDEX}) {}",
            list_orders_clause(query)
        );
        let run = async {
            let mut conn = self.conn().await?;
            let found: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
            let orders = found
                .into_iter()
                .map(|mut r| rows::order(&mut r))
                .collect::<Result<_, _>>()?;
            Ok::<_, Fail>(orders)
        };
        run.await.map_err(|e| self.settle(e))
    }

    async fn order_stats(&self, query: &StatsQuery) -> Result<Vec<StatusTotals>, StoreError> {
        let mut params = Vec::new();
        if let Some(from) = query.from {
            params.push(Value::from(dt(from)?));
        }
        if let Some(to) = query.to {
            params.push(Value::from(dt(to)?));
        }
        if let Some(b) = &query.business_type {
            params.push(Value::from(b.as_str()));
        }
        let sql = format!(
            "SELECT status, COUNT(*), CAST(COALESCE(SUM(amount), 0) AS SIGNED), \
             CAST(COALESCE(SUM(refunded_amount), 0) AS SIGNED) FROM orders {} GROUP BY status",
            stats_clause(query)
        );
        let run = async {
            let mut conn = self.conn().await?;
            let found: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
            Ok::<_, Fail>(found)
        };
        let found = run.await.map_err(|e| self.settle(e))?;
        found
            .into_iter()
            .map(|mut row| {
                status_totals(
                    take(&mut row, 0)?,
                    take(&mut row, 1)?,
                    take(&mut row, 2)?,
                    take(&mut row, 3)?,
                )
            })
            .collect()
    }
}
