//! The server sessions behind the pool's connections: what each new connection learns and
//! sets, and how a session whose call was cut off is ended before the invocation answers.
//!
//! **Galera.** Each new connection asks the server for `wsrep_on`; on a Galera node it sets
//! `wsrep_sync_wait = 1` for the whole session, so every read and every `BEGIN` first waits
//! for the node to apply what the cluster committed before it: an order made through one
//! node, or a refund recorded there, is seen by the query or notification that follows
//! through another. Per connection rather than around chosen reads: one statement when the
//! connection is made instead of two more per read, it covers the reads inside
//! transactions (whose guarded writes would otherwise meet a stale row and fail
//! certification), and behind a TCP balancer it holds whichever node a connection reaches.
//! The cost is the node's causality wait — one round trip to the group and the apply
//! queue — on each SELECT and BEGIN: sub-millisecond on a healthy LAN cluster, more when a
//! node lags, which is when it matters. A server without Galera sets nothing.
//!
//! **Cut-off calls.** When the invocation's deadline drops a call mid-statement, its
//! connection may sit in a lock wait, inside a transaction holding the order row; dropped,
//! mysql_async would roll it back only later, from its recycler, which a frozen Lambda
//! sandbox never runs. So a [`Session`] dropped before [`Session::release`] is not given
//! back to the pool: it is handed to the invocation's cleanups ([`deadline::before_answering`]),
//! which `KILL` it from another connection to the same server and wait until it is gone —
//! the server rolls its transaction back and frees its rows — before the answer is sent.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::conn::server_code;
use super::tls::Pools;
use crate::deadline;

/// Variables each new connection reads: who the server is (a `KILL` must reach the server
/// the session is on), and whether it is a Galera node.
const WHO_IS_THERE: &str = "SHOW VARIABLES WHERE Variable_name IN ('hostname', 'port', 'wsrep_on')";

/// Causal reads on a Galera node (bit 1: SELECT, SHOW, BEGIN).
pub(super) const CAUSAL_READS: &str = "SET SESSION wsrep_sync_wait = 1";

/// `ER_NO_SUCH_THREAD`: the session is gone already.
const ER_NO_SUCH_THREAD: u16 = 1094;

/// Connection ids remembered before the map starts afresh: ids are forgotten only then, so
/// a long-lived instance that reconnects often does not grow without end.
const REMEMBERED: usize = 4096;

/// What a new connection found out about its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerInfo {
    /// `hostname:port`: which server, among the nodes a balancer may reach.
    pub server: String,
    pub galera: bool,
}

impl ServerInfo {
    /// From the rows of [`WHO_IS_THERE`]. MySQL without Galera has no `wsrep_on`;
    /// MariaDB has it, `OFF`, unless it is a cluster node.
    pub(super) fn from_variables(vars: &[(String, String)]) -> Self {
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        ServerInfo {
            server: format!(
                "{}:{}",
                get("hostname").unwrap_or("?"),
                get("port").unwrap_or("?")
            ),
            galera: get("wsrep_on").is_some_and(|v| v.eq_ignore_ascii_case("ON")),
        }
    }

    /// What the session sets: causal reads on a Galera node, nothing elsewhere.
    pub(super) fn setup(&self) -> Option<&'static str> {
        self.galera.then_some(CAUSAL_READS)
    }
}

/// The servers the pool's connections are on, by connection id. An id seen on two servers
/// (ids are per server) is ambiguous and never killed by id.
#[derive(Debug, Default)]
pub(super) struct Servers {
    by_id: Mutex<HashMap<u32, Option<Arc<str>>>>,
    galera: AtomicBool,
    proxied: AtomicBool,
}

impl Servers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Option<Arc<str>>>> {
        // Held only to read or insert one entry: a poisoned map is still a whole map.
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, id: u32, info: &ServerInfo) {
        if info.galera && !self.galera.swap(true, Ordering::Relaxed) {
            tracing::info!(
                server = %info.server,
                "the database is a Galera node: every read waits for what the cluster committed before it (wsrep_sync_wait = 1)"
            );
        }
        let mut map = self.map();
        if map.len() >= REMEMBERED {
            map.clear();
        }
        let server: Arc<str> = Arc::from(info.server.as_str());
        map.entry(id)
            .and_modify(|known| {
                if known.as_deref() != Some(&*server) {
                    *known = None;
                }
            })
            .or_insert(Some(server));
    }

    /// A connection whose handshake id is not its server session's: not recorded, so never
    /// killed by id. Said once.
    fn proxied(&self) {
        if !self.proxied.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "the database is reached through a proxy (its connection ids are not the server's): a call cut off mid-statement is not ended with KILL; the server ends it after its lock wait or statement limit"
            );
        }
    }

    fn of(&self, id: u32) -> Option<Arc<str>> {
        self.map().get(&id).cloned().flatten()
    }
}

type Setup<'a> = Pin<Box<dyn Future<Output = mysql_async::Result<()>> + Send + 'a>>;

