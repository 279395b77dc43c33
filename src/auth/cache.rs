//! A bounded cache of verified tokens, keyed by the SHA-256 of the token (the token itself is
//! never stored) and never used past the token's expiry.

use std::sync::Arc;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::Identity;

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified identities by token digest.
pub struct TokenCache {
    map: DashMap<TokenDigest, Arc<Identity>>,
    max_entries: usize,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// `max_entries == 0` disables caching.
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::with_capacity(max_entries.min(4096)),
            max_entries,
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cached identity if present and still valid at `now` (with `leeway`).
    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    pub fn get(&self, key: &TokenDigest, now: i64, leeway: i64) -> Option<Arc<Identity>> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(hit) = self.map.get(key).map(|e| e.value().clone()) else {
            self.misses.fetch_add(1, Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Relaxed);
        if now > hit.expires_at.saturating_add(leeway) {
            self.map.remove(key);
            return None;
        }
        Some(hit)
    }

    pub fn insert(&self, key: TokenDigest, identity: Arc<Identity>, now: i64, leeway: i64) {
        if !self.enabled() {
            return;
        }
        if self.map.len() >= self.max_entries {
            self.evict(now, leeway);
        }
        self.map.insert(key, identity);
    }

    /// Drops entries whose tokens have expired (housekeeping: memory follows live tokens).
    pub fn purge_expired(&self, now: i64, leeway: i64) {
        self.map
            .retain(|_, v| now <= v.expires_at.saturating_add(leeway));
    }

    /// Drops expired entries; if the cache is still full, drops arbitrary entries down to 90%.
    fn evict(&self, now: i64, leeway: i64) {
        self.map
            .retain(|_, v| now <= v.expires_at.saturating_add(leeway));
        let target = self.max_entries - self.max_entries / 10 - 1;
        if self.map.len() > target {
            let excess = self.map.len() - target;
            let victims: Vec<TokenDigest> =
                self.map.iter().take(excess).map(|e| *e.key()).collect();
            for k in victims {
                self.map.remove(&k);
            }
        }
    }

    /// Drops every cached entry whose token id is `jti` (revocation).
    pub fn forget_token_id(&self, jti: &str) {
        self.map.retain(|_, v| v.token_id.as_deref() != Some(jti));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, UserInfo};

    fn ident(exp: i64) -> Arc<Identity> {
        Arc::new(Identity {
            subject: "s".into(),
            client_id: None,
            scopes: vec![],
            user_info: UserInfo::default(),
            claims: Default::default(),
            expires_at: exp,
            token_id: None,
            credential: Credential::Bearer,
        })
    }

    #[test]
    fn bounded_and_expiring() {
        let c = TokenCache::new(100);
        for i in 0..1000 {
            c.insert(digest(&i.to_string()), ident(1000), 0, 0);
            assert!(c.len() <= 100);
        }
        c.insert(digest("x"), ident(50), 0, 0);
        assert!(c.get(&digest("x"), 50, 0).is_some());
        assert!(c.get(&digest("x"), 51, 0).is_none());
        let off = TokenCache::new(0);
        off.insert(digest("y"), ident(10), 0, 0);
        assert!(off.is_empty());
    }
}
