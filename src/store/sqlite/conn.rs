//! The SQLite backend's connections: every operation is one call on one of them.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its own: each statement is
//! a message to that thread and an answer back, ~50–70 µs apiece on a loaded 2-core machine.
//! A refresh grant is a read and a five-statement transaction, so most of its time was these
//! hand-offs (docs/BENCHMARKS.md, "What the profiles showed"). So this backend does not use
//! sqlx: every operation runs on plain SQLite connections (rusqlite, bundled SQLite), whole,
//! on the calling thread when nothing has to be waited for and on a blocking thread otherwise,
//! with cached prepared statements. The grant path's operations are in `grant.rs`, the others
//! in `ops.rs`.
//!
//! - The **writer** connection writes only under [`super::SqliteStore`]'s writer
//!   queue, so this process never has two SQLite writers. Reads borrow it when it is free,
//!   and the checkpointer holds it for the tail of a round.
//! - **Writes run on the calling thread** when the writer connection is free and SQLite's
//!   write lock is too (a grant's transaction takes ~40 µs; a blocking thread's round trip
//!   costs about as much in wake-ups). Like a read, such a write never waits there: where
//!   `BEGIN IMMEDIATE` finds the lock taken, nothing was written, and the write goes to a
//!   blocking thread, which may wait.
//! - **Reads run on the calling thread**, on the writer connection when it is free and on
//!   a free **reader** otherwise (WAL readers run beside the writer; `database.maxOpenConnections`
//!   − 1 of them). A read from cached pages
//!   takes ~15 µs, less than handing it to a blocking thread and back. The writer's page cache
//!   stays valid across its own commits, while any other connection's is dropped after every
//!   write, so the writer is the warm one. A read never waits on the calling thread: where
//!   SQLite would have to wait for a lock, it goes to a blocking thread, which may.
//! - **Checkpoints run on a thread of their own** ([`CHECKPOINT_EVERY`]). SQLite's automatic
//!   checkpoint runs inside the commit that crosses 1,000 WAL pages, and it syncs the file:
//!   one grant in a few hundred waited tens of milliseconds for it. Every connection of the
//!   store has it turned off. A round holds this process's writes off only
//!   to copy what was committed while it ran, so that the WAL is started over ([`checkpoint`]).
//!
//! The SQL is the same text the PostgreSQL backend runs (`$1`… are SQLite named
//! parameters here, bound by name: a statement may use them out of order or twice).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// How often the checkpointer copies the WAL into the database file.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// What the WAL file is cut back to once checkpointed (a burst of writes grows it).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// The writer, the readers and the checkpointer; see the module documentation.
pub(super) struct Connections {
    /// At least one.
    pub(super) readers: Vec<Mutex<Connection>>,
    /// Where a read that has to wait queues ([`Self::run`]).
    next_reader: AtomicUsize,
    /// Shared with the checkpointer, which holds it for the tail of a round.
    pub(super) writer: Arc<Mutex<Connection>>,
    busy_timeout: Duration,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: mpsc::Sender<()>,
}

/// Creates the database file if missing, in WAL mode, and brings its schema up to date
/// (`migrate.rs`), on a connection of its own that is closed afterwards.
pub(super) fn create_and_migrate(path: &Path, busy_timeout: Duration) -> Result<(), StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "the SQLite file cannot use WAL (journal mode {mode})"
        )));
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    super::migrate::run(&mut conn)
}

