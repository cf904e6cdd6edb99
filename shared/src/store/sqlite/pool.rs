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
//! task. A caller that stops waiting (its deadline fired) cannot stop the thread: the work
//! is interrupted (`sqlite3_interrupt`: the statement running fails, and its transaction
//! rolls back as it is dropped) and the invocation waits for it to end before answering
//! ([`crate::deadline::before_answering`]), so no write lock outlives the call; the
//! connection comes back when it has.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, InterruptHandle};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::map_err;
use crate::store::StoreError;

/// Connections to one database file: enough for a function's concurrent calls to overlap
/// their reads and queue their writes in SQLite rather than here.
pub(super) const FILE_CONNECTIONS: usize = 4;

/// How long a statement waits for another connection's write lock, and a call for a free
/// connection; never past the invocation's deadline (the wait blocks a thread, so nothing
/// could cut it short).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Switches the file to WAL, waiting out another process that holds the file's lock (a
/// second `migrate`, a local runner starting): SQLite answers the switch with
/// `SQLITE_BUSY` at once in some of those cases, without calling the busy handler.
fn wal_mode(conn: &Connection) -> Result<String, StoreError> {
    let give_up = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(map_err),
        }
    }
}

/// Idle connections; `free` counts them, so a call waits for one without holding a lock.
pub(super) struct Pool {
    idle: Mutex<Vec<Connection>>,
    free: Semaphore,
}

impl Pool {
    /// `path`'s connections, the file in WAL mode.
    pub(super) fn open_file(path: &Path) -> Result<Arc<Self>, StoreError> {
        let mut conns = Vec::with_capacity(FILE_CONNECTIONS);
        for _ in 0..FILE_CONNECTIONS {
            let conn = Connection::open(path).map_err(map_err)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
            if conns.is_empty() {
                // Kept in the file: every later connection (and process) finds it in WAL.
                let mode = wal_mode(&conn)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    // Still correct (BEGIN IMMEDIATE serialises writers), but readers now
                    // wait behind every write.
                    tracing::warn!(
                        "SQLite kept journal_mode={mode} for {}: WAL is not available on this filesystem",
                        path.display()
                    );
                }
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
        let interrupt = lease.conn.as_ref().map(Connection::get_interrupt_handle);
        let task = tokio::task::spawn_blocking(move || {
            // A permit always finds a connection: each lease puts back what it took.
            let Some(conn) = lease.conn.as_mut() else {
                return Err(StoreError::Unavailable("SQLite connection missing".into()));
            };
            conn.busy_timeout(busy).map_err(map_err)?;
            work(conn)
        });
        let mut running = Running {
            task: Some(task),
            interrupt,
        };
        let joined = match running.task.as_mut() {
            Some(task) => task.await,
            None => return Err(StoreError::Unavailable("SQLite call lost".into())),
        };
        running.task = None;
        match joined {
            Ok(out) => out,
            // The work's own panic, as if it had run on the caller's thread.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Unavailable("SQLite call cancelled".into())),
        }
    }
}

/// Work on a blocking thread that a caller is waiting for. Dropped while it still runs
/// (the caller was cut off), it is interrupted and handed to the invocation, which waits
/// for it to end before answering.
struct Running<T: Send + 'static> {
    task: Option<JoinHandle<T>>,
    interrupt: Option<InterruptHandle>,
}

impl<T: Send + 'static> Drop for Running<T> {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        if let Some(interrupt) = &self.interrupt {
            interrupt.interrupt();
        }
        crate::deadline::before_answering(async move {
            let _ = task.await;
        });
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
