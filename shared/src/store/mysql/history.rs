//! [`OrderHistory`] on MySQL.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, Value};

use super::{col, dt, order_from_row, Fail, MySqlStore, ORDER_COLS};
use crate::store::history::{
    list_orders_clause, stats_clause, OrderHistory, OrderListQuery, StatsQuery, StatusTotals,
    MYSQL_LIST_INDEX,
};
use crate::store::{Order, OrderStatus, StoreError};

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
            let rows: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
            Ok::<_, Fail>(
                rows.into_iter()
                    .map(order_from_row)
                    .collect::<Result<_, _>>()?,
            )
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
            let rows: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
            Ok::<_, Fail>(rows)
        };
        let rows = run.await.map_err(|e| self.settle(e))?;
        rows.into_iter()
            .map(|mut row| {
                let status: String = col(&mut row, 0)?;
                Ok(StatusTotals {
                    status: OrderStatus::parse(&status).ok_or_else(|| {
                        StoreError::Query(format!("unknown order status `{status}`"))
                    })?,
                    count: col(&mut row, 1)?,
                    amount: col(&mut row, 2)?,
                    refunded_amount: col(&mut row, 3)?,
                })
            })
            .collect()
    }
}