impl Connections {
    /// Opens the writer, `readers` readers (at least one) and the checkpointer's connection
    /// to a migrated database file ([`create_and_migrate`]); never creates the file.
    pub(super) fn open(
        path: &Path,
        readers: usize,
        busy_timeout: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let open = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(busy_timeout)?;
            // journal_mode=WAL is a property of the file, set when it was created.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
            conn.set_prepared_statement_cache_capacity(32);
            Ok(conn)
        };
        let writer = Arc::new(Mutex::new(open()?));
        Ok(Arc::new(Connections {
            readers: (0..readers.max(1))
                .map(|_| open().map(Mutex::new))
                .collect::<Result<_, _>>()?,
            next_reader: AtomicUsize::new(0),
            _checkpointer: spawn_checkpointer(open()?, writer.clone())?,
            writer,
            busy_timeout,
        }))
    }

    /// Runs `op` on one connection on a blocking thread: the writer, or a free reader (the
    /// next one in turn when none is free). The caller of a write holds the store's writer
    /// queue.
    pub(super) async fn run<T, F>(self: &Arc<Self>, write: bool, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-operation leaves no transaction open (rusqlite rolls back on
            // drop), so a poisoned lock still guards a usable connection.
            let mut conn = if write {
                this.writer.lock().unwrap_or_else(|p| p.into_inner())
            } else {
                this.free_reader().unwrap_or_else(|| {
                    let turn = this.next_reader.fetch_add(1, Ordering::Relaxed);
                    let reader = &this.readers[turn % this.readers.len()];
                    reader.lock().unwrap_or_else(|p| p.into_inner())
                })
            };
            op(&mut conn)
        })
        .await
        .map_err(|_| StoreError::Internal("a store operation panicked".into()))?
    }

    /// A read: on the calling thread when that needs no wait ([`Self::read_now`]), else on a
    /// blocking thread.
    pub(super) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(done) = self.read_now(&read) {
            return done;
        }
        self.run(false, move |conn| read(conn)).await
    }

    /// A write: on the calling thread when that needs no wait ([`Self::write_now`]), else on
    /// a blocking thread. The caller holds the store's writer queue.
    pub(super) async fn write<T, F>(self: &Arc<Self>, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(done) = self.write_now(&write) {
            return done;
        }
        self.run(true, write).await
    }

    fn free_reader(&self) -> Option<MutexGuard<'_, Connection>> {
        self.readers.iter().find_map(if_free)
    }

    /// Runs a read on the calling thread without waiting for anything: `None` when a
    /// connection or SQLite's lock is taken (the caller then reads on a blocking thread).
    pub(super) fn read_now<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let conn = if_free(&self.writer).or_else(|| self.free_reader())?;
        // No busy handler meanwhile: SQLITE_BUSY at once instead of sleeping on a worker.
        conn.busy_timeout(Duration::ZERO).ok()?;
        let result = read(&conn);
        // Setting a busy timeout cannot fail; were it to, the connection would only fail
        // fast where it would have waited.
        let _ = conn.busy_timeout(self.busy_timeout);
        match result {
            Err(StoreError::Unavailable(_)) => None,
            done => Some(done),
        }
    }

    /// Runs a write on the calling thread when the writer connection is free and SQLite's
    /// write lock is too: `None` otherwise, having written nothing (the caller then writes on
    /// a blocking thread, which may wait). The caller holds the store's writer queue.
    pub(super) fn write_now<T>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let mut conn = if_free(&self.writer)?;
        conn.busy_timeout(Duration::ZERO).ok()?;
        let result = write(&mut conn);
        let _ = conn.busy_timeout(self.busy_timeout);
        match result {
            // The lock was taken (another process), or an I/O failure: the statement or
            // transaction was rolled back, so nothing was written, and the blocking thread
            // tries once more (waiting out the busy timeout where the lock is the cause).
            Err(StoreError::Unavailable(_)) => None,
            done => Some(done),
        }
    }
}

/// The connection unless another thread holds it.
fn if_free(conn: &Mutex<Connection>) -> Option<MutexGuard<'_, Connection>> {
    match conn.try_lock() {
        Ok(c) => Some(c),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Starts the thread that checkpoints the WAL on `conn` every [`CHECKPOINT_EVERY`] until the
/// returned sender is dropped.
fn spawn_checkpointer(
    conn: Connection,
    writer: Arc<Mutex<Connection>>,
) -> Result<mpsc::Sender<()>, StoreError> {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut failing = false;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                match checkpoint(&conn, &writer) {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("SQLite checkpoints succeed again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "SQLite checkpoint failed; the WAL grows until one succeeds");
                    }
                    Err(_) => {}
                }
            }
        })
        .map_err(|e| StoreError::Internal(format!("starting the checkpointer thread: {e}")))?;
    Ok(stop)
}

/// One round. A `PASSIVE` checkpoint waits for no reader or writer, but it copies the WAL as
/// it was when it started, and only a wholly copied WAL is started over by the next write:
/// under steady writes the WAL would grow without end. So once the first pass has copied
/// anything, a second one copies what was committed meanwhile with this process's writes held
/// off (they queue on the writer connection's lock for that short pass, never on SQLite's
/// busy handler).
fn checkpoint(conn: &Connection, writer: &Mutex<Connection>) -> rusqlite::Result<()> {
    let passive = || -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
    };
    if passive()? > 0 {
        let _writes = writer.lock().unwrap_or_else(|p| p.into_inner());
        passive()?;
    }
    Ok(())
}

/// As `From<sqlx::Error>`: no row is `NotFound`, a unique key `AlreadyExists`, a busy or
/// locked database after the busy timeout `Unavailable`. SQLite's messages carry no values
/// (every value is bound).
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        store_error(e)
    }
}

fn store_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                StoreError::AlreadyExists
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        },
        _ => StoreError::Internal(e.to_string()),
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
