//! Authorization-server state: codes, refresh-token families, access-token revocations and
//! browser sessions (DESIGN.md §5–§7). The records and the SQL both backends run; the
//! per-backend functions are in `authz_ops`.
//!
//! Single use is enforced by the database: a redemption is one conditional `UPDATE … WHERE
//! used_at IS NULL RETURNING …`, so of any number of concurrent callers on any number of
//! replicas exactly one sees the row come back. The follow-up `SELECT` only tells a replay
//! from an unknown secret.

use super::StoreError;

/// An authorization code, stored by digest (the raw code is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    /// Lowercase hex SHA-256 of the code (primary key).
    pub code_hash: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The `redirect_uri` of the authorization request.
    pub redirect_uri: String,
    /// The user.
    pub subject: String,
    /// The user's claims, JSON text.
    pub user_info: String,
    /// Granted scopes; stored space-joined, so none may be empty or contain whitespace.
    pub scopes: Vec<String>,
    /// PKCE S256 challenge; `""` when none.
    pub code_challenge: String,
    /// The token family the code starts.
    pub family_id: String,
    /// When the user authenticated (unix seconds).
    pub auth_time: i64,
    /// Expiry (unix seconds); checked by the caller.
    pub expires_at: i64,
}

/// Result of presenting an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// It was unused: now marked used.
    Fresh(AuthCodeRecord),
    /// It had been used before (the caller revokes its family).
    Replayed(AuthCodeRecord),
}

/// A refresh token, stored by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Lowercase hex SHA-256 of the token (primary key).
    pub token_hash: String,
    /// The family (one authorization, all its rotations).
    pub family_id: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The user.
    pub subject: String,
    /// The user's claims, JSON text.
    pub user_info: String,
    /// Granted scopes, stored space-joined as for codes.
    pub scopes: Vec<String>,
    /// When the user authenticated (unix seconds).
    pub auth_time: i64,
    /// Expiry (unix seconds); checked by the caller.
    pub expires_at: i64,
}

/// A code or refresh token as stored, read without changing it: a grant validates the request
/// against it before [`Spend`]ing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    /// The stored record.
    pub record: T,
    /// It was presented (spent) before.
    pub used: bool,
    /// When it was first presented (a refresh token's grace period, §14).
    pub used_at: Option<i64>,
    /// Its family was revoked.
    pub family_revoked: bool,
}

/// What a grant spends in the transaction that stores its tokens: the code or refresh token
/// (by digest) it was made with, or nothing (a device code, spent by `poll_device_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// An authorization code's hash.
    AuthCode(String),
    /// A refresh token's hash.
    RefreshToken(String),
    /// Nothing left to spend.
    Nothing,
}

/// What a grant stores about the tokens it issues into a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The family the tokens belong to (that of the spent code or refresh token).
    pub family_id: String,
    /// The access token's `jti`, recorded so that revoking the family revokes it.
    pub jti: String,
    /// When the access token is dead, leeway included (the record is purged after it).
    pub jti_expires_at: i64,
    /// The new refresh token, if one is issued.
    pub refresh: Option<RefreshTokenRecord>,
}

/// Result of [`Spend`]ing and storing an [`Issuance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Spent and stored, in one transaction.
    Issued,
    /// The code or token was spent meanwhile (a concurrent request won): nothing stored.
    AlreadyUsed,
    /// The family was revoked meanwhile: nothing stored.
    FamilyRevoked,
}

