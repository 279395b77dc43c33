//! Device authorization grant state (RFC 8628, DESIGN.md §5): the records and the SQL both
//! backends run; the per-backend functions are in `authz_ops`.
//!
//! A poll is one transaction that first locks the code's row (a no-op `UPDATE … RETURNING`:
//! PostgreSQL locks the row and hands back its latest committed version; SQLite's
//! `BEGIN IMMEDIATE` already holds the write lock), decides in [`device_poll`] and writes the
//! outcome. So of any number of concurrent pollers on any number of replicas exactly one
//! takes an approval, and two polls never both see the same previous poll time.

use super::authz::split_scopes;
use super::StoreError;

/// A device authorization request (RFC 8628 §3.1–§3.2), stored by the device code's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCodeRecord {
    /// Lowercase hex SHA-256 of the device code (primary key).
    pub device_code_hash: String,
    /// The user code, normalised by the caller (upper case, no dash); unique among
    /// unexpired codes.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// Requested scopes, stored space-joined as for authorization codes.
    pub scopes: Vec<String>,
    /// Minimum seconds between polls; grows by 5 on every `slow_down`.
    pub interval_secs: i64,
    /// Expiry (unix seconds); expired from `now >= expires_at`.
    pub expires_at: i64,
}

/// The user's approval of a device code: who, and the token family the grant starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceApproval {
    /// The user.
    pub subject: String,
    /// The user's claims, JSON text.
    pub user_info: String,
    /// The token family the tokens will belong to.
    pub family_id: String,
    /// When the user authenticated (unix seconds).
    pub auth_time: i64,
}

/// Result of a token request with a device code (RFC 8628 §3.4–§3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// Not decided yet (`authorization_pending`); the poll time is recorded.
    Pending,
    /// Polled sooner than `interval_secs` after the previous poll (`slow_down`); the stored
    /// interval has grown by 5 s. The first poll never is.
    SlowDown,
    /// Approved, and now taken: exactly one poller ever gets this.
    Approved(DeviceCodeRecord, DeviceApproval),
    /// The user denied it (`access_denied`).
    Denied,
    /// `now >= expires_at` (`expired_token`), whatever else happened.
    Expired,
    /// Approved and already taken by an earlier poll.
    AlreadyUsed,
}

// ---- SQL shared by both backends -------------------------------------------------------

pub(super) const INSERT_DEVICE_SQL: &str = "INSERT INTO device_codes (device_code_hash, \
     user_code, client_id, scopes, interval_secs, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Only a pending, unexpired code is found by its user code (`$2` = now).
pub(super) const FIND_DEVICE_SQL: &str = "SELECT device_code_hash, user_code, client_id, \
     scopes, interval_secs, expires_at FROM device_codes \
     WHERE user_code = $1 AND decided_at IS NULL AND expires_at > $2";

/// Approves (`$3`… set) or denies (`$3`… NULL) a pending, unexpired code; one statement, so
/// of two racing decisions exactly one applies.
pub(super) const DECIDE_DEVICE_SQL: &str = "UPDATE device_codes SET decided_at = $2, \
     subject = $3, user_info = $4, family_id = $5, auth_time = $6 \
     WHERE user_code = $1 AND decided_at IS NULL AND expires_at > $2";

/// Locks the row for the rest of the poll's transaction and returns it.
pub(super) const LOCK_DEVICE_SQL: &str = "UPDATE device_codes \
     SET last_polled_at = last_polled_at WHERE device_code_hash = $1 \
     RETURNING device_code_hash, user_code, client_id, scopes, interval_secs, expires_at, \
     last_polled_at, decided_at, subject, user_info, family_id, auth_time, used_at";

// The writes after a poll's decision ([`poll_write`]), each binding `$1` = the hash and
// `$2` = now.

/// authorization_pending: remember this poll.
pub(super) const PENDING_SQL: &str =
    "UPDATE device_codes SET last_polled_at = $2 WHERE device_code_hash = $1";

/// slow_down: remember this poll too; "the interval MUST be increased by 5 seconds for
/// this and all subsequent requests" (RFC 8628 §3.5).
pub(super) const SLOW_DOWN_SQL: &str = "UPDATE device_codes \
     SET last_polled_at = $2, interval_secs = interval_secs + 5 WHERE device_code_hash = $1";

/// Approved: taken by this poll.
pub(super) const TAKE_DEVICE_SQL: &str =
    "UPDATE device_codes SET used_at = $2 WHERE device_code_hash = $1";

/// What a poll writes once [`device_poll`] has decided.
pub(super) fn poll_write(poll: &DevicePoll) -> Option<&'static str> {
    match poll {
        DevicePoll::Pending => Some(PENDING_SQL),
        DevicePoll::SlowDown => Some(SLOW_DOWN_SQL),
        DevicePoll::Approved(..) => Some(TAKE_DEVICE_SQL),
        DevicePoll::Denied | DevicePoll::Expired | DevicePoll::AlreadyUsed => None,
    }
}

