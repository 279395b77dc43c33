//! Every store call with a deadline: a database that stops answering (a partition, a silent
//! connection) yields `Unavailable` after [`QUERY_TIMEOUT`] instead of hanging the caller.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// How long one store operation may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TimeoutStore {
    inner: Arc<dyn Store>,
    limit: Duration,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn Store>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the database within {}s",
                self.limit.as_secs()
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Store for TimeoutStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.create_project(p)).await
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.update_project(p)).await
    }

    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError> {
        self.bounded(self.inner.get_project(org, id)).await
    }

    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError> {
        self.bounded(self.inner.list_projects(q)).await
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.insert_auth_code(c)).await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        self.bounded(self.inner.redeem_auth_code(code_hash, now))
            .await
    }

    async fn insert_refresh_token(&self, r: &RefreshTokenRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.insert_refresh_token(r)).await
    }

    async fn redeem_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<RefreshRedemption, StoreError> {
        self.bounded(self.inner.redeem_refresh_token(token_hash, now))
            .await
    }

    async fn record_access_token(
        &self,
        family_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.bounded(self.inner.record_access_token(family_id, jti, expires_at))
            .await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.bounded(self.inner.revoke_family(family_id, now)).await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.bounded(self.inner.revoke_access_token(jti, expires_at, now))
            .await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.bounded(self.inner.revoked_tokens_since(since, now))
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.create_session(s)).await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        self.bounded(self.inner.get_session(id_hash)).await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        self.bounded(self.inner.touch_session(id_hash, now)).await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.bounded(self.inner.update_session_idp_refresh_token(id_hash, token))
            .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.bounded(self.inner.delete_session(id_hash)).await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        self.bounded(self.inner.purge_expired(now, session_idle_secs))
            .await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        self.bounded(self.inner.insert_device_code(r)).await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        self.bounded(self.inner.find_device_by_user_code(user_code, now))
            .await
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.bounded(self.inner.decide_device_code(user_code, approval, now))
            .await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        self.bounded(self.inner.poll_device_code(device_code_hash, now))
            .await
    }

    async fn counts(&self, now: i64) -> Result<(u64, u64, u64), StoreError> {
        self.bounded(self.inner.counts(now)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(self.inner.ping()).await
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(self.limit, self.inner.close()).await;
    }
}
