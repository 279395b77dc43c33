//! PostgreSQL backend: one database shared by every replica.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

mod ops;

use super::{
    arguments, list_sql, record_args, Dialect, ProjectQuery, ProjectRecord, ProjectRow, Store,
    StoreError, GET_SQL, INSERT_SQL, UPDATE_SQL,
};
use super::{detached, QUERY_TIMEOUT};
use super::{
    AuthCodeRecord, CodeRedemption, DeviceApproval, DeviceCodeRecord, DevicePoll, Found, Issuance,
    IssueOutcome, RefreshTokenRecord, RevokedToken, SessionRecord, Spend,
};
#[cfg(test)]
pub(super) use ops::{insert_refresh_token, record_access_token};

/// A pooled connection idle for this long is pinged before it is used again; one used more
/// recently is taken as alive (as HikariCP's 500 ms "alive bypass window"), unless a
/// connection failed since it went idle ([`connection_failed`]).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// When a database connection last failed, in milliseconds since [`CLOCK_START`] (0: never).
static CONNECTION_FAILED_AT: AtomicU64 = AtomicU64::new(0);
static CLOCK_START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn millis_now() -> u64 {
    u64::try_from(CLOCK_START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Called for every error that says a connection is gone (I/O, TLS, PostgreSQL's connection
/// and shutdown classes). After a server restart or a failover every pooled connection is
/// dead at once: each connection that was idle when the failure was seen is then pinged
/// before it is used, so one request sees the failure rather than one per connection.
pub(super) fn connection_failed() {
    CONNECTION_FAILED_AT.store(millis_now().max(1), Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` must be pinged before it is handed out.
fn needs_ping(idle_for: Duration) -> bool {
    if idle_for >= PING_WHEN_IDLE_FOR {
        return true;
    }
    let failed_at = CONNECTION_FAILED_AT.load(Ordering::Relaxed);
    let idle_since = millis_now().saturating_sub(idle_for.as_millis() as u64);
    failed_at != 0 && idle_since <= failed_at
}

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
        max_lifetime: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let mut pool = PgPoolOptions::new();
        if let Some(d) = max_lifetime.filter(|d| !d.is_zero()) {
            pool = pool.max_lifetime(d);
        }
        let pool = pool
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // sqlx pings every connection it hands out by default: one more round trip to the
            // server before every statement. Only a connection idle for a while, or since a
            // connection failed, is pinged now ([`needs_ping`]); a broken one is dropped and
            // another taken.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if needs_ping(meta.idle_for) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

impl PgStore {
    /// Every operation goes through sqlx: [`detached`].
    async fn run<T, Fut>(&self, op: impl FnOnce(PgPool) -> Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        detached(op(self.pool.clone())).await
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.run(|pool| async move {
            let args = arguments::<Postgres>(args)?;
            sqlx::query_with(INSERT_SQL, args).execute(&pool).await?;
            Ok(())
        })
        .await
    }

    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError> {
        let args = record_args(p)?;
        self.run(|pool| async move {
            let args = arguments::<Postgres>(args)?;
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
        self.run(|pool| async move {
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
        let (sql, args) = list_sql(q, Dialect::Postgres)?;
        self.run(|pool| async move {
            let rows: Vec<ProjectRow> = sqlx::query_as_with(&sql, arguments::<Postgres>(args)?)
                .fetch_all(&pool)
                .await?;
            rows.into_iter().map(ProjectRecord::try_from).collect()
        })
        .await
    }

    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        let c = c.clone();
        self.run(move |pool| async move { ops::insert_auth_code(&pool, &c).await })
            .await
    }

    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError> {
        let code_hash = code_hash.to_owned();
        self.run(move |pool| async move { ops::redeem_auth_code(&pool, &code_hash, now).await })
            .await
    }

    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError> {
        let code_hash = code_hash.to_owned();
        self.run(move |pool| async move { ops::find_auth_code(&pool, &code_hash).await })
            .await
    }

    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.run(move |pool| async move { ops::find_refresh_token(&pool, &token_hash).await })
            .await
    }

    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError> {
        let spend = spend.clone();
        let issuance = issuance.clone();
        self.run(
            move |pool| async move { ops::spend_and_issue(&pool, &spend, now, &issuance).await },
        )
        .await
    }

    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let family_id = family_id.to_owned();
        self.run(move |pool| async move { ops::revoke_family(&pool, &family_id, now).await })
            .await
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(
            move |pool| async move { ops::revoke_access_token(&pool, &jti, expires_at, now).await },
        )
        .await
    }

    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        self.run(move |pool| async move { ops::revoked_tokens_since(&pool, since, now).await })
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(move |pool| async move { ops::create_session(&pool, &s).await })
            .await
    }

    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError> {
        let id_hash = id_hash.to_owned();
        self.run(move |pool| async move { ops::get_session(&pool, &id_hash).await })
            .await
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.run(move |pool| async move { ops::touch_session(&pool, &id_hash, now).await })
            .await
    }

    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        let token = token.map(<[u8]>::to_vec);
        self.run(move |pool| async move {
            ops::update_session_idp_refresh_token(&pool, &id_hash, token.as_deref()).await
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.run(move |pool| async move { ops::delete_session(&pool, &id_hash).await })
            .await
    }

    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError> {
        self.run(move |pool| async move {
            let counters = sqlx::query("DELETE FROM failure_counters WHERE expires_at <= $1")
                .bind(now)
                .execute(&pool)
                .await?
                .rows_affected();
            Ok(ops::purge_expired(&pool, now, session_idle_secs).await? + counters)
        })
        .await
    }

    async fn count_attempt(
        &self,
        key_hash: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        // PostgreSQL evaluates every SET expression against the row as it was.
        const SQL: &str = "INSERT INTO failure_counters (key_hash, window_start, expires_at, \
             attempts) VALUES ($1, $2, $2 + $3, 1) ON CONFLICT (key_hash) DO UPDATE SET \
             attempts = CASE WHEN failure_counters.expires_at <= $2 THEN 1 \
             ELSE failure_counters.attempts + 1 END, \
             window_start = CASE WHEN failure_counters.expires_at <= $2 THEN $2 \
             ELSE failure_counters.window_start END, \
             expires_at = CASE WHEN failure_counters.expires_at <= $2 THEN $2 + $3 \
             ELSE failure_counters.expires_at END \
             RETURNING window_start, attempts";
        let key_hash = key_hash.to_owned();
        self.run(move |pool| async move {
            let (start, attempts): (i64, i32) = sqlx::query_as(SQL)
                .bind(key_hash)
                .bind(now)
                .bind(window_secs)
                .fetch_one(&pool)
                .await?;
            Ok(Some((start, i64::from(attempts))))
        })
        .await
    }

    async fn uncount_attempt(&self, key_hash: &str, clear: bool) -> Result<(), StoreError> {
        let sql = if clear {
            "DELETE FROM failure_counters WHERE key_hash = $1"
        } else {
            "UPDATE failure_counters SET attempts = attempts - 1 WHERE key_hash = $1 AND attempts > 0"
        };
        let key_hash = key_hash.to_owned();
        self.run(move |pool| async move {
            sqlx::query(sql).bind(key_hash).execute(&pool).await?;
            Ok(())
        })
        .await
    }

    async fn remember_exchanged_token(
        &self,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let token_id = token_id.to_owned();
        self.run(move |pool| async move {
            ops::remember_exchanged_token(&pool, &token_id, expires_at, now).await
        })
        .await
    }

    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.run(move |pool| async move { ops::insert_device_code(&pool, &r).await })
            .await
    }

    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError> {
        let user_code = user_code.to_owned();
        self.run(
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
        self.run(move |pool| async move {
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
        self.run(
            move |pool| async move { ops::poll_device_code(&pool, &device_code_hash, now).await },
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
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
    use crate::store::tests::{add, open_store, run_postgres};
    use crate::store::DatabaseTarget;

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

    /// A restart or failover kills every pooled connection at once. Connections used within
    /// the last second are not pinged before use (a round trip per statement), so the first
    /// request after the kill may fail, but its failure makes every other pooled connection
    /// pinged and replaced: the next requests succeed.
    #[tokio::test]
    async fn one_request_fails_when_every_connection_was_killed() {
        run_postgres(|t| async move {
            let DatabaseTarget::Postgres { url } = &t else {
                unreachable!()
            };
            let store = PgStore::open(url, 4, Duration::from_secs(5), None)
                .await
                .unwrap();
            let p = &store.pool;
            let held = tokio::join!(p.acquire(), p.acquire(), p.acquire(), p.acquire());
            assert_eq!(p.size(), 4);
            drop(held); // four idle connections in the pool, used a moment ago
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            let killed: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(&mut admin)
            .await
            .unwrap();
            assert!(killed.len() >= 4, "{killed:?}");
            let mut outcomes = Vec::new();
            for _ in 0..4 {
                outcomes.push(store.ping().await);
            }
            assert!(
                outcomes[1..].iter().all(Result::is_ok),
                "only the first request may fail: {outcomes:?}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let url = "postgres://postgres@127.0.0.1:1/postgres";
        let err = PgStore::open(url, 1, Duration::from_millis(300), None).await;
        assert!(
            matches!(err, Err(StoreError::Unavailable(_))),
            "{:?}",
            err.err()
        );
    }

    #[tokio::test]
    async fn malformed_url_is_an_error_without_the_password() {
        let url = "postgres://u:hunter2@127.0.0.1:notaport/db";
        let err = PgStore::open(url, 1, Duration::from_millis(300), None).await;
        let msg = err.err().expect("must fail").to_string();
        assert!(
            msg.starts_with("database error: error with configuration"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
