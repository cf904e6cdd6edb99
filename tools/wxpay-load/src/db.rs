//! The store each run starts from: an empty MySQL database, or a fresh SQLite file.

use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;

#[derive(Debug, Clone)]
pub enum Database {
    /// `mysql://…/NAME`; NAME is dropped and created again before every run.
    MySql { url: String, name: String },
    /// A file per run under the work directory.
    Sqlite { dir: PathBuf },
}

impl Database {
    /// Refuses a MySQL database whose name does not say it is a benchmark's: this tool drops
    /// it, and must never be pointed at data someone cares about by a typo.
    pub fn from_url(url: Option<&str>, work_dir: &Path) -> Result<Database, String> {
        let Some(url) = url else {
            return Ok(Database::Sqlite {
                dir: work_dir.to_path_buf(),
            });
        };
        if !url.starts_with("mysql://") {
            return Err("--database-url must be mysql://USER@HOST:PORT/DBNAME (without it, a temporary SQLite file is used)".into());
        }
        let opts = mysql_async::Opts::from_url(url).map_err(|e| format!("--database-url: {e}"))?;
        let name = opts
            .db_name()
            .ok_or(
                "--database-url must name a database, e.g. mysql://root@127.0.0.1:3306/wxpay_bench",
            )?
            .to_string();
        if !name.contains("bench") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "refusing to use database `{name}`: every run drops and recreates it, so its name must contain `bench` (e.g. wxpay_bench) and only letters, digits and `_`"
            ));
        }
        Ok(Database::MySql {
            url: url.to_string(),
            name,
        })
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, Database::MySql { .. })
    }

    /// Counts the server's statements from now on (MySQL only).
    pub async fn statement_counter(&self) -> Option<StatementCounter> {
        match self {
            Database::MySql { url, .. } => StatementCounter::start(url).await,
            Database::Sqlite { .. } => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Database::MySql { name, .. } => format!("MySQL database `{name}`"),
            Database::Sqlite { .. } => "SQLite (temporary file)".to_string(),
        }
    }

    /// An empty store for one run, as a `DATABASE_URL`, its schema migrated as a deploy
    /// step would (`wxpay_functions migrate`): the functions' cold starts only read the
    /// version. `tag` keeps SQLite files apart.
    pub async fn fresh(&self, tag: &str) -> Result<String, String> {
        let url = self.empty(tag).await?;
        let store = wxpay_shared::store::open(&url).map_err(|e| e.to_string())?;
        store
            .migrate()
            .await
            .map_err(|e| format!("cannot migrate the benchmark database: {e}"))?;
        Ok(url)
    }

    async fn empty(&self, tag: &str) -> Result<String, String> {
        match self {
            Database::MySql { url, name } => {
                let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
                let server = mysql_async::OptsBuilder::from_opts(opts).db_name(None::<String>);
                let mut conn = mysql_async::Conn::new(server)
                    .await
                    .map_err(|e| format!("cannot connect to MySQL to recreate `{name}`: {e}"))?;
                for sql in [
                    format!("DROP DATABASE IF EXISTS `{name}`"),
                    format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
                ] {
                    conn.query_drop(&sql)
                        .await
                        .map_err(|e| format!("{sql}: {e}"))?;
                }
                let _ = conn.disconnect().await;
                Ok(url.clone())
            }
            Database::Sqlite { dir } => {
                let path = dir.join(format!("{tag}.db"));
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Ok(format!("sqlite://{}", path.display()))
            }
        }
    }
}

/// Statements the MySQL server executed, from its `Questions` status counter: every
/// statement a client sent (BEGIN and COMMIT included; prepares, pings and connects not).
/// The counter is the server's, so anything else using the server during a phase counts too.
pub struct StatementCounter {
    conn: mysql_async::Conn,
    start: u64,
}

impl StatementCounter {
    /// Opens its own connection before the phase, so connecting is not counted.
    pub async fn start(url: &str) -> Option<StatementCounter> {
        let opts = mysql_async::Opts::from_url(url).ok()?;
        let server = mysql_async::OptsBuilder::from_opts(opts).db_name(None::<String>);
        let mut conn = mysql_async::Conn::new(server).await.ok()?;
        let start = questions(&mut conn).await?;
        Some(StatementCounter { conn, start })
    }

    /// Statements per request since `start`, without this counter's own second reading.
    pub async fn per_request(mut self, requests: usize) -> Option<f64> {
        let now = questions(&mut self.conn).await?;
        let _ = self.conn.disconnect().await;
        let executed = now.checked_sub(self.start)?.saturating_sub(1);
        (requests > 0).then(|| executed as f64 / requests as f64)
    }
}

async fn questions(conn: &mut mysql_async::Conn) -> Option<u64> {
    let row: Option<(String, String)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Questions'")
        .await
        .ok()?;
    row?.1.parse().ok()
}
