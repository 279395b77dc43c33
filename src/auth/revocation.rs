//! Revoked access tokens by `jti`. Checked on every call (a map lookup, no store round trip);
//! filled immediately on the replica that revokes and, on the others, by polling the store
//! (see `state::spawn_background`), so a revocation takes effect everywhere within one poll
//! interval.

use dashmap::DashMap;

/// `jti` → when the entry can be forgotten (the token's own expiry plus leeway).
#[derive(Default)]
pub struct Revocations {
    map: DashMap<String, i64>,
}

impl Revocations {
    pub fn insert(&self, jti: &str, forget_after: i64) {
        self.map.insert(jti.to_owned(), forget_after);
    }

    pub fn contains(&self, jti: &str) -> bool {
        !self.map.is_empty() && self.map.contains_key(jti)
    }

    /// Forgets entries whose tokens have expired anyway.
    pub fn purge(&self, now: i64) {
        self.map.retain(|_, forget_after| *forget_after >= now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
