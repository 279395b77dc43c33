//! Persistent state behind one trait; SQLite (embedded default) and PostgreSQL (replicas) backends.
//!
//! Both backends run the same SQL (SQLite accepts PostgreSQL's `$n` placeholders, here as
//! named parameters); only the connection setup, a few statements that read the database's
//! clock and the substring function behind `contains` differ. Migrations are embedded from
//! `migrations/{sqlite,postgres}` and applied by [`open`]: PostgreSQL's by sqlx (replicas
//! starting together serialise on its advisory lock), SQLite's by `sqlite/migrate.rs`, which
//! keeps sqlx's `_sqlx_migrations` history.
//!
//! One driver per backend: PostgreSQL through sqlx's pool (`postgres/`), SQLite through plain
//! SQLite connections (rusqlite, `sqlite/`). Every operation runs under one deadline
//! ([`deadline`], [`QUERY_TIMEOUT`]): a database that stops answering yields `Unavailable`.
//! Each backend decides for itself how an operation is kept whole when its caller goes away:
//! operations through sqlx run in a task of their own (`detached`); SQLite's run whole on the
//! calling thread or on a blocking thread.
//!
//! A grant's path: the `recent` cache (`authz_server`) → the [`Store`] trait (here) →
//! `sqlite/mod.rs` → `sqlite/grant.rs` (SQL in `authz.rs`), or `postgres/mod.rs` →
//! `postgres/ops.rs`.

mod authz;
mod device;
mod exchange;
pub(crate) mod filters;
mod postgres;
mod sqlite;

pub(crate) use authz::{
    AuthCodeRecord, CodeRedemption, Found, Issuance, IssueOutcome, RefreshTokenRecord,
    RevokedToken, SessionRecord, Spend,
};
pub(crate) use device::{DeviceApproval, DeviceCodeRecord, DevicePoll};
pub(crate) use filters::{parse_filters, Filter};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use filters::{Arg, Dialect};

/// Why a store operation failed. Messages never contain SQL parameter values.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A row with the same key exists.
    #[error("already exists")]
    AlreadyExists,
    /// The caller sent a bad filter, sort key or page token.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached right now (refused, pool timeout, io, busy); retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::RowNotFound => StoreError::NotFound,
            E::Io(_) | E::Tls(_) => {
                postgres::connection_failed();
                StoreError::Unavailable(e.to_string())
            }
            E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
            E::Database(db) if is_transient(db.as_ref()) => {
                postgres::connection_failed();
                StoreError::Unavailable(db.to_string())
            }
            // Database messages are the server's primary message (never PostgreSQL's DETAIL,
            // which is where key values appear); every value is bound, never in the SQL text.
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// Errors worth retrying (sqlx serves only PostgreSQL): connection exceptions (08),
/// insufficient resources (53), operator intervention such as a shutdown (57P), the database
/// gone (renamed or dropped under us: 3D000) and authorization failures (28).
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    ["08", "53", "57P", "3D000", "28"]
        .iter()
        .any(|p| code.starts_with(p))
}

/// How long one store operation may take.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The deadline of a store operation: a database that stops answering (a partition, a silent
/// connection) yields `Unavailable` after `limit` instead of hanging the caller. Every
/// backend runs each operation under it ([`QUERY_TIMEOUT`]).
pub(crate) async fn deadline<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer from the database within {}s",
            limit.as_secs()
        )))
    })
}

/// Runs `op` in a task of its own, under [`deadline`]: a caller that goes away (a client that
/// disconnects, the deadline) never cancels it half-way, and it still finishes (or fails) on
/// its own. sqlx is not cancellation-safe while it opens a transaction: a future dropped right
/// after `BEGIN` was sent returns its connection to the pool *inside* the transaction (an
/// "idle in transaction" connection whose writes no one else sees; on SQLite, when it still
/// ran on sqlx, the write lock held and every later `begin` refused). Found by `make bench`,
/// whose load generator drops in-flight requests at the end of every run. So every operation
/// through sqlx runs detached; SQLite's (rusqlite, whole on the calling thread or on a
/// blocking thread) need no task of their own.
async fn detached<T: Send + 'static>(
    op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let task = tokio::spawn(op);
    deadline(QUERY_TIMEOUT, async {
        task.await
            .unwrap_or_else(|_| Err(StoreError::Internal("a store operation panicked".into())))
    })
    .await
}

