//! The SQLite backend's operations off the grant path: projects, revocation, the writes of
//! sessions, the device grant, the purge. Each is a plain function of one connection, run
//! whole by [`super::SqliteStore`] on the store's connections (`conn.rs`); a write that
//! changes more than one row is one `BEGIN IMMEDIATE` transaction, or (the purge) a series of
//! statements each atomic on its own.

use rusqlite::{named_params, Connection, OptionalExtension, Statement, TransactionBehavior};

use crate::store::authz::*;
use crate::store::device::*;
use crate::store::filters::Arg;
use crate::store::{ProjectRecord, ProjectRow, StoreError, GET_SQL};

/// Frees a user code held by an expired device code. Insertion has no caller's `now`, so
/// "expired" is by the database's clock.
const FREE_USER_CODE_SQL: &str = "DELETE FROM device_codes WHERE user_code = $1 \
     AND expires_at <= CAST(strftime('%s', 'now') AS INTEGER)";

/// Binds `args` to `$1`, `$2`, … of `stmt` (a name the statement does not use is skipped).
fn bind(stmt: &mut Statement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    for (i, arg) in args.iter().enumerate() {
        let Some(index) = stmt.parameter_index(&format!("${}", i + 1))? else {
            continue;
        };
        match arg {
            Arg::Text(s) => stmt.raw_bind_parameter(index, s)?,
            Arg::Int(n) => stmt.raw_bind_parameter(index, n)?,
        }
    }
    Ok(())
}

/// Runs `sql` with `args`; the number of rows it changed.
pub(super) fn execute(conn: &Connection, sql: &str, args: &[Arg]) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    Ok(stmt.raw_execute()?)
}

/// `NotFound` when an `UPDATE` by key touched nothing.
fn found(rows: usize) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

// ---- projects --------------------------------------------------------------------------

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        identifier: r.get("identifier")?,
        org: r.get("org")?,
        name: r.get("name")?,
        description: r.get("description")?,
        labels: r.get("labels")?,
        state: r.get("state")?,
    })
}

pub(super) fn get_project(
    conn: &Connection,
    org: &str,
    id: &str,
) -> Result<ProjectRecord, StoreError> {
    conn.prepare_cached(GET_SQL)?
        .query_row(named_params! { "$1": org, "$2": id }, project_row)?
        .try_into()
}

/// The rows of a listing's `sql` (`list_sql`).
pub(super) fn list_projects(
    conn: &Connection,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<ProjectRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(project_row(row)?.try_into()?);
    }
    Ok(out)
}

// ---- authorization server --------------------------------------------------------------

/// See [`crate::store::Store::redeem_auth_code`]; the caller holds the writer queue.
pub(super) fn redeem_auth_code(
    conn: &Connection,
    code_hash: &str,
    now: i64,
) -> Result<CodeRedemption, StoreError> {
    for _ in 0..REDEEM_ATTEMPTS {
        let won = conn
            .prepare_cached(REDEEM_CODE_SQL)?
            .query_row(
                named_params! { "$1": code_hash, "$2": now },
                super::grant::code_record,
            )
            .optional()?;
        if let Some(code) = won {
            return Ok(CodeRedemption::Fresh(code));
        }
        let (code, used_at) = conn.prepare_cached(FIND_CODE_SQL)?.query_row(
            named_params! { "$1": code_hash },
            |r| {
                Ok((
                    super::grant::code_record(r)?,
                    r.get::<_, Option<i64>>("used_at")?,
                ))
            },
        )?;
        if used_at.is_some() {
            return Ok(CodeRedemption::Replayed(code));
        }
    }
    Err(contended())
}

