//! The SQLite store's connections, and where a call's blocking SQLite work runs.
//!
//! A file database gets [`FILE_CONNECTIONS`] connections in WAL mode: readers run beside
//! the one writer, and writers queue on SQLite's own write lock (`busy_timeout`), exactly
//! as they would from separate processes — so the guarded updates and `BEGIN IMMEDIATE`
//! transactions are what keeps a state change single, not a lock in this process.
//!
//! Every call takes a connection (waiting for one at most [`BUSY_TIMEOUT`], never past the
//! invocation's deadline) and runs on `spawn_blocking`: a statement waiting for the write
//! lock sleeps its thread, which must not be one of the runtime's few async workers. The
//! deadline is task-local, so the busy timeout is worked out before the work leaves the
//! task. A caller that stops waiting (its deadline fired) leaves the work to finish on its
//! own; the connection comes back when it has.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::map_err;
use crate::store::schema::{added_columns, Dialect, INDEXES, TABLES};
use crate::store::StoreError;

/// Connections to one database file: enough for a function's concurrent calls to overlap
/// their reads and queue their writes in SQLite rather than here.
pub(super) const FILE_CONNECTIONS: usize = 4;

/// How long a statement waits for another connection's write lock, and a call for a free
/// connection; never past the invocation's deadline (the wait blocks a thread, so nothing
/// could cut it short).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle connections; `free` counts them, so a call waits for one without holding a lock.
pub(super) struct Pool {
    idle: Mutex<Vec<Connection>>,
    free: Semaphore,
}

impl Pool {
    /// `path`'s connections, the schema created through the first.
    pub(super) fn open_file(path: &Path) -> Result<Arc<Self>, StoreError> {
        let mut conns = Vec::with_capacity(FILE_CONNECTIONS);
        for _ in 0..FILE_CONNECTIONS {
            let conn = Connection::open(path).map_err(map_err)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
            if conns.is_empty() {
                // Kept in the file: every later connection (and process) finds it in WAL.
                let mode: String = conn
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    .map_err(map_err)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    // Still correct (BEGIN IMMEDIATE serialises writers), but readers now
                    // wait behind every write.
                    tracing::warn!(
                        "SQLite kept journal_mode={mode} for {}: WAL is not available on this filesystem",
                        path.display()
                    );
                }
                create_schema(&conn)?;
            }
            conns.push(conn);
        }
        Ok(Self::new(conns))
    }

    /// A private in-memory database has exactly one connection: another one would open
    /// another, empty database. Sharing it through a shared-cache URI would trade SQLite's
    /// file locking for table locks that fail at once (`SQLITE_LOCKED`, which `busy_timeout`
    /// does not wait out), so its calls take turns on the one connection instead.
    pub(super) fn open_in_memory() -> Result<Arc<Self>, StoreError> {
        let conn = Connection::open_in_memory().map_err(map_err)?;
        create_schema(&conn)?;
        Ok(Self::new(vec![conn]))
    }

    fn new(conns: Vec<Connection>) -> Arc<Self> {
        Arc::new(Pool {
            free: Semaphore::new(conns.len()),
            idle: Mutex::new(conns),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Held only to push or pop, so a poisoned lock still guards a whole Vec.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` on a free connection, on a blocking thread.
    pub(super) async fn run<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = crate::deadline::bounded(BUSY_TIMEOUT, self.free.acquire())
            .await
            .ok_or_else(|| StoreError::Unavailable("no SQLite connection free in time".into()))?
            .map_err(|_| StoreError::Unavailable("SQLite store closed".into()))?;
        // From here the lease gives the permit back, with its connection.
        permit.forget();
        let mut lease = Lease {
            conn: self.idle().pop(),
            pool: Arc::clone(self),
        };
        let busy = crate::deadline::budget(BUSY_TIMEOUT);
        let task = tokio::task::spawn_blocking(move || {
            // A permit always finds a connection: each lease puts back what it took.
            let Some(conn) = lease.conn.as_mut() else {
                return Err(StoreError::Unavailable("SQLite connection missing".into()));
            };
            conn.busy_timeout(busy).map_err(map_err)?;
            work(conn)
        });
        match task.await {
            Ok(out) => out,
            // The work's own panic, as if it had run on the caller's thread.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Unavailable("SQLite call cancelled".into())),
        }
    }
}

/// A connection taken from the pool; dropping it (after the work, after a panic, or with a
/// task the runtime never ran) puts it back. An open transaction rolled back when it was
/// dropped, so what goes back is clean.
struct Lease {
    pool: Arc<Pool>,
    conn: Option<Connection>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle().push(conn);
        }
        self.pool.free.add_permits(1);
    }
}

pub(super) fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    for table in TABLES {
        conn.execute_batch(&table.create(Dialect::Sqlite))
            .map_err(map_err)?;
    }
    for (table, column, ddl) in added_columns(Dialect::Sqlite) {
        let exists: bool = conn
            .query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        if !exists {
            conn.execute_batch(&ddl).map_err(map_err)?;
        }
    }
    // After the columns exist, so an index over an added column can be created.
    for (table, index, cols) in INDEXES {
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {table} ({cols})"
        ))
        .map_err(map_err)?;
    }
    Ok(())
}
