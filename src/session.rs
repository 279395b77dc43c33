//! Browser sessions, kept in the store: the cookie carries only a 256-bit random id (stored
//! as its SHA-256), with idle and absolute lifetimes. The local-users login and (later) the
//! OIDC login both end here.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use crate::clock::SharedClock;
use crate::keys::random_token;
use crate::secret::Secret;
use crate::store::{SessionRecord, Store, StoreError};

/// The session cookie's name over plain http (over TLS it is `__Host-flyte_session`).
pub(crate) const COOKIE: &str = "flyte_session";

/// The value of cookie `name` in a request's `Cookie` headers, if any.
pub(crate) fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Hex SHA-256, the form in which opaque credentials are stored.
pub(crate) fn digest_hex(value: &str) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(value.as_bytes());
    let mut hex = String::with_capacity(2 * d.len());
    for b in d {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 0xf)] as char);
    }
    hex
}

/// A live session. The CSRF token is a credential: `Debug` prints it as `[redacted]`.
/// (`user_info()` is in `auth`, which reads the profile.)
#[derive(Clone, Debug)]
pub struct Session {
    pub id_hash: String,
    pub subject: String,
    /// The profile JSON as stored (UserInfo fields plus e.g. `groups`).
    pub profile: Value,
    pub csrf_token: Secret<String>,
}

pub struct Sessions {
    store: Arc<dyn Store>,
    clock: SharedClock,
    idle_secs: i64,
    absolute_secs: i64,
    cookie_name: &'static str,
}

/// Touch `last_seen_at` at most this often (fewer writes on busy sessions).
const TOUCH_EVERY_SECS: i64 = 60;

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        idle_secs: i64,
        absolute_secs: i64,
    ) -> Self {
        Self {
            store,
            clock,
            idle_secs,
            absolute_secs,
            cookie_name: COOKIE,
        }
    }

    /// The name the session cookie is read under (§14: over TLS only its `__Host-` name;
    /// the transport's cookie factory knows it).
    pub fn with_cookie_name(mut self, name: &'static str) -> Self {
        self.cookie_name = name;
        self
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        self.cookie_name
    }

    pub fn idle_secs(&self) -> i64 {
        self.idle_secs
    }

    /// Creates a session; returns the cookie value (shown once, stored only as a digest).
    pub async fn create(
        &self,
        subject: &str,
        profile: &Value,
    ) -> Result<(Secret<String>, Session), StoreError> {
        let now = self.clock.now();
        let id = random_token();
        let record = SessionRecord {
            id_hash: digest_hex(&id),
            subject: subject.to_owned(),
            user_info: profile.to_string(),
            csrf_token: random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.absolute_secs,
            idp_refresh_token: None,
        };
        self.store.create_session(&record).await?;
        Ok((
            Secret::new(id),
            Session {
                id_hash: record.id_hash,
                subject: record.subject,
                profile: profile.clone(),
                csrf_token: Secret::new(record.csrf_token),
            },
        ))
    }

    /// The session the request's cookie names, if it is still valid.
    pub async fn of_request(&self, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
        match request_cookie(headers, self.cookie_name) {
            Some(id) => self.lookup(id).await,
            None => Ok(None),
        }
    }

    /// The session whose cookie value is `id`, if it is still valid (touched when due).
    pub async fn lookup(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if id.len() > 128 {
            return Ok(None);
        }
        let id_hash = digest_hex(id);
        let record = match self.store.get_session(&id_hash).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = self.clock.now();
        if now >= record.expires_at || now >= record.last_seen_at + self.idle_secs {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        }
        // Touch at most every minute, and often enough for short idle timeouts.
        if now - record.last_seen_at >= TOUCH_EVERY_SECS.min(self.idle_secs / 2) {
            match self.store.touch_session(&id_hash, now).await {
                Ok(()) => {}
                // Logged out between the read and the touch.
                Err(StoreError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Session {
            id_hash,
            subject: record.subject,
            profile: serde_json::from_str(&record.user_info).unwrap_or(Value::Null),
            csrf_token: Secret::new(record.csrf_token),
        }))
    }

    /// Ends the session the request's cookie names (logout).
    pub async fn end(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        match request_cookie(headers, self.cookie_name) {
            Some(id) => self.end_id(id).await,
            None => Ok(()),
        }
    }

    /// Ends the session whose cookie value is `id`.
    pub async fn end_id(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_session(&digest_hex(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{digest_hex, Secret, Session};

    #[test]
    fn session_debug_hides_the_csrf_token() {
        let s = Session {
            id_hash: "h".into(),
            subject: "u".into(),
            profile: serde_json::Value::Null,
            csrf_token: Secret::new("csrf-value-5".into()),
        };
        assert!(!format!("{s:?}").contains("csrf-value-5"));
    }

    /// Stored credentials are looked up by this form: it must never change, or every stored
    /// session, code and refresh token is lost (FIPS 180-2's "abc" vector, lowercase hex).
    #[test]
    fn digest_hex_is_lowercase_hex_sha256() {
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