/// A project as stored; `(org, id)` is the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    /// Project identifier (DNS-1123 label, validated by the caller).
    pub id: String,
    /// Organisation; `""` is the default org.
    pub org: String,
    /// Display name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Labels, stored as JSON text.
    pub labels: BTreeMap<String, String>,
    /// flyteidl `Project.ProjectState` enum value.
    pub state: i32,
}

/// Column a project listing is ordered by; ties are broken by identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// `identifier` (Flyte's default).
    Identifier,
    /// `name`.
    Name,
    /// `created_at`.
    CreatedAt,
}

impl std::str::FromStr for SortKey {
    type Err = StoreError;

    /// Parses a `Sort.key` from a `ProjectListRequest`.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "identifier" | "id" => Ok(SortKey::Identifier),
            "name" => Ok(SortKey::Name),
            "created_at" => Ok(SortKey::CreatedAt),
            _ => Err(StoreError::Invalid("unknown sort key".into())),
        }
    }
}

/// One page of a project listing.
#[derive(Debug, Clone)]
pub struct ProjectQuery {
    /// Exact match on org (`""` = default org).
    pub org: String,
    /// All must match.
    pub filters: Vec<Filter>,
    /// Order column.
    pub sort_key: SortKey,
    /// Order direction.
    pub ascending: bool,
    /// Page size; the caller guarantees `1..=1000`.
    pub limit: u32,
    /// Rows to skip (the decimal page token).
    pub offset: u64,
}