/// A browser session, stored by the digest of its cookie value. `Debug` leaves out the CSRF
/// token and the (encrypted) IdP refresh token.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    /// Lowercase hex SHA-256 of the cookie value (primary key).
    pub id_hash: String,
    /// The user.
    pub subject: String,
    /// The user's claims, JSON text.
    pub user_info: String,
    /// The double-submit CSRF token bound to this session.
    pub csrf_token: String,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Last use (unix seconds), for the idle expiry.
    pub last_seen_at: i64,
    /// Absolute expiry (unix seconds).
    pub expires_at: i64,
    /// The IdP's refresh token, encrypted by the caller.
    pub idp_refresh_token: Option<Vec<u8>>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id_hash", &self.id_hash)
            .field("subject", &self.subject)
            .field("user_info", &self.user_info)
            .field("csrf_token", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .field(
                "idp_refresh_token",
                &self.idp_refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A revoked access token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: String,
    /// The token's expiry (unix seconds); the row is purged after it.
    pub expires_at: i64,
    /// When it was revoked (unix seconds).
    pub revoked_at: i64,
}

// ---- SQL shared by both backends -------------------------------------------------------

pub(super) const INSERT_CODE_SQL: &str = "INSERT INTO auth_codes (code_hash, client_id, \
     redirect_uri, subject, user_info, scopes, code_challenge, family_id, auth_time, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The atomic step of a code redemption: returns the row to exactly one caller.
pub(super) const REDEEM_CODE_SQL: &str = "UPDATE auth_codes SET used_at = $2 \
     WHERE code_hash = $1 AND used_at IS NULL \
     RETURNING code_hash, client_id, redirect_uri, subject, user_info, \
     scopes, code_challenge, family_id, auth_time, expires_at";

/// A code, whether it was used and whether its family was revoked, changing nothing.
pub(super) const FIND_CODE_SQL: &str = "SELECT c.code_hash, c.client_id, c.redirect_uri, \
     c.subject, c.user_info, c.scopes, c.code_challenge, c.family_id, c.auth_time, \
     c.expires_at, c.used_at, f.revoked_at \
     FROM auth_codes c LEFT JOIN token_families f ON f.family_id = c.family_id \
     WHERE c.code_hash = $1";

/// The spending step of a code grant: succeeds (one row) for exactly one caller, and only
/// while the code's family (`$3`) is alive.
pub(super) const SPEND_CODE_SQL: &str = "UPDATE auth_codes SET used_at = $2 \
     WHERE code_hash = $1 AND family_id = $3 AND used_at IS NULL AND NOT EXISTS (SELECT 1 \
     FROM token_families f WHERE f.family_id = $3 AND f.revoked_at IS NOT NULL)";

/// As [`SPEND_CODE_SQL`], for a refresh token.
pub(super) const SPEND_REFRESH_SQL: &str = "UPDATE refresh_tokens SET used_at = $2 \
     WHERE token_hash = $1 AND family_id = $3 AND used_at IS NULL AND NOT EXISTS (SELECT 1 \
     FROM token_families f WHERE f.family_id = $3 AND f.revoked_at IS NOT NULL)";

pub(super) const INSERT_REFRESH_SQL: &str = "INSERT INTO refresh_tokens (token_hash, family_id, \
     client_id, subject, user_info, scopes, auth_time, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const GET_REFRESH_SQL: &str = "SELECT t.token_hash, t.family_id, t.client_id, \
     t.subject, t.user_info, t.scopes, t.auth_time, t.expires_at, t.used_at, f.revoked_at \
     FROM refresh_tokens t LEFT JOIN token_families f ON f.family_id = t.family_id \
     WHERE t.token_hash = $1";

/// Creates the family row if missing and locks it until the transaction ends; returns its
/// `revoked_at`. (`DO UPDATE`, not `DO NOTHING`: PostgreSQL locks only rows it updates.)
pub(super) const LOCK_FAMILY_SQL: &str = "INSERT INTO token_families (family_id) VALUES ($1) \
     ON CONFLICT (family_id) DO UPDATE SET revoked_at = token_families.revoked_at \
     RETURNING revoked_at";

pub(super) const INSERT_ACCESS_SQL: &str = "INSERT INTO access_tokens (jti, family_id, \
     expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING";

/// Marks the family revoked (keeping the first revocation time), locking its row.
pub(super) const REVOKE_FAMILY_SQL: &str = "INSERT INTO token_families (family_id, revoked_at) \
     VALUES ($1, $2) ON CONFLICT (family_id) \
     DO UPDATE SET revoked_at = COALESCE(token_families.revoked_at, excluded.revoked_at)";

pub(super) const SPEND_FAMILY_REFRESH_SQL: &str =
    "UPDATE refresh_tokens SET used_at = $2 WHERE family_id = $1 AND used_at IS NULL";

pub(super) const REVOKE_FAMILY_ACCESS_SQL: &str = "INSERT INTO revoked_tokens (jti, expires_at, \
     revoked_at) SELECT jti, expires_at, $2 FROM access_tokens \
     WHERE family_id = $1 AND expires_at > $2 ON CONFLICT (jti) DO NOTHING";

pub(super) const FAMILY_REVOKED_SQL: &str = "SELECT r.jti, r.expires_at, r.revoked_at \
     FROM access_tokens a JOIN revoked_tokens r ON r.jti = a.jti \
     WHERE a.family_id = $1 AND a.expires_at > $2 ORDER BY r.jti";

/// Lists one access token as revoked; an earlier revocation (and its time) is kept.
pub(super) const REVOKE_ACCESS_SQL: &str = "INSERT INTO revoked_tokens (jti, expires_at, \
     revoked_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING";

pub(super) const REVOKED_SINCE_SQL: &str = "SELECT jti, expires_at, revoked_at \
     FROM revoked_tokens WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at, jti";

pub(super) const INSERT_SESSION_SQL: &str = "INSERT INTO sessions (id_hash, subject, user_info, \
     csrf_token, created_at, last_seen_at, expires_at, idp_refresh_token) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const GET_SESSION_SQL: &str = "SELECT id_hash, subject, user_info, csrf_token, \
     created_at, last_seen_at, expires_at, idp_refresh_token FROM sessions WHERE id_hash = $1";

/// Never moves `last_seen_at` back (replicas' clocks differ a little).
pub(super) const TOUCH_SESSION_SQL: &str = "UPDATE sessions SET last_seen_at = \
     CASE WHEN last_seen_at < $2 THEN $2 ELSE last_seen_at END WHERE id_hash = $1";

pub(super) const SESSION_IDP_TOKEN_SQL: &str =
    "UPDATE sessions SET idp_refresh_token = $2 WHERE id_hash = $1";

pub(super) const DELETE_SESSION_SQL: &str = "DELETE FROM sessions WHERE id_hash = $1";

/// Run in order by `purge_expired`, each binding `$1` = now.
pub(super) const PURGE_SQL: [&str; 6] = [
    "DELETE FROM auth_codes WHERE expires_at <= $1",
    "DELETE FROM device_codes WHERE expires_at <= $1",
    "DELETE FROM refresh_tokens WHERE expires_at <= $1",
    "DELETE FROM access_tokens WHERE expires_at <= $1",
    "DELETE FROM revoked_tokens WHERE expires_at <= $1",
    "DELETE FROM exchanged_tokens WHERE expires_at <= $1",
];

/// `$1` = now, `$2` = the oldest `last_seen_at` still within the idle limit.
pub(super) const PURGE_SESSIONS_SQL: &str =
    "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2";

/// Last: families nothing refers to any more.
pub(super) const PURGE_FAMILIES_SQL: &str = "DELETE FROM token_families WHERE \
     NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.family_id = token_families.family_id) AND \
     NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = token_families.family_id) \
     AND NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.family_id = token_families.family_id) \
     AND NOT EXISTS (SELECT 1 FROM device_codes d WHERE d.family_id = token_families.family_id)";

/// `$2` of the session purge: sessions last seen before it are idle. `idle_secs <= 0`
/// disables the idle limit.
pub(super) fn idle_cutoff(now: i64, idle_secs: i64) -> i64 {
    if idle_secs <= 0 {
        i64::MIN
    } else {
        now.saturating_sub(idle_secs)
    }
}

// ---- rows ------------------------------------------------------------------------------

/// Joins scopes for storage; `Invalid` if one would not survive the round trip.
pub(super) fn join_scopes(scopes: &[String]) -> Result<String, StoreError> {
    if scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(StoreError::Invalid(
            "a scope is empty or contains whitespace".into(),
        ));
    }
    Ok(scopes.join(" "))
}

