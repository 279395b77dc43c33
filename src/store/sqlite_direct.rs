//! The grant hot path on SQLite, one blocking call per operation.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its own: each statement is
//! a message to that thread and an answer back, ~50–70 µs apiece on a loaded 2-core machine.
//! A refresh grant is a read and a five-statement transaction, so most of its time was these
//! hand-offs (docs/BENCHMARKS.md, "What the profiles showed"). The operations of every code and
//! refresh grant run here instead: on two plain SQLite connections (rusqlite, the same
//! bundled SQLite as sqlx's), each operation whole on one blocking thread, with cached
//! prepared statements.
//!
//! - The **writer** connection is only used under [`super::sqlite::SqliteStore`]'s writer
//!   queue, so this process never has two SQLite writers (sqlx's pool or this one).
//! - The **reader** connection serves reads; WAL readers run beside the writer. One is
//!   enough: a read holds it for ~15 µs, a small part of the signature every grant makes.
//!
//! The SQL is the same text the PostgreSQL backend and sqlx run (`$1`… are SQLite named
//! parameters here, bound by name: a statement may use them out of order or twice).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::authz::*;
use super::StoreError;

/// Two connections to the database file; see the module documentation.
pub(super) struct Direct {
    reader: Mutex<Connection>,
    writer: Mutex<Connection>,
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
            conn.set_prepared_statement_cache_capacity(32);
            Ok(conn)
        };
        Ok(Arc::new(Direct {
            reader: Mutex::new(open()?),
            writer: Mutex::new(open()?),
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
        let c = c.clone();
        self.run(true, move |conn| {
            conn.prepare_cached(INSERT_CODE_SQL)?
                .execute(named_params! {
                    "$1": c.code_hash, "$2": c.client_id, "$3": c.redirect_uri,
                    "$4": c.subject, "$5": c.user_info, "$6": scopes,
                    "$7": c.code_challenge, "$8": c.family_id, "$9": c.auth_time,
                    "$10": c.expires_at,
                })?;
            Ok(())
        })
        .await
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

    /// A code or refresh token by digest (`sql`'s `$1`), with its `used_at` and its family's
    /// `revoked_at`.
    async fn find<T: Send + 'static>(
        self: &Arc<Self>,
        sql: &'static str,
        hash: &str,
        record: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Found<T>, StoreError> {
        let hash = hash.to_owned();
        self.run(false, move |conn| {
            Ok(conn
                .prepare_cached(sql)?
                .query_row(named_params! { "$1": hash }, |r| {
                    Ok(Found {
                        record: record(r)?,
                        used: r.get::<_, Option<i64>>("used_at")?.is_some(),
                        family_revoked: r.get::<_, Option<i64>>("revoked_at")?.is_some(),
                    })
                })?)
        })
        .await
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
        let (spend, issuance) = (spend.clone(), issuance.clone());
        self.run(true, move |conn| {
            let family = issuance.family_id.as_str();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match spend_sql(&spend) {
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
            if let (Some(r), Some(scopes)) = (&issuance.refresh, &refresh_scopes) {
                tx.prepare_cached(INSERT_REFRESH_SQL)?
                    .execute(named_params! {
                        "$1": r.token_hash, "$2": family, "$3": r.client_id, "$4": r.subject,
                        "$5": r.user_info, "$6": scopes, "$7": r.auth_time, "$8": r.expires_at,
                    })?;
            }
            tx.commit()?;
            Ok(IssueOutcome::Issued)
        })
        .await
    }
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
mod tests {
    use super::*;

    fn wal_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("flyteauth.db");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        path
    }

    #[test]
    fn both_connections_apply_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Direct::open(&wal_file(&dir), Duration::from_millis(1234)).unwrap();
        for conn in [&direct.reader, &direct.writer] {
            let conn = conn.lock().unwrap();
            let get = |pragma: &str| -> i64 {
                conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                    .unwrap()
            };
            assert_eq!(get("synchronous"), 1, "NORMAL");
            assert_eq!(get("foreign_keys"), 1);
            assert_eq!(get("busy_timeout"), 1234);
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }

    #[test]
    fn never_creates_a_database_the_migrations_did_not_run_on() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        assert!(matches!(
            Direct::open(&missing, Duration::from_secs(1)),
            Err(StoreError::Unavailable(_))
        ));
        assert!(!missing.exists());
    }

    /// Another process holding the write lock past the busy timeout: a clear, retryable
    /// error, and nothing half-done.
    #[tokio::test]
    async fn a_locked_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_file(&dir);
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let direct = Direct::open(&path, Duration::from_millis(50)).unwrap();
        let err = direct
            .run(true, |conn| {
                conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                Ok(())
            })
            .await;
        assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
        other.execute_batch("COMMIT").unwrap();
        let rows: i64 = direct
            .run(false, |conn| {
                Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
}
