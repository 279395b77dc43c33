//! The PostgreSQL backend's operations on its sqlx pool. Every write transaction starts with
//! `BEGIN` (READ COMMITTED), so every read-then-write decision is either one statement or made
//! under a locked row: the family's ([`LOCK_FAMILY_SQL`]) or the device code's
//! ([`LOCK_DEVICE_SQL`]). The hot path of every code and refresh grant (`spend_and_issue`) is
//! one statement, so one round trip and one commit.

use crate::store::authz::*;
use crate::store::device::*;
use crate::store::StoreError;

type Pool = sqlx::Pool<sqlx::Postgres>;

/// Lists a jti as revoked without a caller's `now`: stamped with the later of the family's
/// revocation (`$3`, the caller's clock) and the database's clock, so a poller's window catches
/// it whichever clock runs ahead.
#[cfg(test)]
const REVOKE_ACCESS_LATE_SQL: &str = "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) \
     VALUES ($1, $2, GREATEST($3, floor(extract(epoch FROM now()))::BIGINT)) \
     ON CONFLICT (jti) DO NOTHING";

/// Frees a user code held by an expired device code. Insertion has no caller's `now`, so
/// "expired" is by the database's clock.
const FREE_USER_CODE_SQL: &str = "DELETE FROM device_codes WHERE user_code = $1 \
     AND expires_at <= floor(extract(epoch FROM now()))::BIGINT";