/// Persistent state shared by every replica.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a project; `AlreadyExists` if `(org, id)` exists. Sets `created_at`.
    async fn create_project(&self, p: &ProjectRecord) -> Result<(), StoreError>;
    /// Replaces name, description, labels and state; `NotFound` if missing.
    async fn update_project(&self, p: &ProjectRecord) -> Result<(), StoreError>;
    /// Loads one project; `NotFound` if missing.
    async fn get_project(&self, org: &str, id: &str) -> Result<ProjectRecord, StoreError>;
    /// One page of the org's projects matching the filters, in a stable order.
    async fn list_projects(&self, q: &ProjectQuery) -> Result<Vec<ProjectRecord>, StoreError>;

    // ---- authorization server (see `authz`); times are unix seconds -------------------

    /// Inserts a code; `AlreadyExists` if its hash exists, `Invalid` for an unstorable scope.
    async fn insert_auth_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError>;
    /// Atomically marks the code used at `now` and returns it (`Fresh`), or `Replayed` when
    /// it was already used. `NotFound` if unknown. Expiry is the caller's check.
    async fn redeem_auth_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<CodeRedemption, StoreError>;
    /// A code as stored, changing nothing; `NotFound` if unknown.
    async fn find_auth_code(&self, code_hash: &str) -> Result<Found<AuthCodeRecord>, StoreError>;
    /// A refresh token as stored, changing nothing; `NotFound` if unknown.
    async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Found<RefreshTokenRecord>, StoreError>;
    /// A grant's writes, in one transaction: marks `spend` used at `now` (exactly one
    /// concurrent caller succeeds, and only while the family is alive), then records the
    /// access token's jti in `issuance.family_id` and stores the new refresh token. Nothing is
    /// written unless the outcome is `Issued`. `Invalid` if the refresh token is of another
    /// family or has an unstorable scope.
    async fn spend_and_issue(
        &self,
        spend: &Spend,
        now: i64,
        issuance: &Issuance,
    ) -> Result<IssueOutcome, StoreError>;
    /// Revokes a family: marks it revoked, marks all its refresh tokens unusable, and moves
    /// the jtis of its recorded (unexpired) access tokens into the revoked-token list with
    /// `revoked_at = now`. Returns those jtis (by jti). Idempotent: a repeat returns the same
    /// jtis with their first `revoked_at`.
    async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError>;
    /// Revokes a single access token by jti (RFC 7009). Idempotent; the first `revoked_at`
    /// is kept.
    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Revoked tokens with `revoked_at >= since` (for replicas to poll), unexpired at `now`
    /// (`expires_at > now`), ordered by `revoked_at`, then jti.
    async fn revoked_tokens_since(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<RevokedToken>, StoreError>;
    /// Inserts a session; `AlreadyExists` if its hash exists.
    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// Loads a session (expired or not: the caller checks); `NotFound` if missing.
    async fn get_session(&self, id_hash: &str) -> Result<SessionRecord, StoreError>;
    /// Sets `last_seen_at = now` (never backwards); `NotFound` if missing.
    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError>;
    /// Replaces (or clears) the encrypted IdP refresh token; `NotFound` if missing.
    async fn update_session_idp_refresh_token(
        &self,
        id_hash: &str,
        token: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// Deletes a session. Idempotent.
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Deletes codes, device codes, refresh tokens, recorded and revoked access tokens and
    /// exchanged tokens with `expires_at <= now`, sessions past their absolute expiry or idle
    /// (`last_seen_at + session_idle_secs < now`; no idle limit if `session_idle_secs <= 0`),
    /// then families nothing refers to. Returns the number of rows removed.
    async fn purge_expired(&self, now: i64, session_idle_secs: i64) -> Result<u64, StoreError>;

    // ---- token exchange and JWT bearer grants (see `exchange`) ------------------------

    /// Remembers an exchanged token by `token_id` (a digest) until `expires_at`: `true` the
    /// first time, `false` while it is remembered (a replay). A row whose `expires_at <= now`
    /// is taken over. Exactly one concurrent caller gets `true`.
    async fn remember_exchanged_token(
        &self,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    // ---- failure counters shared by replicas (DESIGN.md §14; see `ratelimit`) ----------

    /// Counts one attempt for the failure-limit key with digest `key_hash` in a window of
    /// `window_secs` (a new window when the last one ended by `now`), in one statement.
    /// Returns `(window_start, attempts)` after counting; `Ok(None)` when this store does not
    /// share counters (the caller counts in memory; SQLite, one replica).
    async fn count_attempt(
        &self,
        _key_hash: &str,
        _now: i64,
        _window_secs: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(None)
    }
    /// Gives back one counted attempt (`clear: false`) or forgets the key (`clear: true`).
    async fn uncount_attempt(&self, _key_hash: &str, _clear: bool) -> Result<(), StoreError> {
        Ok(())
    }

    // ---- device authorization grant (RFC 8628; see `device`) --------------------------

    /// Inserts a device code; `Invalid` for an unstorable scope, `AlreadyExists` if its hash
    /// exists or its user code is held by a code not yet expired by the database's clock (an
    /// expired holder is deleted).
    async fn insert_device_code(&self, r: &DeviceCodeRecord) -> Result<(), StoreError>;
    /// The pending code with this user code, unexpired at `now`; `NotFound` if unknown,
    /// expired or already decided.
    async fn find_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<DeviceCodeRecord, StoreError>;
    /// Approve (Some) or deny (None) a pending, unexpired code by its user code. NotFound if
    /// not pending. Of two racing decisions exactly one applies.
    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A token request with the device code at `now`, atomically: records the poll time,
    /// grows the interval on `SlowDown`, takes an approval (exactly one concurrent caller
    /// gets `Approved`). `NotFound` if unknown.
    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError>;

    /// `SELECT 1`, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, waiting for checked-out connections to come back.
    async fn close(&self);
}

/// Where the data lives (defined with the configuration that names it).
pub(crate) use crate::config::DatabaseTarget;

/// Opens the database, applies the embedded migrations (`migrations/sqlite` or
/// `migrations/postgres`), returns the store. `acquire_timeout` is how long PostgreSQL's pool
/// waits for a free connection (SQLite's reads and writes queue under [`QUERY_TIMEOUT`]);
/// `max_lifetime` (Flyte's `database.connMaxLifeTime`) closes a PostgreSQL connection once it
/// is that old.
pub(crate) async fn open(
    target: &DatabaseTarget,
    max_connections: u32,
    acquire_timeout: Duration,
    max_lifetime: Option<Duration>,
) -> Result<Arc<dyn Store>, StoreError> {
    if max_connections == 0 {
        return Err(StoreError::Invalid(
            "max_connections must be at least 1".into(),
        ));
    }
    Ok(match target {
        DatabaseTarget::Sqlite { path } => {
            Arc::new(sqlite::SqliteStore::open(path, max_connections).await?)
        }
        DatabaseTarget::Postgres { url } => Arc::new(
            postgres::PgStore::open(url, max_connections, acquire_timeout, max_lifetime).await?,
        ),
    })
}

// ---- SQL shared by both backends -------------------------------------------------------

const COLUMNS: &str = "identifier, org, name, description, labels, state";

/// `created_at` is filled in by the column default (the database's clock, one for all replicas).
const INSERT_SQL: &str =
    "INSERT INTO projects (identifier, org, name, description, labels, state) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const UPDATE_SQL: &str =
    "UPDATE projects SET name = $3, description = $4, labels = $5, state = $6 \
     WHERE identifier = $1 AND org = $2";

const GET_SQL: &str = "SELECT identifier, org, name, description, labels, state \
     FROM projects WHERE org = $1 AND identifier = $2";

/// A `projects` row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct ProjectRow {
    identifier: String,
    org: String,
    name: String,
    description: String,
    labels: String,
    state: i32,
}

impl TryFrom<ProjectRow> for ProjectRecord {
    type Error = StoreError;

    fn try_from(r: ProjectRow) -> Result<Self, StoreError> {
        let labels = serde_json::from_str(&r.labels)
            .map_err(|_| StoreError::Internal("stored project labels are not a JSON map".into()))?;
        Ok(ProjectRecord {
            id: r.identifier,
            org: r.org,
            name: r.name,
            description: r.description,
            labels,
            state: r.state,
        })
    }
}

/// The parameters of [`INSERT_SQL`] and [`UPDATE_SQL`], in order.
fn record_args(p: &ProjectRecord) -> Result<Vec<Arg>, StoreError> {
    let labels = serde_json::to_string(&p.labels)
        .map_err(|e| StoreError::Internal(format!("encoding labels: {e}")))?;
    Ok(vec![
        Arg::Text(p.id.clone()),
        Arg::Text(p.org.clone()),
        Arg::Text(p.name.clone()),
        Arg::Text(p.description.clone()),
        Arg::Text(labels),
        Arg::Int(i64::from(p.state)),
    ])
}

/// The SELECT for one page of [`ProjectQuery`], and its parameters.
fn list_sql(q: &ProjectQuery, dialect: Dialect) -> Result<(String, Vec<Arg>), StoreError> {
    let offset =
        i64::try_from(q.offset).map_err(|_| StoreError::Invalid("offset too large".into()))?;
    let mut sql = format!("SELECT {COLUMNS} FROM projects WHERE org = $1");
    let mut args = vec![Arg::Text(q.org.clone())];
    filters::push_where(&mut sql, &mut args, &q.filters, dialect);
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let order = match q.sort_key {
        SortKey::Identifier => format!("identifier {dir}"),
        SortKey::Name => format!("name {dir}, identifier ASC"),
        SortKey::CreatedAt => format!("created_at {dir}, identifier ASC"),
    };
    args.push(Arg::Int(i64::from(q.limit)));
    args.push(Arg::Int(offset));
    let n = args.len();
    sql.push_str(&format!(" ORDER BY {order} LIMIT ${} OFFSET ${n}", n - 1));
    Ok((sql, args))
}

/// Turns `args` into a parameter list for `sqlx::query_with` (PostgreSQL).
fn arguments<'q, DB>(args: Vec<Arg>) -> Result<DB::Arguments<'q>, StoreError>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    use sqlx::Arguments as _;
    let mut out = DB::Arguments::default();
    for a in args {
        match a {
            Arg::Text(s) => out.add(s),
            Arg::Int(i) => out.add(i),
        }
        .map_err(|e| StoreError::Internal(format!("encoding a parameter: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod cancel_tests;
#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod exchange_tests;
#[cfg(test)]
mod grant_tests;
#[cfg(test)]
mod tests;