// ---- rows ------------------------------------------------------------------------------

/// A `device_codes` row as selected by [`FIND_DEVICE_SQL`].
#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    pub(super) device_code_hash: String,
    pub(super) user_code: String,
    pub(super) client_id: String,
    pub(super) scopes: String,
    pub(super) interval_secs: i64,
    pub(super) expires_at: i64,
}

impl From<DeviceRow> for DeviceCodeRecord {
    fn from(r: DeviceRow) -> Self {
        DeviceCodeRecord {
            scopes: split_scopes(&r.scopes),
            device_code_hash: r.device_code_hash,
            user_code: r.user_code,
            client_id: r.client_id,
            interval_secs: r.interval_secs,
            expires_at: r.expires_at,
        }
    }
}

/// [`LOCK_DEVICE_SQL`]'s row: the code and where it stands.
#[derive(sqlx::FromRow)]
pub(super) struct DeviceState {
    #[sqlx(flatten)]
    pub(super) code: DeviceRow,
    pub(super) last_polled_at: Option<i64>,
    pub(super) decided_at: Option<i64>,
    pub(super) subject: Option<String>,
    pub(super) user_info: Option<String>,
    pub(super) family_id: Option<String>,
    pub(super) auth_time: Option<i64>,
    pub(super) used_at: Option<i64>,
}

/// Decides a poll at `now` from the locked row.
pub(super) fn device_poll(s: DeviceState, now: i64) -> Result<DevicePoll, StoreError> {
    // §3.5 expired_token: "The device_code has expired"; nothing else matters then.
    if now >= s.code.expires_at {
        return Ok(DevicePoll::Expired);
    }
    if s.used_at.is_some() {
        return Ok(DevicePoll::AlreadyUsed);
    }
    if s.decided_at.is_some() {
        let Some(subject) = s.subject else {
            return Ok(DevicePoll::Denied);
        };
        let (Some(user_info), Some(family_id), Some(auth_time)) =
            (s.user_info, s.family_id, s.auth_time)
        else {
            return Err(StoreError::Internal(
                "stored device approval is incomplete".into(),
            ));
        };
        let approval = DeviceApproval {
            subject,
            user_info,
            family_id,
            auth_time,
        };
        return Ok(DevicePoll::Approved(s.code.into(), approval));
    }
    // §3.5 slow_down: polled again before the interval since the previous poll ran out.
    let too_soon = s
        .last_polled_at
        .is_some_and(|last| now < last.saturating_add(s.code.interval_secs));
    Ok(if too_soon {
        DevicePoll::SlowDown
    } else {
        DevicePoll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last_polled_at: Option<i64>) -> DeviceState {
        DeviceState {
            code: DeviceRow {
                device_code_hash: "h".into(),
                user_code: "WDJBMJHT".into(),
                client_id: "flytectl".into(),
                scopes: "all offline".into(),
                interval_secs: 5,
                expires_at: 1_000,
            },
            last_polled_at,
            decided_at: None,
            subject: None,
            user_info: None,
            family_id: None,
            auth_time: None,
            used_at: None,
        }
    }

    #[test]
    fn slow_down_only_within_the_interval_of_a_previous_poll() {
        let poll = |last, now| device_poll(state(last), now).unwrap();
        assert_eq!(poll(None, 100), DevicePoll::Pending);
        assert_eq!(poll(Some(100), 100), DevicePoll::SlowDown);
        assert_eq!(poll(Some(100), 104), DevicePoll::SlowDown);
        assert_eq!(poll(Some(100), 105), DevicePoll::Pending);
        // A previous poll "in the future" (another replica's clock ahead) is too soon too.
        assert_eq!(poll(Some(200), 100), DevicePoll::SlowDown);
        assert_eq!(poll(Some(i64::MAX), 999), DevicePoll::SlowDown);
        assert_eq!(poll(Some(100), 1_000), DevicePoll::Expired);
    }

    #[test]
    fn an_incomplete_approval_is_an_error() {
        let s = DeviceState {
            decided_at: Some(100),
            subject: Some("alice".into()),
            ..state(None)
        };
        assert!(matches!(device_poll(s, 200), Err(StoreError::Internal(_))));
    }

    #[test]
    fn writes_follow_the_outcome() {
        assert_eq!(poll_write(&DevicePoll::SlowDown), Some(SLOW_DOWN_SQL));
        assert!(SLOW_DOWN_SQL.contains("interval_secs = interval_secs + 5 "));
        for none in [
            DevicePoll::Denied,
            DevicePoll::Expired,
            DevicePoll::AlreadyUsed,
        ] {
            assert_eq!(poll_write(&none), None, "{none:?}");
        }
    }
}