pub(super) fn revoke_family(
    conn: &mut Connection,
    family_id: &str,
    now: i64,
) -> Result<Vec<RevokedToken>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for sql in [
        REVOKE_FAMILY_SQL,
        SPEND_FAMILY_REFRESH_SQL,
        REVOKE_FAMILY_ACCESS_SQL,
    ] {
        tx.prepare_cached(sql)?
            .execute(named_params! { "$1": family_id, "$2": now })?;
    }
    let revoked = tx
        .prepare_cached(FAMILY_REVOKED_SQL)?
        .query_map(named_params! { "$1": family_id, "$2": now }, revoked_token)?
        .collect::<Result<_, _>>()?;
    tx.commit()?;
    Ok(revoked)
}

pub(super) fn revoke_access_token(
    conn: &Connection,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(REVOKE_ACCESS_SQL)?
        .execute(named_params! { "$1": jti, "$2": expires_at, "$3": now })?;
    Ok(())
}

pub(super) fn revoked_tokens_since(
    conn: &Connection,
    since: i64,
    now: i64,
) -> Result<Vec<RevokedToken>, StoreError> {
    Ok(conn
        .prepare_cached(REVOKED_SINCE_SQL)?
        .query_map(named_params! { "$1": since, "$2": now }, revoked_token)?
        .collect::<Result<_, _>>()?)
}

fn revoked_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevokedToken> {
    Ok(RevokedToken {
        jti: r.get("jti")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

// ---- sessions --------------------------------------------------------------------------

pub(super) fn create_session(conn: &Connection, s: &SessionRecord) -> Result<(), StoreError> {
    conn.prepare_cached(INSERT_SESSION_SQL)?
        .execute(named_params! {
            "$1": s.id_hash, "$2": s.subject, "$3": s.user_info, "$4": s.csrf_token,
            "$5": s.created_at, "$6": s.last_seen_at, "$7": s.expires_at,
            "$8": s.idp_refresh_token,
        })?;
    Ok(())
}

pub(super) fn touch_session(conn: &Connection, id_hash: &str, now: i64) -> Result<(), StoreError> {
    found(
        conn.prepare_cached(TOUCH_SESSION_SQL)?
            .execute(named_params! { "$1": id_hash, "$2": now })?,
    )
}

pub(super) fn update_session_idp_refresh_token(
    conn: &Connection,
    id_hash: &str,
    token: Option<&[u8]>,
) -> Result<(), StoreError> {
    found(
        conn.prepare_cached(SESSION_IDP_TOKEN_SQL)?
            .execute(named_params! { "$1": id_hash, "$2": token })?,
    )
}

pub(super) fn delete_session(conn: &Connection, id_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached(DELETE_SESSION_SQL)?
        .execute(named_params! { "$1": id_hash })?;
    Ok(())
}

/// One statement per table, each atomic on its own: a purge holds no lock across tables.
pub(super) fn purge_expired(
    conn: &Connection,
    now: i64,
    session_idle_secs: i64,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for sql in PURGE_SQL {
        removed += conn
            .prepare_cached(sql)?
            .execute(named_params! { "$1": now })?;
    }
    removed += conn
        .prepare_cached(PURGE_SESSIONS_SQL)?
        .execute(named_params! {
            "$1": now, "$2": idle_cutoff(now, session_idle_secs),
        })?;
    removed += conn.prepare_cached(PURGE_FAMILIES_SQL)?.execute([])?;
    Ok(removed as u64)
}

// ---- device authorization grant --------------------------------------------------------

/// A user code still held by an unexpired code is `AlreadyExists` (the unique index).
pub(super) fn insert_device_code(
    conn: &mut Connection,
    r: &DeviceCodeRecord,
) -> Result<(), StoreError> {
    let scopes = join_scopes(&r.scopes)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(FREE_USER_CODE_SQL)?
        .execute(named_params! { "$1": r.user_code })?;
    tx.prepare_cached(INSERT_DEVICE_SQL)?
        .execute(named_params! {
            "$1": r.device_code_hash, "$2": r.user_code, "$3": r.client_id, "$4": scopes,
            "$5": r.interval_secs, "$6": r.expires_at,
        })?;
    tx.commit()?;
    Ok(())
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device_code_hash: r.get("device_code_hash")?,
        user_code: r.get("user_code")?,
        client_id: r.get("client_id")?,
        scopes: r.get("scopes")?,
        interval_secs: r.get("interval_secs")?,
        expires_at: r.get("expires_at")?,
    })
}

pub(super) fn find_device_by_user_code(
    conn: &Connection,
    user_code: &str,
    now: i64,
) -> Result<DeviceCodeRecord, StoreError> {
    Ok(conn
        .prepare_cached(FIND_DEVICE_SQL)?
        .query_row(named_params! { "$1": user_code, "$2": now }, device_row)?
        .into())
}

pub(super) fn decide_device_code(
    conn: &Connection,
    user_code: &str,
    approval: Option<&DeviceApproval>,
    now: i64,
) -> Result<(), StoreError> {
    found(
        conn.prepare_cached(DECIDE_DEVICE_SQL)?
            .execute(named_params! {
                "$1": user_code, "$2": now,
                "$3": approval.map(|a| &a.subject), "$4": approval.map(|a| &a.user_info),
                "$5": approval.map(|a| &a.family_id), "$6": approval.map(|a| a.auth_time),
            })?,
    )
}

/// Under the write lock: read, decide, write, commit.
pub(super) fn poll_device_code(
    conn: &mut Connection,
    device_code_hash: &str,
    now: i64,
) -> Result<DevicePoll, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = tx.prepare_cached(LOCK_DEVICE_SQL)?.query_row(
        named_params! { "$1": device_code_hash },
        |r| {
            Ok(DeviceState {
                code: device_row(r)?,
                last_polled_at: r.get("last_polled_at")?,
                decided_at: r.get("decided_at")?,
                subject: r.get("subject")?,
                user_info: r.get("user_info")?,
                family_id: r.get("family_id")?,
                auth_time: r.get("auth_time")?,
                used_at: r.get("used_at")?,
            })
        },
    )?;
    let poll = device_poll(state, now)?;
    if let Some(sql) = poll_write(&poll) {
        tx.prepare_cached(sql)?
            .execute(named_params! { "$1": device_code_hash, "$2": now })?;
    }
    tx.commit()?;
    Ok(poll)
}

