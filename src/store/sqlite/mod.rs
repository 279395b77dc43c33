//! SQLite backend: one file under the data directory, WAL, for a single replica, on plain
//! SQLite connections (`conn.rs`). A grant's path: `mod.rs` (here) → `grant.rs` (SQL in
//! `store/authz.rs`); everything else → `ops.rs`; the schema → `migrate.rs`.

mod conn;
mod grant;
mod migrate;
mod ops;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::{deadline, QUERY_TIMEOUT};
use super::{list_sql, record_args, Dialect, ProjectQuery, ProjectRecord, Store, StoreError};
use super::{
    AuthCodeRecord, CodeRedemption, DeviceApproval, DeviceCodeRecord, DevicePoll, Found, Issuance,
    IssueOutcome, RefreshTokenRecord, RevokedToken, SessionRecord, Spend, INSERT_SQL, UPDATE_SQL,
};
use conn::Connections;
#[cfg(test)]
use conn::WAL_SIZE_LIMIT;

#[cfg(test)]
pub(super) use ops::{insert_refresh_token, record_access_token};

/// How long a connection waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`] on an SQLite file.
pub(super) struct SqliteStore {
    /// Held by every writing operation. SQLite admits one writer at a time and makes the
    /// others poll its lock with growing sleeps (the busy handler), so under concurrent
    /// writes some waited for up to a second; this queue is first come, first served, and
    /// SQLite never sees two writers of this process. Reads do not take it (WAL readers run
    /// alongside the writer).
    writer: tokio::sync::Mutex<()>,
    conns: Arc<Connections>,
    /// Set by [`Store::close`]: every later operation is `Unavailable`.
    closed: AtomicBool,
}

impl SqliteStore {
    /// Creates the file's directory and the file if missing, migrates, and opens the writer
    /// and `max_connections - 1` readers (at least one).
    pub(super) async fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let path = path.to_owned();
        let readers = usize::try_from(max_connections.saturating_sub(1)).unwrap_or(1);
        let conns = tokio::task::spawn_blocking(move || {
            conn::create_and_migrate(&path, BUSY_TIMEOUT)?;
            Connections::open(&path, readers, BUSY_TIMEOUT)
        })
        .await
        .map_err(|_| StoreError::Internal("opening the database panicked".into()))??;
        Ok(SqliteStore {
            writer: tokio::sync::Mutex::new(()),
            conns,
            closed: AtomicBool::new(false),
        })
    }

    /// Every operation: refused once closed, under the deadline; a write holds the writer
    /// queue. Each runs whole, on the calling thread or on a blocking thread that finishes it
    /// whether or not anyone still waits, so a caller that goes away leaves nothing half-done.
    async fn op<T>(
        &self,
        write: bool,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        deadline(QUERY_TIMEOUT, async {
            let _writer = if write {
                Some(self.writer.lock().await)
            } else {
                None
            };
            op.await
        })
        .await
    }

    /// A read off the grant path ([`ops`]).
    async fn read<T: Send + 'static>(
        &self,
        read: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.op(false, self.conns.read(read)).await
    }

    /// A write off the grant path ([`ops`]).
    async fn write<T: Send + 'static>(
        &self,
        write: impl Fn(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.op(true, self.conns.write(write)).await
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.write(move |conn| ops::execute(conn, INSERT_SQL, &args).map(drop))
            .await
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.write(move |conn| match ops::execute(conn, UPDATE_SQL, &args)? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        })
        .await
    }

    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.read(move |conn| ops::get_project(conn, &org, &id))
            .await
    }

    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError> {
        let (sql, args) = list_sql(q, Dialect::Sqlite)?;
        self.read(move |conn| ops::list_projects(conn, &sql, &args))
            .await
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        self.op(true, self.conns.insert_auth_code(c)).await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        let code_hash = code_hash.to_owned();
        self.write(move |conn| ops::redeem_auth_code(conn, &code_hash, now))
            .await
    }

    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError> {
        self.op(false, self.conns.find_auth_code(code_hash)).await
    }

    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        self.op(false, self.conns.find_refresh_token(token_hash))
            .await
    }

    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        self.op(true, self.conns.spend_and_issue(spend, now, issuance))
            .await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let family_id = family_id.to_owned();
        self.write(move |conn| ops::revoke_family(conn, &family_id, now))
            .await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.write(move |conn| ops::revoke_access_token(conn, &jti, expires_at, now))
            .await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.read(move |conn| ops::revoked_tokens_since(conn, since, now))
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |conn| ops::create_session(conn, &s)).await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        self.op(false, self.conns.get_session(id_hash)).await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| ops::touch_session(conn, &id_hash, now))
            .await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        let token = token.map(<[u8]>::to_vec);
        self.write(move |conn| {
            ops::update_session_idp_refresh_token(conn, &id_hash, token.as_deref())
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| ops::delete_session(conn, &id_hash))
            .await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        self.write(move |conn| ops::purge_expired(conn, now, session_idle_secs))
            .await
    }

    async fn remember_exchanged_token(
        &self,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.op(
            true,
            self.conns
                .remember_exchanged_token(token_id, expires_at, now),
        )
        .await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.write(move |conn| ops::insert_device_code(conn, &r))
            .await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        let user_code = user_code.to_owned();
        self.read(move |conn| ops::find_device_by_user_code(conn, &user_code, now))
            .await
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval>,
        now: i64,
    ) -> Result<(), StoreError> {
        let user_code = user_code.to_owned();
        let approval = approval.cloned();
        self.write(move |conn| ops::decide_device_code(conn, &user_code, approval.as_ref(), now))
            .await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        let device_code_hash = device_code_hash.to_owned();
        self.write(move |conn| ops::poll_device_code(conn, &device_code_hash, now))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Refuses every later operation and, once the writes in flight are done, copies the
    /// WAL into the database file and empties it (a clean file to back up).
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _writes = self.writer.lock().await;
        let done = self
            .conns
            .run(true, |conn| {
                Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?)
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "SQLite's last checkpoint failed; the WAL is copied at the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_directories_and_applies_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/flyteauth.db");
        let store = SqliteStore::open(&path, 2).await.unwrap();
        assert!(path.exists());
        {
            let conn = store.conns.writer.lock().unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            for (pragma, want) in [
                ("synchronous", 1),
                ("busy_timeout", 5000),
                ("foreign_keys", 1),
                ("wal_autocheckpoint", 0),
                ("journal_size_limit", WAL_SIZE_LIMIT),
            ] {
                let got: i64 = conn
                    .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                    .unwrap();
                assert_eq!(got, want, "PRAGMA {pragma}"); // synchronous 1 = NORMAL
            }
        }
        assert_eq!(store.conns.readers.len(), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn unusable_path_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let err = SqliteStore::open(&file.join("x.db"), 1).await;
        assert!(
            matches!(err, Err(StoreError::Unavailable(_))),
            "{:?}",
            err.err()
        );
    }
}