pub(super) fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// An `auth_codes` row as returned by [`REDEEM_CODE_SQL`] / [`FIND_CODE_SQL`].
#[derive(sqlx::FromRow)]
pub(super) struct CodeRow {
    code_hash: String,
    client_id: String,
    redirect_uri: String,
    subject: String,
    user_info: String,
    scopes: String,
    code_challenge: String,
    family_id: String,
    auth_time: i64,
    expires_at: i64,
}

impl From<CodeRow> for AuthCodeRecord {
    fn from(r: CodeRow) -> Self {
        AuthCodeRecord {
            scopes: split_scopes(&r.scopes),
            code_hash: r.code_hash,
            client_id: r.client_id,
            redirect_uri: r.redirect_uri,
            subject: r.subject,
            user_info: r.user_info,
            code_challenge: r.code_challenge,
            family_id: r.family_id,
            auth_time: r.auth_time,
            expires_at: r.expires_at,
        }
    }
}

impl From<CodeState> for Found<AuthCodeRecord> {
    fn from(r: CodeState) -> Self {
        Found {
            used: r.used_at.is_some(),
            used_at: r.used_at,
            family_revoked: r.revoked_at.is_some(),
            record: r.code.into(),
        }
    }
}

impl From<RefreshState> for Found<RefreshTokenRecord> {
    fn from(r: RefreshState) -> Self {
        Found {
            used: r.used_at.is_some(),
            used_at: r.used_at,
            family_revoked: r.revoked_at.is_some(),
            record: r.token.into(),
        }
    }
}

