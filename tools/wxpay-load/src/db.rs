//! The store each run starts from: an empty MySQL database, the same on every node of a
//! multi-primary cluster, or a fresh SQLite file.

use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;

#[derive(Debug, Clone)]
pub enum Database {
    /// `mysql://…/NAME`; NAME is dropped and created again before every run.
    MySql { url: String, name: String },
    /// A file per run under the work directory.
    Sqlite { dir: PathBuf },
    /// A Galera cluster: one URL per node, each naming the same database NAME (made on the
    /// first node, replicated to the others). Each function instance talks to one node.
    Cluster { urls: Vec<String>, name: String },
}

/// The database a benchmark URL names, refused unless it says it is a benchmark's: this
/// tool drops it, and must never be pointed at data someone cares about by a typo.
fn bench_database(url: &str, flag: &str) -> Result<String, String> {
    if !url.starts_with("mysql://") {
        return Err(format!("{flag} takes mysql://USER@HOST:PORT/DBNAME URLs"));
    }
    let opts = mysql_async::Opts::from_url(url).map_err(|e| format!("{flag}: {e}"))?;
    let name = opts
        .db_name()
        .ok_or_else(|| {
            format!("{flag} must name a database, e.g. mysql://root@127.0.0.1:3306/wxpay_bench")
        })?
        .to_string();
    if !name.contains("bench") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "refusing to use database `{name}`: every run drops and recreates it, so its name must contain `bench` (e.g. wxpay_bench) and only letters, digits and `_`"
        ));
    }
    Ok(name)
}

impl Database {
    /// Without a URL, SQLite files under `work_dir`.
    pub fn from_url(url: Option<&str>, work_dir: &Path) -> Result<Database, String> {
        let Some(url) = url else {
            return Ok(Database::Sqlite {
                dir: work_dir.to_path_buf(),
            });
        };
        if !url.starts_with("mysql://") {
            return Err("--database-url must be mysql://USER@HOST:PORT/DBNAME (without it, a temporary SQLite file is used)".into());
        }
        Ok(Database::MySql {
            url: url.to_string(),
            name: bench_database(url, "--database-url")?,
        })
    }

    /// `--cluster-urls`: comma-separated node URLs naming one benchmark database.
    pub fn cluster(list: &str) -> Result<Database, String> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.len() < 2 {
            return Err("--cluster-urls needs the URLs of at least two nodes".into());
        }
        let names = urls
            .iter()
            .map(|u| bench_database(u, "--cluster-urls"))
            .collect::<Result<Vec<_>, _>>()?;
        if names.iter().any(|n| n != &names[0]) {
            return Err("--cluster-urls: every node URL must name the same database".into());
        }
        Ok(Database::Cluster {
            urls,
            name: names[0].clone(),
        })
    }

    /// How many nodes (one function instance each); 1 for a single server or SQLite.
    pub fn nodes(&self) -> usize {
        match self {
            Database::Cluster { urls, .. } => urls.len(),
            _ => 1,
        }
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, Database::MySql { .. } | Database::Cluster { .. })
    }

    fn server_urls(&self) -> &[String] {
        match self {
            Database::MySql { url, .. } => std::slice::from_ref(url),
            Database::Cluster { urls, .. } => urls,
            Database::Sqlite { .. } => &[],
        }
    }

    /// Counts the statements of every server (each node of a cluster) from now on.
    pub async fn statement_counter(&self) -> Option<StatementCounter> {
        let urls = self.server_urls();
        if urls.is_empty() {
            return None;
        }
        StatementCounter::start(urls).await
    }

    /// The database servers' processes, when they run on this machine: each server names
    /// its pid file (`@@pid_file`), which tells the shared server on 3306 from the nodes of
    /// a test cluster running beside it.
    pub async fn server_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for url in self.server_urls() {
            if let Some(pid) = pid_of_server(url).await {
                pids.push(pid);
            }
        }
        if pids.is_empty() && matches!(self, Database::MySql { .. }) {
            pids.extend(crate::cpu::database_server_pid());
        }
        pids
    }

    pub fn describe(&self) -> String {
        match self {
            Database::MySql { name, .. } => format!("MySQL database `{name}`"),
            Database::Sqlite { .. } => "SQLite (temporary file)".to_string(),
            Database::Cluster { urls, name } => {
                format!("Galera cluster of {} nodes, database `{name}`", urls.len())
            }
        }
    }

    /// An empty store for one run: one `DATABASE_URL` per node (a single one off a
    /// cluster). `tag` keeps SQLite files apart.
    pub async fn fresh_nodes(&self, tag: &str) -> Result<Vec<String>, String> {
        match self {
            Database::Cluster { urls, name } => {
                recreate(&urls[0], name).await?;
                // The DDL is ordered cluster-wide, but a node applies it a moment later.
                for url in &urls[1..] {
                    wait_for_database(url, name).await?;
                }
                // The schema once, through the first node, as a deploy step would: three
                // instances starting at once must not each run cluster-wide DDL.
                let store = wxpay_shared::store::open(&urls[0]).map_err(|e| e.to_string())?;
                store
                    .migrate()
                    .await
                    .map_err(|e| format!("cannot create the schema on the cluster: {e}"))?;
                Ok(urls.clone())
            }
            _ => Ok(vec![self.fresh(tag).await?]),
        }
    }

    /// An empty store for one run, as a `DATABASE_URL` (a cluster's first node), its
    /// schema migrated as a deploy step would (`wxpay_functions migrate`): the functions'
    /// cold starts only read the version. `tag` keeps SQLite files apart.
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
                recreate(url, name).await?;
                Ok(url.clone())
            }
            Database::Cluster { urls, name } => {
                recreate(&urls[0], name).await?;
                Ok(urls[0].clone())
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

async fn server_conn(url: &str) -> Result<mysql_async::Conn, String> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
    let server = mysql_async::OptsBuilder::from_opts(opts).db_name(None::<String>);
    mysql_async::Conn::new(server)
        .await
        .map_err(|e| format!("cannot connect to MySQL: {e}"))
}

