//! Every store call detached and with a deadline.
//!
//! - **Detached**: each operation runs in a task of its own, so a caller that goes away (a
//!   client that disconnects, the deadline below) never cancels it half-way. sqlx is not
//!   cancellation-safe while it opens a transaction: a future dropped right after `BEGIN` was
//!   sent returns its connection to the pool *inside* the transaction (SQLite: the write lock
//!   held and every later `begin` refused; PostgreSQL: an "idle in transaction" connection
//!   whose writes no one else sees). Found by `make bench`, whose load generator drops
//!   in-flight requests at the end of every run.
//!   The grant path's operations of a store that keeps them whole when dropped
//!   ([`Store::grant_path_is_cancel_safe`]: SQLite's, which run whole on the calling thread
//!   or on a blocking thread) run in the caller's task instead: a task of their own would
//!   only add a thread hand-off to every grant.
//! - **Deadline**: a database that stops answering (a partition, a silent connection) yields
//!   `Unavailable` after [`QUERY_TIMEOUT`] instead of hanging the caller; the operation itself
//!   still finishes (or fails) on its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// How long one store operation may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TimeoutStore {
    inner: Arc<dyn Store>,
    limit: Duration,
    /// The inner store's [`Store::grant_path_is_cancel_safe`].
    grant_path_in_place: bool,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn Store>, limit: Duration) -> Self {
        let grant_path_in_place = inner.grant_path_is_cancel_safe();
        Self {
            inner,
            limit,
            grant_path_in_place,
        }
    }

    /// Runs a grant-path operation in the caller's task when the inner store keeps it whole
    /// if dropped (`here`), in a task of its own otherwise (`detached`); at most `limit` either
    /// way.
    async fn run_grant<T, Here, F, Fut>(&self, here: Here, detached: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Here: Future<Output = Result<T, StoreError>>,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        if !self.grant_path_in_place {
            return self.run(detached).await;
        }
        tokio::time::timeout(self.limit, here)
            .await
            .unwrap_or_else(|_| Err(self.no_answer()))
    }

    fn no_answer(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "no answer from the database within {}s",
            self.limit.as_secs()
        ))
    }

    /// Runs `op` on the inner store in a task of its own and waits at most `limit` for it.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = tokio::spawn(op(self.inner.clone()));
        match tokio::time::timeout(self.limit, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::Internal("a store operation panicked".into())),
            Err(_) => Err(self.no_answer()),
        }
    }
}

#[async_trait::async_trait]
impl Store for TimeoutStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let p = p.clone();
        self.run(move |store| async move { store.create_project(&p).await })
            .await
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let p = p.clone();
        self.run(move |store| async move { store.update_project(&p).await })
            .await
    }

    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError> {
        let org = org.to_owned();
        let id = id.to_owned();
        self.run(move |store| async move { store.get_project(&org, &id).await })
            .await
    }

    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError> {
        let q = q.clone();
        self.run(move |store| async move { store.list_projects(&q).await })
            .await
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        self.run_grant(self.inner.insert_auth_code(c), |store| {
            let c = c.clone();
            async move { store.insert_auth_code(&c).await }
        })
        .await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        let code_hash = code_hash.to_owned();
        self.run(move |store| async move { store.redeem_auth_code(&code_hash, now).await })
            .await
    }

    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError> {
        self.run_grant(self.inner.find_auth_code(code_hash), |store| {
            let code_hash = code_hash.to_owned();
            async move { store.find_auth_code(&code_hash).await }
        })
        .await
    }

    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        self.run_grant(self.inner.find_refresh_token(token_hash), |store| {
            let token_hash = token_hash.to_owned();
            async move { store.find_refresh_token(&token_hash).await }
        })
        .await
    }

    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        self.run_grant(self.inner.spend_and_issue(spend, now, issuance), |store| {
            let (spend, issuance) = (spend.clone(), issuance.clone());
            async move { store.spend_and_issue(&spend, now, &issuance).await }
        })
        .await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let family_id = family_id.to_owned();
        self.run(move |store| async move { store.revoke_family(&family_id, now).await })
            .await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(move |store| async move { store.revoke_access_token(&jti, expires_at, now).await })
            .await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.run(move |store| async move { store.revoked_tokens_since(since, now).await })
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(move |store| async move { store.create_session(&s).await })
            .await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        self.run_grant(self.inner.get_session(id_hash), |store| {
            let id_hash = id_hash.to_owned();
            async move { store.get_session(&id_hash).await }
        })
        .await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.run(move |store| async move { store.touch_session(&id_hash, now).await })
            .await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        let token = token.map(<[u8]>::to_vec);
        self.run(move |store| async move {
            store
                .update_session_idp_refresh_token(&id_hash, token.as_deref())
                .await
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.run(move |store| async move { store.delete_session(&id_hash).await })
            .await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        self.run(move |store| async move { store.purge_expired(now, session_idle_secs).await })
            .await
    }

    async fn remember_exchanged_token(
        &self,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run_grant(
            self.inner
                .remember_exchanged_token(token_id, expires_at, now),
            |store| {
                let token_id = token_id.to_owned();
                async move {
                    store
                        .remember_exchanged_token(&token_id, expires_at, now)
                        .await
                }
            },
        )
        .await
    }

    async fn count_attempt(
        &self,
        key_hash: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let key_hash = key_hash.to_owned();
        self.run(move |store| async move { store.count_attempt(&key_hash, now, window_secs).await })
            .await
    }

    async fn uncount_attempt(&self, key_hash: &str, clear: bool) -> Result<(), StoreError> {
        let key_hash = key_hash.to_owned();
        self.run(move |store| async move { store.uncount_attempt(&key_hash, clear).await })
            .await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.run(move |store| async move { store.insert_device_code(&r).await })
            .await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        let user_code = user_code.to_owned();
        self.run(move |store| async move { store.find_device_by_user_code(&user_code, now).await })
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
        self.run(move |store| async move {
            store
                .decide_device_code(&user_code, approval.as_ref(), now)
                .await
        })
        .await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        let device_code_hash = device_code_hash.to_owned();
        self.run(move |store| async move { store.poll_device_code(&device_code_hash, now).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(move |store| async move { store.ping().await })
            .await
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(self.limit, self.inner.close()).await;
    }
}
