//! A bounded cache of verified tokens, never used past the token's expiry.
//!
//! A JWS is `signing input . signature`. An entry is keyed by the SHA-256 of the signature
//! segment and holds the signing input (`header.payload`), which a hit must match exactly: the
//! whole token is bound (the signature by the digest, the rest by equality), while the memory
//! never holds a usable token (the signature itself is not stored). Hashing only the signature
//! (86 to 342 characters) instead of the whole token (600 to 1,000) is what keeps a hit well
//! under a microsecond.

use std::sync::Arc;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::Identity;

pub(super) type TokenDigest = [u8; 32];

/// A token split for the cache: the digest of its signature segment and its signing input.
pub struct CacheKey<'a> {
    digest: TokenDigest,
    signing_input: &'a str,
}

impl<'a> CacheKey<'a> {
    /// `None` when the token has no `.` (it is not a JWS and never reaches the cache).
    pub fn of(token: &'a str) -> Option<Self> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        Some(Self {
            digest: Sha256::digest(signature.as_bytes()).into(),
            signing_input,
        })
    }
}

struct Entry {
    signing_input: Box<str>,
    identity: Arc<Identity>,
}

/// Verified identities by token.
pub struct TokenCache {
    map: DashMap<TokenDigest, Entry>,
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

    pub fn get(&self, key: &CacheKey<'_>, now: i64, leeway: i64) -> Option<Arc<Identity>> {
        use std::sync::atomic::Ordering::Relaxed;
        let hit = self
            .map
            .get(&key.digest)
            .filter(|e| *e.signing_input == *key.signing_input)
            .map(|e| e.identity.clone());
        let Some(hit) = hit else {
            self.misses.fetch_add(1, Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Relaxed);
        if now > hit.expires_at.saturating_add(leeway) {
            self.map.remove(&key.digest);
            return None;
        }
        Some(hit)
    }

    pub fn insert(&self, key: &CacheKey<'_>, identity: Arc<Identity>, now: i64, leeway: i64) {
        if !self.enabled() {
            return;
        }
        if self.map.len() >= self.max_entries {
            self.evict(now, leeway);
        }
        self.map.insert(
            key.digest,
            Entry {
                signing_input: key.signing_input.into(),
                identity,
            },
        );
    }

    /// Drops entries whose tokens have expired (housekeeping: memory follows live tokens).
    pub fn purge_expired(&self, now: i64, leeway: i64) {
        self.map
            .retain(|_, v| now <= v.identity.expires_at.saturating_add(leeway));
    }

    /// Drops expired entries; if the cache is still full, drops arbitrary entries down to 90%.
    fn evict(&self, now: i64, leeway: i64) {
        self.purge_expired(now, leeway);
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
        self.map
            .retain(|_, v| v.identity.token_id.as_deref() != Some(jti));
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

    fn key(token: &str) -> CacheKey<'_> {
        CacheKey::of(token).unwrap()
    }

    #[test]
    fn bounded_and_expiring() {
        let c = TokenCache::new(100);
        let tokens: Vec<String> = (0..1000).map(|i| format!("h.p.{i}")).collect();
        for t in &tokens {
            c.insert(&key(t), ident(1000), 0, 0);
            assert!(c.len() <= 100);
        }
        c.insert(&key("h.p.x"), ident(50), 0, 0);
        assert!(c.get(&key("h.p.x"), 50, 0).is_some());
        assert!(c.get(&key("h.p.x"), 51, 0).is_none());
        let off = TokenCache::new(0);
        off.insert(&key("h.p.y"), ident(10), 0, 0);
        assert!(off.is_empty());
        assert!(CacheKey::of("no-dots").is_none());
    }

    /// A hit needs the whole token: the same signature over another header or payload (a
    /// tampered token) misses and goes to full verification.
    #[test]
    fn a_hit_binds_the_signing_input() {
        let c = TokenCache::new(10);
        c.insert(&key("header.payload.sig"), ident(100), 0, 0);
        assert!(c.get(&key("header.payload.sig"), 0, 0).is_some());
        assert!(c.get(&key("header.payloaX.sig"), 0, 0).is_none());
        assert!(c.get(&key("headeR.payload.sig"), 0, 0).is_none());
        assert!(c.get(&key("header.payload.siG"), 0, 0).is_none());
    }
}
