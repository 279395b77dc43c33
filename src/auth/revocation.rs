//! Revoked access tokens by `jti`. Checked on every call (a map lookup, no store round trip);
//! filled immediately on the replica that revokes and, on the others, by polling the store
//! (see `transport::background::spawn_background`), so a revocation takes effect everywhere within one poll
//! interval.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// `jti` → when the entry can be forgotten (the token's own expiry plus leeway).
#[derive(Default)]
pub struct Revocations {
    map: DashMap<String, i64>,
    /// An upper bound of the map's size, so that the common case (nothing revoked) costs one
    /// atomic load instead of a lock per shard (`DashMap::is_empty` visits every shard).
    entries: AtomicUsize,
}

impl Revocations {
    pub fn insert(&self, jti: &str, forget_after: i64) {
        // Counted before it is visible: `contains` never skips a present entry.
        self.entries.fetch_add(1, Ordering::SeqCst);
        if self.map.insert(jti.to_owned(), forget_after).is_some() {
            self.entries.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.entries.load(Ordering::SeqCst) != 0 && self.map.contains_key(jti)
    }

    /// Forgets entries whose tokens have expired anyway.
    pub fn purge(&self, now: i64) {
        let mut removed = 0;
        self.map.retain(|_, forget_after| {
            let keep = *forget_after >= now;
            removed += usize::from(!keep);
            keep
        });
        self.entries.fetch_sub(removed, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_inserts_and_purges() {
        let r = Revocations::default();
        assert!(!r.contains("a"));
        r.insert("a", 10);
        r.insert("a", 20); // the same jti again: still one entry
        r.insert("b", 5);
        assert!(r.contains("a") && r.contains("b") && !r.contains("c"));
        r.purge(6);
        assert!(r.contains("a") && !r.contains("b"));
        assert_eq!(r.entries.load(Ordering::SeqCst), 1);
        r.purge(21);
        assert!(!r.contains("a"));
        assert_eq!(r.entries.load(Ordering::SeqCst), 0);
    }
}