/// The pool's `after_connect`: learn the server, set causal reads on Galera.
pub(super) fn on_connect(
    servers: Arc<Servers>,
) -> impl for<'a> Fn(&'a mut Conn) -> Setup<'a> + Send + Sync + 'static {
    move |conn: &mut Conn| {
        let servers = servers.clone();
        Box::pin(async move {
            let vars: Vec<(String, String)> = conn.query(WHO_IS_THERE).await?;
            let info = ServerInfo::from_variables(&vars);
            if let Some(setup) = info.setup() {
                conn.query_drop(setup).await?;
            }
            // Behind a proxy (ProxySQL, MaxScale, RDS Proxy) the id the handshake gave is
            // the proxy's, not the server session's: a `KILL` by that id could reach
            // somebody else's session, so such a connection is never killed by id.
            let on_server: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await?;
            if on_server == Some(u64::from(conn.id())) {
                servers.record(conn.id(), &info);
            } else {
                servers.proxied();
            }
            Ok(())
        })
    }
}

/// A pooled connection lent to one store operation. Given back with [`Session::release`]
/// once the operation is over (whatever its outcome); dropped before that — the call was
/// cut off mid-way — it is ended on the server before the invocation answers.
pub(super) struct Session {
    conn: Option<Conn>,
    pool: Arc<Pools>,
    servers: Arc<Servers>,
}

impl Session {
    pub(super) fn new(conn: Conn, pool: &Arc<Pools>, servers: &Arc<Servers>) -> Self {
        Session {
            conn: Some(conn),
            pool: pool.clone(),
            servers: servers.clone(),
        }
    }

    /// The operation is over: the connection goes back to the pool.
    pub(super) fn release(mut self) {
        self.conn.take();
    }

    /// The operation is over, and the connection must not serve another: it carries
    /// session settings of its own (a migration's limits).
    pub(super) async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
    }
}

impl std::ops::Deref for Session {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Present from `new` until `release`/`close`, which consume the session.
        self.conn
            .as_ref()
            .expect("a live session has its connection")
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a live session has its connection")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let (pool, servers) = (self.pool.clone(), self.servers.clone());
        deadline::before_answering(async move {
            let id = conn.id();
            match end_on_server(&pool, &servers, id).await {
                Ok(()) => tracing::info!(
                    "a call cut off mid-statement left database session {id}; it was ended (its transaction rolled back) before answering"
                ),
                Err(why) => tracing::warn!(
                    "a call cut off mid-statement left database session {id}, which could not be ended now ({why}); the server ends it after its lock wait or statement limit"
                ),
            }
            // Killed, or beyond reach: the pool's recycler finds it broken and discards it.
            drop(conn);
        });
    }
}

/// `KILL`s session `id` from another connection to its server, then waits until the server
/// has let it go (rolled back, rows free). Bounded by the caller.
async fn end_on_server(pool: &Pools, servers: &Servers, id: u32) -> Result<(), String> {
    let server = servers.of(id).ok_or("which server it is on is not known")?;
    // Connections to other nodes are kept aside while looking, so the pool offers others.
    let mut elsewhere = Vec::new();
    for _ in 0..4 {
        let mut other = pool.get_conn().await.map_err(|e| e.to_string())?;
        if other.id() == id || servers.of(other.id()).as_deref() != Some(&*server) {
            elsewhere.push(other);
            continue;
        }
        match other.query_drop(format!("KILL {id}")).await {
            Ok(()) => {}
            Err(e) if server_code(&e) == Some(ER_NO_SUCH_THREAD) => return Ok(()),
            Err(e) => return Err(format!("KILL failed: {e}")),
        }
        // KILL returns at once; the session goes once it has noticed and rolled back.
        loop {
            let alive: Option<i64> = other
                .exec_first(
                    "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?",
                    (id,),
                )
                .await
                .map_err(|e| e.to_string())?;
            if alive.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Err("no connection to its server came from the pool".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_a_galera_node_gets_causal_reads() {
        let galera = ServerInfo::from_variables(&vars(&[
            ("hostname", "db-2"),
            ("port", "3306"),
            ("wsrep_on", "ON"),
        ]));
        assert_eq!(galera.server, "db-2:3306");
        assert_eq!(galera.setup(), Some("SET SESSION wsrep_sync_wait = 1"));
        // MariaDB without a cluster reports OFF; MySQL has no such variable.
        for plain in [
            vars(&[("hostname", "db"), ("port", "3306"), ("wsrep_on", "OFF")]),
            vars(&[("hostname", "db"), ("port", "3306")]),
        ] {
            assert_eq!(ServerInfo::from_variables(&plain).setup(), None);
        }
    }

    #[test]
    fn an_id_seen_on_two_servers_is_never_killed_by_id() {
        let servers = Servers::default();
        let at = |server: &str| ServerInfo {
            server: server.into(),
            galera: true,
        };
        servers.record(7, &at("db-1:3306"));
        servers.record(8, &at("db-1:3306"));
        assert_eq!(servers.of(7).as_deref(), Some("db-1:3306"));
        servers.record(7, &at("db-2:3306"));
        assert_eq!(servers.of(7), None, "ambiguous");
        assert_eq!(servers.of(8).as_deref(), Some("db-1:3306"));
        assert!(servers.galera.load(Ordering::Relaxed));
    }
}
