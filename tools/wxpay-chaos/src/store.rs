//! The store under test, read directly (never through the product) for the checks, and
//! the database-side faults: sessions killed.

use mysql_async::prelude::Queryable;

pub enum Store {
    Sqlite {
        path: std::path::PathBuf,
    },
    /// `nodes`: every node of a multi-primary cluster (`server` is the first), empty on
    /// one server.
    Mysql {
        server: String,
        db: String,
        nodes: Vec<String>,
    },
}

/// Rows as text: every column is cast to text by the query, on both dialects.
pub type Rows = Vec<Vec<Option<String>>>;

impl Store {
    pub fn is_mysql(&self) -> bool {
        matches!(self, Store::Mysql { .. })
    }

    /// The `DATABASE_URL` the instances get.
    pub fn url(&self) -> String {
        match self {
            Store::Sqlite { path } => format!("sqlite://{}", path.display()),
            Store::Mysql { server, db, .. } => format!("{server}/{db}"),
        }
    }

    /// A fresh, empty database (MySQL: dropped and created again).
    pub async fn create(&self) -> Result<(), String> {
        match self {
            Store::Sqlite { path } => {
                let _ = std::fs::remove_file(path);
                Ok(())
            }
            Store::Mysql { server, db, .. } => {
                let mut c = mysql_async::Conn::from_url(server.as_str())
                    .await
                    .map_err(|e| format!("cannot reach MySQL at {server}: {e}"))?;
                c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                    .await
                    .map_err(|e| e.to_string())?;
                c.query_drop(format!("CREATE DATABASE `{db}`"))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = c.disconnect().await;
                Ok(())
            }
        }
    }

    pub async fn drop_database(&self) {
        if let Store::Mysql { server, db, .. } = self {
            if let Ok(mut c) = mysql_async::Conn::from_url(server.as_str()).await {
                let _ = c
                    .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                    .await;
                let _ = c.disconnect().await;
            }
        }
    }

    /// Kills every session of the campaign's database, as a failover or an operator would.
    pub async fn kill_sessions(&self) {
        let Store::Mysql { server, db, nodes } = self else {
            return;
        };
        let servers = if nodes.is_empty() {
            std::slice::from_ref(server)
        } else {
            nodes.as_slice()
        };
        for server in servers {
            let Ok(mut c) = mysql_async::Conn::from_url(server.as_str()).await else {
                continue;
            };
            let ids: Vec<u64> = c
                .exec(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                    (db.as_str(),),
                )
                .await
                .unwrap_or_default();
            for id in ids {
                let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
            }
            let _ = c.disconnect().await;
        }
    }

    /// Runs `sql`, where `{T}` stands for the dialect's text type in a CAST.
    pub async fn rows(&self, sql: &str) -> Result<Rows, String> {
        match self {
            Store::Sqlite { path } => {
                let sql = sql.replace("{T}", "TEXT");
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> Result<Rows, String> {
                    let c = rusqlite::Connection::open_with_flags(
                        &path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .map_err(|e| e.to_string())?;
                    c.busy_timeout(std::time::Duration::from_secs(5))
                        .map_err(|e| e.to_string())?;
                    let mut st = c.prepare(&sql).map_err(|e| format!("{sql}: {e}"))?;
                    let n = st.column_count();
                    let rows = st
                        .query_map([], |r| {
                            (0..n).map(|i| r.get::<_, Option<String>>(i)).collect()
                        })
                        .map_err(|e| e.to_string())?;
                    rows.collect::<Result<Rows, _>>().map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Store::Mysql { server, db, .. } => {
                let sql = sql.replace("{T}", "CHAR");
                let mut c = mysql_async::Conn::from_url(format!("{server}/{db}").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let rows: Vec<mysql_async::Row> =
                    c.query(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
                let _ = c.disconnect().await;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.get_opt::<Option<String>, _>(i)
                                    .and_then(Result::ok)
                                    .flatten()
                            })
                            .collect()
                    })
                    .collect())
            }
        }
    }
}

pub fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

pub fn num(v: &Option<String>) -> i64 {
    v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}
