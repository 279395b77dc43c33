//! The grant hot path on SQLite (and the read of a browser session), one call per operation.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its own: each statement is
//! a message to that thread and an answer back, ~50–70 µs apiece on a loaded 2-core machine.
//! A refresh grant is a read and a five-statement transaction, so most of its time was these
//! hand-offs (docs/BENCHMARKS.md, "What the profiles showed"). The operations of every code and
//! refresh grant run here instead: on two plain SQLite connections (rusqlite, the same
//! bundled SQLite as sqlx's), each operation whole, on the calling thread when nothing has to
//! be waited for and on a blocking thread otherwise, with cached prepared statements.
//!
//! - The **writer** connection writes only under [`super::SqliteStore`]'s writer
//!   queue, so this process never has two SQLite writers (sqlx's pool or this one). Reads
//!   borrow it when it is free, and the checkpointer holds it for the tail of a round.
//! - **Writes run on the calling thread** when the writer connection is free and SQLite's
//!   write lock is too (a grant's transaction takes ~40 µs; a blocking thread's round trip
//!   costs about as much in wake-ups). Like a read, such a write never waits there: where
//!   `BEGIN IMMEDIATE` finds the lock taken, nothing was written, and the write goes to a
//!   blocking thread, which may wait.
//! - **Reads run on the calling thread**, on the writer connection when it is free and on
//!   the **reader** otherwise (WAL readers run beside the writer). A read from cached pages
//!   takes ~15 µs, less than handing it to a blocking thread and back. The writer's page cache
//!   stays valid across its own commits, while any other connection's is dropped after every
//!   write, so the writer is the warm one. A read never waits on the calling thread: where
//!   SQLite would have to wait for a lock, it goes to a blocking thread, which may.
//! - **Checkpoints run on a thread of their own** ([`CHECKPOINT_EVERY`]). SQLite's automatic
//!   checkpoint runs inside the commit that crosses 1,000 WAL pages, and it syncs the file:
//!   one grant in a few hundred waited tens of milliseconds for it. Every connection of the
//!   store (sqlx's pool too) has it turned off. A round holds this process's writes off only
//!   to copy what was committed while it ran, so that the WAL is started over ([`checkpoint`]).
//!
//! The SQL is the same text the PostgreSQL backend and sqlx run (`$1`… are SQLite named
//! parameters here, bound by name: a statement may use them out of order or twice).

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::store::authz::*;
use crate::store::StoreError;

/// How often the checkpointer copies the WAL into the database file.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// What the WAL file is cut back to once checkpointed (a burst of writes grows it).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Two connections to the database file and the checkpointer; see the module documentation.
pub(super) struct Direct {
    reader: Mutex<Connection>,
    /// Shared with the checkpointer, which holds it for the tail of a round.
    writer: Arc<Mutex<Connection>>,
    busy_timeout: Duration,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: mpsc::Sender<()>,
}

