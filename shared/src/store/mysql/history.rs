//! [`OrderHistory`] on MySQL.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, Value};

use super::{dt, take, MySqlStore};
use crate::store::history::{
    list_orders_clause, stats_clause, status_totals, OrderHistory, OrderListQuery, Param,
    StatsQuery, StatusTotals, MYSQL_LIST_INDEX,
};
use crate::store::rows;
use crate::store::sql::ORDER_COLS;
use crate::store::{Order, StoreError};

fn values(params: Vec<Param>) -> Result<Params, StoreError> {
    let values = params
        .into_iter()
        .map(|p| {
            Ok(match p {
                Param::Text(s) => Value::from(s),
                Param::Time(t) => Value::from(dt(t)?),
                Param::Int(i) => Value::from(i),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Params::Positional(values))
}

impl MySqlStore {
    async fn rows(&self, sql: String, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let params = values(params)?;
        op!(self, |conn| Ok(conn
            .exec(sql.as_str(), params.clone())
            .await?))
    }
}

#[async_trait]
impl OrderHistory for MySqlStore {
    async fn list_orders(&self, query: &OrderListQuery) -> Result<Vec<Order>, StoreError> {
        let (clause, params) = list_orders_clause(query);
        let sql =
            format!("SELECT {ORDER_COLS} FROM orders FORCE INDEX ({MYSQL_LIST_INDEX}) {clause}");
        self.rows(sql, params)
            .await?
            .into_iter()
            .map(|mut r| rows::order(&mut r))
            .collect()
    }

    async fn order_stats(&self, query: &StatsQuery) -> Result<Vec<StatusTotals>, StoreError> {
        let (clause, params) = stats_clause(query);
        let sql = format!(
            "SELECT status, COUNT(*), CAST(COALESCE(SUM(amount), 0) AS SIGNED), \
             CAST(COALESCE(SUM(refunded_amount), 0) AS SIGNED) FROM orders {clause} GROUP BY status"
        );
        self.rows(sql, params)
            .await?
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
