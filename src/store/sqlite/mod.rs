//! SQLite backend: one file under the data directory, WAL, for a single replica. The grant
//! hot path runs on connections of its own ([`grant`]).

mod grant;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::authz_ops::sqlite as ops;
use super::{
    arguments, list_sql, record_args, Dialect, ProjectQuery, ProjectRecord, ProjectRow, Store,
    StoreError, GET_SQL, INSERT_SQL, UPDATE_SQL,
};
use super::{deadline, detached, QUERY_TIMEOUT};
use super::{
    AuthCodeRecord, CodeRedemption, DeviceApproval, DeviceCodeRecord, DevicePoll, Found, Issuance,
    IssueOutcome, RefreshTokenRecord, RevokedToken, SessionRecord, Spend,
};
use grant::{Direct, WAL_SIZE_LIMIT};

/// [`Store`] on an SQLite file.
pub(super) struct SqliteStore {
    pool: SqlitePool,
    /// Held by every writing operation, on the pool or on `direct`. SQLite admits one writer
    /// at a time and makes the others poll its lock with growing sleeps (the busy handler),
    /// so under concurrent writes some waited for up to a second; this queue is first come,
    /// first served, and SQLite never sees two writers of this process. Reads do not take it
    /// (WAL readers run alongside the writer).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The grant hot path without sqlx's per-statement thread hop.
    direct: Arc<Direct>,
}

impl SqliteStore {
    /// Creates the file's directory and the file if missing, opens the pool and migrates.
    pub(super) async fn open(
        path: &Path,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let busy_timeout = Duration::from_secs(5);
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
            // Checkpoints run on the checkpointer thread (`grant`), never in a commit.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // A file cannot hang up: no ping (a round trip to sqlx's worker thread) before
            // every statement.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let direct = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || Direct::open(&path, busy_timeout))
                .await
                .map_err(|_| StoreError::Internal("opening the database panicked".into()))??
        };
        Ok(SqliteStore {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            direct,
        })
    }
}

impl SqliteStore {
    /// A write through sqlx: [`detached`], behind the writer queue.
    async fn write<T, Fut>(&self, op: impl FnOnce(SqlitePool) -> Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (writer, op) = (self.writer.clone(), op(self.pool.clone()));
        detached(async move {
            let _writer = writer.lock_owned().await;
            op.await
        })
        .await
    }

    /// A read through sqlx: [`detached`].
    async fn read<T, Fut>(&self, op: impl FnOnce(SqlitePool) -> Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        detached(op(self.pool.clone())).await
    }

    /// The grant path ([`Direct`]), in the caller's task: each operation runs whole on the
    /// calling thread, or whole on a blocking thread that finishes it whether or not anyone
    /// still waits, so dropping it leaves nothing half-done. A write holds the writer queue.
    async fn grant<T>(
        &self,
        write: bool,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
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
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.write(|pool| async move {
            let args = arguments::<Sqlite>(args)?;
            sqlx::query_with(INSERT_SQL, args).execute(&pool).await?;
            Ok(())
        })
        .await
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.write(|pool| async move {
            let args = arguments::<Sqlite>(args)?;
            let done = sqlx::query_with(UPDATE_SQL, args).execute(&pool).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.read(|pool| async move {
            let row: ProjectRow = sqlx::query_as(GET_SQL)
                .bind(org)
                .bind(id)
                .fetch_one(&pool)
                .await?;
            row.try_into()
        })
        .await
    }

    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError> {
        let (sql, args) = list_sql(q, Dialect::Sqlite)?;
        self.read(|pool| async move {
            let rows: Vec<ProjectRow> = sqlx::query_as_with(&sql, arguments::<Sqlite>(args)?)
                .fetch_all(&pool)
                .await?;
            rows.into_iter().map(ProjectRecord::try_from).collect()
        })
        .await
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        self.grant(true, self.direct.insert_auth_code(c)).await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        let code_hash = code_hash.to_owned();
        self.write(move |pool| async move { ops::redeem_auth_code(&pool, &code_hash, now).await })
            .await
    }

    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError> {
        self.grant(false, self.direct.find_auth_code(code_hash))
            .await
    }

    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        self.grant(false, self.direct.find_refresh_token(token_hash))
            .await
    }

    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        self.grant(true, self.direct.spend_and_issue(spend, now, issuance))
            .await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let family_id = family_id.to_owned();
        self.write(move |pool| async move { ops::revoke_family(&pool, &family_id, now).await })
            .await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.write(move |pool| async move {
            ops::revoke_access_token(&pool, &jti, expires_at, now).await
        })
        .await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.read(move |pool| async move { ops::revoked_tokens_since(&pool, since, now).await })
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |pool| async move { ops::create_session(&pool, &s).await })
            .await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        self.grant(false, self.direct.get_session(id_hash)).await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write(move |pool| async move { ops::touch_session(&pool, &id_hash, now).await })
            .await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        let token = token.map(<[u8]>::to_vec);
        self.write(move |pool| async move {
            ops::update_session_idp_refresh_token(&pool, &id_hash, token.as_deref()).await
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write(move |pool| async move { ops::delete_session(&pool, &id_hash).await })
            .await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        self.write(
            move |pool| async move { ops::purge_expired(&pool, now, session_idle_secs).await },
        )
        .await
    }

    async fn remember_exchanged_token(
        &self,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.grant(
            true,
            self.direct
                .remember_exchanged_token(token_id, expires_at, now),
        )
        .await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.write(move |pool| async move { ops::insert_device_code(&pool, &r).await })
            .await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        let user_code = user_code.to_owned();
        self.read(
            move |pool| async move { ops::find_device_by_user_code(&pool, &user_code, now).await },
        )
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
        self.write(move |pool| async move {
            ops::decide_device_code(&pool, &user_code, approval.as_ref(), now).await
        })
        .await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        let device_code_hash = device_code_hash.to_owned();
        self.write(
            move |pool| async move { ops::poll_device_code(&pool, &device_code_hash, now).await },
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|pool| async move {
            sqlx::query("SELECT 1").execute(&pool).await?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(QUERY_TIMEOUT, self.pool.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_directories_and_applies_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/flyteauth.db");
        let store = SqliteStore::open(&path, 2, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(path.exists());
        let pool = &store.pool;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        for (pragma, want) in [
            ("synchronous", 1),
            ("busy_timeout", 5000),
            ("foreign_keys", 1),
            ("wal_autocheckpoint", 0),
            ("journal_size_limit", WAL_SIZE_LIMIT),
        ] {
            let got: i64 = sqlx::query_scalar(&format!("PRAGMA {pragma}"))
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(got, want, "PRAGMA {pragma}"); // synchronous 1 = NORMAL
        }
        store.close().await;
    }

    #[tokio::test]
    async fn unusable_path_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let err = SqliteStore::open(&file.join("x.db"), 1, Duration::from_secs(1)).await;
        assert!(
            matches!(err, Err(StoreError::Unavailable(_))),
            "{:?}",
            err.err()
        );
    }
}