pub(super) async fn redeem_auth_code(
    pool: &Pool,
    code_hash: &str,
    now: i64,
) -> Result<CodeRedemption, StoreError> {
    for _ in 0..REDEEM_ATTEMPTS {
        let won: Option<CodeRow> = sqlx::query_as(REDEEM_CODE_SQL)
            .bind(code_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
        if let Some(row) = won {
            return Ok(CodeRedemption::Fresh(row.into()));
        }
        let state: CodeState = sqlx::query_as(FIND_CODE_SQL)
            .bind(code_hash)
            .fetch_one(pool)
            .await?;
        if let Some(outcome) = code_outcome(state) {
            return Ok(outcome);
        }
    }
    Err(contended())
}

/// Test seeding: production stores refresh tokens in a grant's transaction.
#[cfg(test)]
pub(crate) async fn insert_refresh_token(
    pool: &Pool,
    r: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_REFRESH_SQL)
        .bind(&r.token_hash)
        .bind(&r.family_id)
        .bind(&r.client_id)
        .bind(&r.subject)
        .bind(&r.user_info)
        .bind(join_scopes(&r.scopes)?)
        .bind(r.auth_time)
        .bind(r.expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Test seeding (production records access tokens in a grant's transaction).
/// Under the family's lock, so it serialises with [`revoke_family`]: a token
/// recorded into a family revoked meanwhile is listed as revoked at once.
#[cfg(test)]
pub(crate) async fn record_access_token(
    pool: &Pool,
    family_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let revoked: Option<i64> = sqlx::query_scalar(LOCK_FAMILY_SQL)
        .bind(family_id)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(INSERT_ACCESS_SQL)
        .bind(jti)
        .bind(family_id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    if let Some(revoked_at) = revoked {
        sqlx::query(REVOKE_ACCESS_LATE_SQL)
            .bind(jti)
            .bind(expires_at)
            .bind(revoked_at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn revoke_family(
    pool: &Pool,
    family_id: &str,
    now: i64,
) -> Result<Vec<RevokedToken>, StoreError> {
    let mut tx = pool.begin().await?;
    for sql in [
        REVOKE_FAMILY_SQL,
        SPEND_FAMILY_REFRESH_SQL,
        REVOKE_FAMILY_ACCESS_SQL,
    ] {
        sqlx::query(sql)
            .bind(family_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let revoked: Vec<RevokedToken> = sqlx::query_as(FAMILY_REVOKED_SQL)
        .bind(family_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(revoked)
}

pub(super) async fn revoke_access_token(
    pool: &Pool,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(REVOKE_ACCESS_SQL)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn revoked_tokens_since(
    pool: &Pool,
    since: i64,
    now: i64,
) -> Result<Vec<RevokedToken>, StoreError> {
    Ok(sqlx::query_as(REVOKED_SINCE_SQL)
        .bind(since)
        .bind(now)
        .fetch_all(pool)
        .await?)
}

pub(super) async fn create_session(pool: &Pool, s: &SessionRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_SESSION_SQL)
        .bind(&s.id_hash)
        .bind(&s.subject)
        .bind(&s.user_info)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.idp_refresh_token.as_deref())
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn touch_session(pool: &Pool, id_hash: &str, now: i64) -> Result<(), StoreError> {
    let done = sqlx::query(TOUCH_SESSION_SQL)
        .bind(id_hash)
        .bind(now)
        .execute(pool)
        .await?;
    found(done.rows_affected())
}

pub(super) async fn update_session_idp_refresh_token(
    pool: &Pool,
    id_hash: &str,
    token: Option<&[u8]>,
) -> Result<(), StoreError> {
    let done = sqlx::query(SESSION_IDP_TOKEN_SQL)
        .bind(id_hash)
        .bind(token)
        .execute(pool)
        .await?;
    found(done.rows_affected())
}

pub(super) async fn delete_session(pool: &Pool, id_hash: &str) -> Result<(), StoreError> {
    sqlx::query(DELETE_SESSION_SQL)
        .bind(id_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// A user code still held by an unexpired code is `AlreadyExists` (the unique
/// index decides between racing inserts).
pub(super) async fn insert_device_code(
    pool: &Pool,
    r: &DeviceCodeRecord,
) -> Result<(), StoreError> {
    let scopes = join_scopes(&r.scopes)?;
    let mut tx = pool.begin().await?;
    sqlx::query(FREE_USER_CODE_SQL)
        .bind(&r.user_code)
        .execute(&mut *tx)
        .await?;
    sqlx::query(INSERT_DEVICE_SQL)
        .bind(&r.device_code_hash)
        .bind(&r.user_code)
        .bind(&r.client_id)
        .bind(scopes)
        .bind(r.interval_secs)
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn find_device_by_user_code(
    pool: &Pool,
    user_code: &str,
    now: i64,
) -> Result<DeviceCodeRecord, StoreError> {
    let row: DeviceRow = sqlx::query_as(FIND_DEVICE_SQL)
        .bind(user_code)
        .bind(now)
        .fetch_one(pool)
        .await?;
    Ok(row.into())
}

pub(super) async fn decide_device_code(
    pool: &Pool,
    user_code: &str,
    approval: Option<&DeviceApproval>,
    now: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query(DECIDE_DEVICE_SQL)
        .bind(user_code)
        .bind(now)
        .bind(approval.map(|a| a.subject.as_str()))
        .bind(approval.map(|a| a.user_info.as_str()))
        .bind(approval.map(|a| a.family_id.as_str()))
        .bind(approval.map(|a| a.auth_time))
        .execute(pool)
        .await?;
    found(done.rows_affected())
}

/// Under the row's lock: read, decide, write, commit.
pub(super) async fn poll_device_code(
    pool: &Pool,
    device_code_hash: &str,
    now: i64,
) -> Result<DevicePoll, StoreError> {
    let mut tx = pool.begin().await?;
    let state: DeviceState = sqlx::query_as(LOCK_DEVICE_SQL)
        .bind(device_code_hash)
        .fetch_one(&mut *tx)
        .await?;
    let poll = device_poll(state, now)?;
    if let Some(sql) = poll_write(&poll) {
        sqlx::query(sql)
            .bind(device_code_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(poll)
}

/// One statement per table, each atomic on its own: a purge holds no lock
/// across tables.
pub(super) async fn purge_expired(
    pool: &Pool,
    now: i64,
    session_idle_secs: i64,
) -> Result<u64, StoreError> {
    let cutoff = idle_cutoff(now, session_idle_secs);
    let mut removed = 0;
    for sql in PURGE_SQL {
        let done = sqlx::query(sql).bind(now).execute(pool).await?;
        removed += done.rows_affected();
    }
    let done = sqlx::query(PURGE_SESSIONS_SQL)
        .bind(now)
        .bind(cutoff)
        .execute(pool)
        .await?;
    removed += done.rows_affected();
    let done = sqlx::query(PURGE_FAMILIES_SQL).execute(pool).await?;
    Ok(removed + done.rows_affected())
}

/// PostgreSQL: one statement, so one round trip and one commit. Its CTEs run in order, each
/// feeding the next: lock the family row (as `revoke_family` does first: the same lock
/// order), spend while the family is alive, record the access token, insert the refresh
/// token. `$1` hash, `$2` now, `$3` family, `$4`/`$5` jti and its expiry, `$6`–`$12` the
/// refresh token (`$6` NULL: none).
macro_rules! pg_issue_sql {
    ($spent:literal) => {
        concat!(
            "WITH family AS (INSERT INTO token_families (family_id) VALUES ($3) \
             ON CONFLICT (family_id) DO UPDATE SET revoked_at = token_families.revoked_at \
             RETURNING revoked_at), spent AS (",
            $spent,
            "), access AS (INSERT INTO access_tokens (jti, family_id, expires_at) \
             SELECT $4, family_id, $5 FROM spent RETURNING family_id), \
             refreshed AS (INSERT INTO refresh_tokens (token_hash, family_id, client_id, \
             subject, user_info, scopes, auth_time, expires_at) \
             SELECT $6, family_id, $7, $8, $9, $10, $11, $12 FROM access \
             WHERE $6 IS NOT NULL RETURNING 1) \
             SELECT (SELECT revoked_at FROM family) AS revoked_at, \
             (SELECT count(*) FROM access) AS issued"
        )
    };
}

const PG_ISSUE_CODE_SQL: &str = pg_issue_sql!(
    "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1 AND family_id = $3 \
     AND used_at IS NULL AND NOT EXISTS (SELECT 1 FROM family WHERE revoked_at IS NOT NULL) \
     RETURNING family_id"
);
const PG_ISSUE_REFRESH_SQL: &str = pg_issue_sql!(
    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND family_id = $3 \
     AND used_at IS NULL AND NOT EXISTS (SELECT 1 FROM family WHERE revoked_at IS NOT NULL) \
     RETURNING family_id"
);
const PG_ISSUE_ONLY_SQL: &str =
    pg_issue_sql!("SELECT $3::text AS family_id FROM family WHERE revoked_at IS NULL");

/// See [`pg_issue_sql`].
pub(super) async fn spend_and_issue(
    pool: &sqlx::PgPool,
    spend: &Spend,
    now: i64,
    issuance: &Issuance,
) -> Result<IssueOutcome, StoreError> {
    let refresh = refresh_row(issuance)?;
    let (hash, sql) = match spend {
        Spend::AuthCode(hash) => (Some(hash.as_str()), PG_ISSUE_CODE_SQL),
        Spend::RefreshToken(hash) => (Some(hash.as_str()), PG_ISSUE_REFRESH_SQL),
        Spend::Nothing => (None, PG_ISSUE_ONLY_SQL),
    };
    let r = refresh.as_ref().map(|(r, _)| *r);
    let (revoked_at, issued): (Option<i64>, i64) = sqlx::query_as(sql)
        .bind(hash)
        .bind(now)
        .bind(&issuance.family_id)
        .bind(&issuance.jti)
        .bind(issuance.jti_expires_at)
        .bind(r.map(|r| r.token_hash.as_str()))
        .bind(r.map(|r| r.client_id.as_str()))
        .bind(r.map(|r| r.subject.as_str()))
        .bind(r.map(|r| r.user_info.as_str()))
        .bind(refresh.as_ref().map(|(_, scopes)| scopes.as_str()))
        .bind(r.map(|r| r.auth_time))
        .bind(r.map(|r| r.expires_at))
        .fetch_one(pool)
        .await?;
    if revoked_at.is_some() {
        return Ok(IssueOutcome::FamilyRevoked);
    }
    if issued == 1 {
        return Ok(IssueOutcome::Issued);
    }
    // Spent or revoked meanwhile: both only ever go one way, so reading afterwards is exact.
    let Some((hash, _, state_sql)) = spend_sql(spend) else {
        return Ok(IssueOutcome::FamilyRevoked);
    };
    let state: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(state_sql)
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    Ok(spend_failure(state))
}

pub(super) async fn insert_auth_code(
    pool: &sqlx::PgPool,
    c: &AuthCodeRecord,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_CODE_SQL)
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.subject)
        .bind(&c.user_info)
        .bind(join_scopes(&c.scopes)?)
        .bind(&c.code_challenge)
        .bind(&c.family_id)
        .bind(c.auth_time)
        .bind(c.expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn find_auth_code(
    pool: &sqlx::PgPool,
    code_hash: &str,
) -> Result<Found<AuthCodeRecord>, StoreError> {
    let row: CodeState = sqlx::query_as(FIND_CODE_SQL)
        .bind(code_hash)
        .fetch_one(pool)
        .await?;
    Ok(row.into())
}

pub(super) async fn find_refresh_token(
    pool: &sqlx::PgPool,
    token_hash: &str,
) -> Result<Found<RefreshTokenRecord>, StoreError> {
    let row: RefreshState = sqlx::query_as(GET_REFRESH_SQL)
        .bind(token_hash)
        .fetch_one(pool)
        .await?;
    Ok(row.into())
}

pub(super) async fn get_session(
    pool: &sqlx::PgPool,
    id_hash: &str,
) -> Result<SessionRecord, StoreError> {
    Ok(sqlx::query_as(GET_SESSION_SQL)
        .bind(id_hash)
        .fetch_one(pool)
        .await?)
}

/// `NotFound` when an `UPDATE` by key touched nothing.
fn found(rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// See [`crate::store::Store::remember_exchanged_token`].
pub(super) async fn remember_exchanged_token(
    pool: &sqlx::PgPool,
    token_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(crate::store::exchange::REMEMBER_SQL)
        .bind(token_id)
        .bind(expires_at)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}