// ---- test seeding ------------------------------------------------------------------------

/// Test seeding: production stores refresh tokens in a grant's transaction.
#[cfg(test)]
pub(crate) fn insert_refresh_token(
    conn: &Connection,
    r: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    conn.prepare_cached(INSERT_REFRESH_SQL)?
        .execute(named_params! {
            "$1": r.token_hash, "$2": r.family_id, "$3": r.client_id, "$4": r.subject,
            "$5": r.user_info, "$6": join_scopes(&r.scopes)?, "$7": r.auth_time,
            "$8": r.expires_at,
        })?;
    Ok(())
}

/// Test seeding (production records access tokens in a grant's transaction), in one
/// transaction with the family's check: a token recorded into a revoked family is listed as
/// revoked at once, stamped with the later of the revocation and the database's clock.
#[cfg(test)]
pub(crate) fn record_access_token(
    conn: &mut Connection,
    family_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    const REVOKE_ACCESS_LATE_SQL: &str = "INSERT INTO revoked_tokens (jti, expires_at, \
         revoked_at) VALUES ($1, $2, MAX($3, CAST(strftime('%s', 'now') AS INTEGER))) \
         ON CONFLICT (jti) DO NOTHING";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let revoked: Option<i64> = tx
        .prepare_cached(LOCK_FAMILY_SQL)?
        .query_row(named_params! { "$1": family_id }, |r| r.get(0))?;
    tx.prepare_cached(INSERT_ACCESS_SQL)?
        .execute(named_params! { "$1": jti, "$2": family_id, "$3": expires_at })?;
    if let Some(revoked_at) = revoked {
        tx.prepare_cached(REVOKE_ACCESS_LATE_SQL)?
            .execute(named_params! { "$1": jti, "$2": expires_at, "$3": revoked_at })?;
    }
    tx.commit()?;
    Ok(())
}
