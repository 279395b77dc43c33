//! PostgreSQL backend: one database shared by every replica.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::authz_ops::postgres as ops;
use super::{
    arguments, counts, list_sql, record_args, Dialect, ProjectQuery, ProjectRecord, ProjectRow,
    Store, StoreError, COUNTS_SQL, GET_SQL, INSERT_SQL, UPDATE_SQL,
};
use super::{
    AuthCodeRecord, CodeRedemption, DeviceApproval, DeviceCodeRecord, DevicePoll, Found, Issuance,
    IssueOutcome, RefreshRedemption, RefreshTokenRecord, RevokedToken, SessionRecord, Spend,
};

/// [`Store`] on a PostgreSQL database.
pub(super) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (waiting up to `acquire_timeout` for a server that is starting) and migrates.
    pub(super) async fn open(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = arguments::<Postgres>(record_args(p)?)?;
        sqlx::query_with(INSERT_SQL, args)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = arguments::<Postgres>(record_args(p)?)?;
        let done = sqlx::query_with(UPDATE_SQL, args)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError> {
        let row: ProjectRow = sqlx::query_as(GET_SQL)
            .bind(org)
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        row.try_into()
    }

    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError> {
        let (sql, args) = list_sql(q, Dialect::Postgres)?;
        let rows: Vec<ProjectRow> = sqlx::query_as_with(&sql, arguments::<Postgres>(args)?)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ProjectRecord::try_from).collect()
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        super::authz_ops::insert_auth_code_postgres(&self.pool, c).await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        ops::redeem_auth_code(&self.pool, code_hash, now).await
    }

    async fn insert_refresh_token(&self, r: &RefreshTokenRecord) -> Result<(), StoreError> {
        ops::insert_refresh_token(&self.pool, r).await
    }

    async fn redeem_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<RefreshRedemption, StoreError> {
        ops::redeem_refresh_token(&self.pool, token_hash, now).await
    }

    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError> {
        super::authz_ops::find_auth_code_postgres(&self.pool, code_hash).await
    }

    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        super::authz_ops::find_refresh_token_postgres(&self.pool, token_hash).await
    }

    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        super::authz_ops::spend_and_issue_postgres(&self.pool, spend, now, issuance).await
    }

    async fn record_access_token(
        &self,
        family_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        ops::record_access_token(&self.pool, family_id, jti, expires_at).await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        ops::revoke_family(&self.pool, family_id, now).await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        ops::revoke_access_token(&self.pool, jti, expires_at, now).await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        ops::revoked_tokens_since(&self.pool, since, now).await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        ops::create_session(&self.pool, s).await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        super::authz_ops::get_session_postgres(&self.pool, id_hash).await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        ops::touch_session(&self.pool, id_hash, now).await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        ops::update_session_idp_refresh_token(&self.pool, id_hash, token).await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        ops::delete_session(&self.pool, id_hash).await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        ops::purge_expired(&self.pool, now, session_idle_secs).await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        ops::insert_device_code(&self.pool, r).await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        ops::find_device_by_user_code(&self.pool, user_code, now).await
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval>,
        now: i64,
    ) -> Result<(), StoreError> {
        ops::decide_device_code(&self.pool, user_code, approval, now).await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        ops::poll_device_code(&self.pool, device_code_hash, now).await
    }

    async fn counts(&self, now: i64) -> Result<(u64, u64, u64), StoreError> {
        let row = sqlx::query_as(COUNTS_SQL)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        counts(row)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{add, open_store, run_postgres};

    #[tokio::test]
    async fn replicas_migrate_concurrently() {
        run_postgres(|t| async move {
            // Two replicas starting together on an empty database: the migrator's advisory
            // lock lets one apply the migrations and the other find them applied.
            let (a, b) = tokio::join!(open_store(&t), open_store(&t));
            add(&a, "p", "P", 0).await;
            assert_eq!(b.get_project("", "p").await.unwrap().name, "P");
            a.close().await;
            b.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let url = "postgres://postgres@127.0.0.1:1/postgres";
        let err = PgStore::open(url, 1, Duration::from_millis(300)).await;
        assert!(
            matches!(err, Err(StoreError::Unavailable(_))),
            "{:?}",
            err.err()
        );
    }

    #[tokio::test]
    async fn malformed_url_is_an_error_without_the_password() {
        let url = "postgres://u:hunter2@127.0.0.1:notaport/db";
        let err = PgStore::open(url, 1, Duration::from_millis(300)).await;
        let msg = err.err().expect("must fail").to_string();
        assert!(
            msg.starts_with("database error: error with configuration"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
