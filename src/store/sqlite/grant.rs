//! The grant hot path on SQLite (and the read of a browser session): the operations of every
//! code, refresh and token-exchange grant, each one call on the store's connections
//! (`conn.rs`), with no copy of its arguments when it runs on the calling thread.

use std::sync::Arc;

use rusqlite::{named_params, Connection, OptionalExtension, TransactionBehavior};

use super::conn::Connections;
use crate::store::authz::*;
use crate::store::StoreError;

impl Connections {
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
        self.find(FIND_CODE_SQL, code_hash, code_record).await
    }

    pub(super) async fn find_refresh_token(
        self: &Arc<Self>,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError> {
        self.find(GET_REFRESH_SQL, token_hash, refresh_record).await
    }

    /// A browser session by the digest of its cookie (`/authorize`, `/me`, the console's
    /// calls: every request a browser makes).
    pub(super) async fn get_session(
        self: &Arc<Self>,
        id_hash: &str,
    ) -> Result<SessionRecord, StoreError> {
        self.read_row(GET_SESSION_SQL, id_hash, session_record)
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
}

/// A grant's transaction ([`Connections::spend_and_issue`]).
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

/// An `auth_codes` row as [`FIND_CODE_SQL`] and [`REDEEM_CODE_SQL`] select it.
pub(super) fn code_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthCodeRecord> {
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
}

/// A `refresh_tokens` row as [`GET_REFRESH_SQL`] selects it.
fn refresh_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshTokenRecord> {
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
}

/// A `sessions` row as [`GET_SESSION_SQL`] selects it.
fn session_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
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
}