async fn recreate(url: &str, name: &str) -> Result<(), String> {
    let mut conn = server_conn(url)
        .await
        .map_err(|e| format!("recreating `{name}`: {e}"))?;
    for sql in [
        format!("DROP DATABASE IF EXISTS `{name}`"),
        format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
    ] {
        conn.query_drop(&sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

async fn wait_for_database(url: &str, name: &str) -> Result<(), String> {
    let mut conn = server_conn(url).await?;
    for _ in 0..100 {
        let found: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (name,),
            )
            .await
            .map_err(|e| e.to_string())?;
        if found.is_some() {
            let _ = conn.disconnect().await;
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!("database `{name}` never appeared on every node"))
}

async fn pid_of_server(url: &str) -> Option<u32> {
    let mut conn = server_conn(url).await.ok()?;
    let file: Option<String> = conn.query_first("SELECT @@pid_file").await.ok()?;
    let _ = conn.disconnect().await;
    std::fs::read_to_string(file?).ok()?.trim().parse().ok()
}

/// Statements the MySQL servers executed, from their `Questions` status counters: every
/// statement a client sent (BEGIN and COMMIT included; prepares, pings and connects not).
/// On a cluster each node counts what its own clients sent (replicated writes applied from
/// other nodes are not statements), and the counts are summed. The counters are the
/// servers', so anything else using them during a phase counts too.
pub struct StatementCounter {
    servers: Vec<(mysql_async::Conn, u64)>,
}

impl StatementCounter {
    /// Opens its own connections before the phase, so connecting is not counted.
    pub async fn start(urls: &[String]) -> Option<StatementCounter> {
        let mut servers = Vec::new();
        for url in urls {
            let mut conn = server_conn(url).await.ok()?;
            let start = questions(&mut conn).await?;
            servers.push((conn, start));
        }
        Some(StatementCounter { servers })
    }

    /// Statements per request since `start`, without this counter's own second readings.
    pub async fn per_request(self, requests: usize) -> Option<f64> {
        let mut executed = 0;
        for (mut conn, start) in self.servers {
            let now = questions(&mut conn).await?;
            let _ = conn.disconnect().await;
            executed += now.checked_sub(start)?.saturating_sub(1);
        }
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