impl Direct {
    /// Opens both connections to a migrated database file.
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Arc<Self>, StoreError> {
        let open = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(busy_timeout)?;
            // journal_mode=WAL is a property of the file, set by the pool that created it.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
            conn.set_prepared_statement_cache_capacity(32);
            Ok(conn)
        };
        let writer = Arc::new(Mutex::new(open()?));
        Ok(Arc::new(Direct {
            reader: Mutex::new(open()?),
            _checkpointer: spawn_checkpointer(open()?, writer.clone())?,
            writer,
            busy_timeout,
        }))
    }

    /// Runs `op` on one connection on a blocking thread. The caller of a write holds the
    /// store's writer queue.
    async fn run<T, F>(self: &Arc<Self>, write: bool, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = if write { &this.writer } else { &this.reader };
            // A panic mid-operation leaves no transaction open (rusqlite rolls back on
            // drop), so a poisoned lock still guards a usable connection.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut conn)
        })
        .await
        .map_err(|_| StoreError::Internal("a store operation panicked".into()))?
    }

    pub(super) async fn insert_auth_code(
        self: &Arc<Self>,
        c: &AuthCodeRecord,
    ) -> Result<(), StoreError> {
        let scopes = join_scopes(&c.scopes)?;
        let insert = move |conn: &mut Connection, c: &AuthCodeRecord, scopes: &str| {
            conn.prepare_cached(INSERT_CODE_SQL)?
                .execute(named_params! {
                    "$1": c.code_hash, "$2": c.client_id, "$3": c.redirect_uri,
                    "$4": c.subject, "$5": c.user_info, "$6": scopes,
                    "$7": c.code_challenge, "$8": c.family_id, "$9": c.auth_time,
                    "$10": c.expires_at,
                })?;
            Ok(())
        };
        if let Some(done) = self.write_now(|conn| insert(conn, c, &scopes)) {
            return done;
        }
        let c = c.clone();
        self.run(true, move |conn| insert(conn, &c, &scopes)).await
    }

    /// See [`crate::store::Store::remember_exchanged_token`]: one statement.
    pub(super) async fn remember_exchanged_token(
        self: &Arc<Self>,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let remember = move |conn: &mut Connection, id: &str| -> Result<bool, StoreError> {
            let n = conn
                .prepare_cached(crate::store::exchange::REMEMBER_SQL)?
                .execute(named_params! { "$1": id, "$2": expires_at, "$3": now })?;
            Ok(n == 1)
        };
        if let Some(done) = self.write_now(|conn| remember(conn, token_id)) {
            return done;
        }
        let id = token_id.to_owned();
        self.run(true, move |conn| remember(conn, &id)).await
    }

    pub(super) async fn find_auth_code(
        self: &Arc<Self>,
        code_hash: &str,
    ) -> Result<Found<AuthCodeRecord>, StoreError> {
        self.find(FIND_CODE_SQL, code_hash, |r| {
            Ok(AuthCodeRecord {
                code_hash: r.get("code_hash")?,
                client_id: r.get("client_id")?,
                redirect_uri: r.get("redirect_uri")?,
                subject: r.get("subject")?,
                user_info: r.get("user_info")?,
                scopes: split_scopes(&r.get::<_, String>("scopes")?),
                code_challenge: r.get("code_challenge")?,
                family_id: r.get("family_id")?,
                auth_time: r.get("auth_time")?,
                expires_at: r.get("expires_at")?,
            })
        })
        .await
    }

    pub(super) async fn find_refresh_token(
        self: &Arc<Self>,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        self.find(GET_REFRESH_SQL, token_hash, |r| {
            Ok(RefreshTokenRecord {
                token_hash: r.get("token_hash")?,
                family_id: r.get("family_id")?,
                client_id: r.get("client_id")?,
                subject: r.get("subject")?,
                user_info: r.get("user_info")?,
                scopes: split_scopes(&r.get::<_, String>("scopes")?),
                auth_time: r.get("auth_time")?,
                expires_at: r.get("expires_at")?,
            })
        })
        .await
    }

    /// A browser session by the digest of its cookie (`/authorize`, `/me`, the console's
    /// calls: every request a browser makes).
    pub(super) async fn get_session(
        self: &Arc<Self>,
        id_hash: &str,
    ) -> Result<SessionRecord, StoreError> {
        self.read_row(GET_SESSION_SQL, id_hash, |r| {
            Ok(SessionRecord {
                id_hash: r.get("id_hash")?,
                subject: r.get("subject")?,
                user_info: r.get("user_info")?,
                csrf_token: r.get("csrf_token")?,
                created_at: r.get("created_at")?,
                last_seen_at: r.get("last_seen_at")?,
                expires_at: r.get("expires_at")?,
                idp_refresh_token: r.get("idp_refresh_token")?,
            })
        })
        .await
    }

    /// A code or refresh token by digest (`sql`'s `$1`), with its `used_at` and its family's
    /// `revoked_at`.
    async fn find<T: Send + 'static>(
        self: &Arc<Self>,
        sql: &'static str,
        hash: &str,
        record: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Found<T>, StoreError> {
        self.read_row(sql, hash, move |r| {
            let used_at = r.get::<_, Option<i64>>("used_at")?;
            Ok(Found {
                record: record(r)?,
                used: used_at.is_some(),
                used_at,
                family_revoked: r.get::<_, Option<i64>>("revoked_at")?.is_some(),
            })
        })
        .await
    }

    /// The row `sql` selects by `$1` = `key`, read on the calling thread when that needs no
    /// wait ([`Self::read_now`]), on a blocking thread otherwise; `NotFound` if none.
    async fn read_row<T, F>(
        self: &Arc<Self>,
        sql: &'static str,
        key: &str,
        row: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Copy + Send + 'static,
    {
        let read = move |conn: &Connection, key: &str| -> Result<T, StoreError> {
            Ok(conn
                .prepare_cached(sql)?
                .query_row(named_params! { "$1": key }, row)?)
        };
        if let Some(done) = self.read_now(|conn| read(conn, key)) {
            return done;
        }
        let key = key.to_owned();
        self.run(false, move |conn| read(conn, &key)).await
    }

    /// Runs a read on the calling thread without waiting for anything: `None` when a
    /// connection or SQLite's lock is taken (the caller then reads on a blocking thread).
    fn read_now<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let conn = if_free(&self.writer).or_else(|| if_free(&self.reader))?;
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

    /// One `BEGIN IMMEDIATE` transaction. It holds the database's write lock from the start,
    /// so the spend's `UPDATE` checks the family itself and needs no row lock; a grant that
    /// spends nothing checks the family with [`LOCK_FAMILY_SQL`].
    pub(super) async fn spend_and_issue(
        self: &Arc<Self>,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        let refresh_scopes = refresh_row(issuance)?.map(|(_, scopes)| scopes);
        if let Some(done) =
            self.write_now(|conn| grant(conn, spend, now, issuance, refresh_scopes.as_deref()))
        {
            return done;
        }
        let (spend, issuance) = (spend.clone(), issuance.clone());
        self.run(true, move |conn| {
            grant(conn, &spend, now, &issuance, refresh_scopes.as_deref())
        })
        .await
    }

    /// Runs a write on the calling thread when the writer connection is free and SQLite's
    /// write lock is too: `None` otherwise, having written nothing (the caller then writes on
    /// a blocking thread, which may wait). The caller holds the store's writer queue.
    fn write_now<T>(
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

/// A grant's transaction ([`Direct::spend_and_issue`]).
fn grant(
    conn: &mut Connection,
    spend: &Spend,
    now: i64,
    issuance: &Issuance,
    refresh_scopes: Option<&str>,
) -> Result<IssueOutcome, StoreError> {
    let family = issuance.family_id.as_str();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match spend_sql(spend) {
        Some((hash, spend_sql, state_sql)) => {
            let spent = tx
                .prepare_cached(spend_sql)?
                .execute(named_params! { "$1": hash, "$2": now, "$3": family })?;
            if spent == 0 {
                let state = tx
                    .prepare_cached(state_sql)?
                    .query_row(named_params! { "$1": hash }, |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                // Dropping the transaction rolls it back.
                return Ok(spend_failure(state));
            }
        }
        None => {
            let revoked: Option<i64> = tx
                .prepare_cached(LOCK_FAMILY_SQL)?
                .query_row(named_params! { "$1": family }, |r| r.get(0))?;
            if revoked.is_some() {
                return Ok(IssueOutcome::FamilyRevoked);
            }
        }
    }
    tx.prepare_cached(INSERT_ACCESS_SQL)?
        .execute(named_params! {
            "$1": issuance.jti, "$2": family, "$3": issuance.jti_expires_at,
        })?;
    if let (Some(r), Some(scopes)) = (&issuance.refresh, refresh_scopes) {
        tx.prepare_cached(INSERT_REFRESH_SQL)?
            .execute(named_params! {
                "$1": r.token_hash, "$2": family, "$3": r.client_id, "$4": r.subject,
                "$5": r.user_info, "$6": scopes, "$7": r.auth_time, "$8": r.expires_at,
            })?;
    }
    tx.commit()?;
    Ok(IssueOutcome::Issued)
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
#[path = "grant_tests.rs"]
mod tests;