/// Why a spending `UPDATE` touched nothing, from the row read afterwards in the same
/// transaction: a revoked family wins over a used token; a row gone (purged) counts as used.
pub(super) fn spend_failure(found: Option<(Option<i64>, Option<i64>)>) -> IssueOutcome {
    match found {
        Some((_, Some(_revoked_at))) => IssueOutcome::FamilyRevoked,
        _ => IssueOutcome::AlreadyUsed,
    }
}

/// The refresh token of an issuance with its scopes joined for storage; `Invalid` before
/// anything is written if it is of another family or its scope cannot be stored.
pub(super) fn refresh_row(
    issuance: &Issuance,
) -> Result<Option<(&RefreshTokenRecord, String)>, StoreError> {
    match &issuance.refresh {
        Some(r) if r.family_id != issuance.family_id => Err(StoreError::Invalid(
            "a refresh token must join the issuance's family".into(),
        )),
        Some(r) => Ok(Some((r, join_scopes(&r.scopes)?))),
        None => Ok(None),
    }
}

/// The spending statement and the follow-up state query of a spend (`None`: nothing to spend).
pub(super) fn spend_sql(spend: &Spend) -> Option<(&str, &'static str, &'static str)> {
    match spend {
        Spend::AuthCode(hash) => Some((hash, SPEND_CODE_SQL, CODE_SPENT_STATE_SQL)),
        Spend::RefreshToken(hash) => Some((hash, SPEND_REFRESH_SQL, REFRESH_SPENT_STATE_SQL)),
        Spend::Nothing => None,
    }
}

/// `(used_at, family revoked_at)` of a code, for [`spend_failure`].
pub(super) const CODE_SPENT_STATE_SQL: &str = "SELECT c.used_at, f.revoked_at FROM auth_codes c \
     LEFT JOIN token_families f ON f.family_id = c.family_id WHERE c.code_hash = $1";

/// As [`CODE_SPENT_STATE_SQL`], for a refresh token.
pub(super) const REFRESH_SPENT_STATE_SQL: &str = "SELECT t.used_at, f.revoked_at \
     FROM refresh_tokens t LEFT JOIN token_families f ON f.family_id = t.family_id \
     WHERE t.token_hash = $1";

/// [`FIND_CODE_SQL`]'s row: the code, whether it was used, whether its family is revoked.
#[derive(sqlx::FromRow)]
pub(super) struct CodeState {
    #[sqlx(flatten)]
    pub(super) code: CodeRow,
    pub(super) used_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
}

/// A `refresh_tokens` row as selected by [`GET_REFRESH_SQL`].
#[derive(sqlx::FromRow)]
pub(super) struct RefreshRow {
    token_hash: String,
    family_id: String,
    client_id: String,
    subject: String,
    user_info: String,
    scopes: String,
    auth_time: i64,
    expires_at: i64,
}

impl From<RefreshRow> for RefreshTokenRecord {
    fn from(r: RefreshRow) -> Self {
        RefreshTokenRecord {
            scopes: split_scopes(&r.scopes),
            token_hash: r.token_hash,
            family_id: r.family_id,
            client_id: r.client_id,
            subject: r.subject,
            user_info: r.user_info,
            auth_time: r.auth_time,
            expires_at: r.expires_at,
        }
    }
}

/// [`GET_REFRESH_SQL`]'s row: the token, whether it was used, whether its family is revoked.
#[derive(sqlx::FromRow)]
pub(super) struct RefreshState {
    #[sqlx(flatten)]
    pub(super) token: RefreshRow,
    pub(super) used_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
}

/// What a failed redemption `UPDATE` means, from the follow-up `SELECT`; `None` when the row
/// is unused after all (inserted after the `UPDATE` looked): the caller tries again.
pub(super) fn code_outcome(state: CodeState) -> Option<CodeRedemption> {
    state
        .used_at
        .map(|_| CodeRedemption::Replayed(state.code.into()))
}

/// Attempts at a redemption before giving up (a retry is only needed in a race with the
/// row's own insertion).
pub(super) const REDEEM_ATTEMPTS: usize = 3;

/// The error when every attempt found the row unused yet could not claim it.
pub(super) fn contended() -> StoreError {
    StoreError::Unavailable("redemption kept racing; try again".into())
}
