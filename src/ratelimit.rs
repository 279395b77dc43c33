//! Failure counting in fixed windows: after `max_failures` within `window` for a key (a user
//! at an address, an address, a client at an address), the key is locked until the window
//! ends — even for a correct password. Bounded: stale windows are dropped when the map grows.
//!
//! An attempt is counted *before* its credential is checked ([`FailureLimiter::begin`]), in
//! one step with the lock test, so a burst of concurrent attempts cannot exceed the limit
//! (DESIGN.md §14); a success then gives its slot back ([`FailureLimiter::succeeded`] clears
//! the key, [`FailureLimiter::release`] returns one slot).
//!
//! With a store that shares counters (PostgreSQL, [`FailureLimiter::with_store`]), the async
//! methods ([`attempt`](FailureLimiter::attempt), [`give_back`](FailureLimiter::give_back),
//! [`forget`](FailureLimiter::forget)) count in the store, so every replica sees every
//! failure; should the store fail, they count in memory (still limited, per replica).

use std::sync::Arc;

use dashmap::DashMap;

pub struct FailureLimiter {
    map: DashMap<String, (i64, u32)>,
    max_failures: u32,
    window_secs: i64,
    max_keys: usize,
    shared: Option<Arc<dyn crate::store::Store>>,
}

/// The digest a key is stored under (keys hold user names and addresses).
fn key_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window_secs: i64) -> Self {
        Self {
            map: DashMap::new(),
            max_failures,
            window_secs,
            max_keys: 100_000,
            shared: None,
        }
    }

    /// Counts in `store` when it shares counters between replicas.
    pub fn with_store(mut self, store: Arc<dyn crate::store::Store>) -> Self {
        self.shared = Some(store);
        self
    }

    /// [`begin_all`](Self::begin_all), in the shared store when there is one.
    pub async fn attempt(&self, keys: &[String], now: i64) -> Result<(), i64> {
        let Some(store) = &self.shared else {
            return self.begin_all(keys, now);
        };
        let mut counted: Vec<String> = Vec::new();
        for k in keys {
            let h = key_hash(k);
            match store.count_attempt(&h, now, self.window_secs).await {
                Ok(Some((start, attempts))) => {
                    counted.push(h);
                    if attempts > i64::from(self.max_failures) {
                        for c in &counted {
                            let _ = store.uncount_attempt(c, false).await;
                        }
                        return Err((start + self.window_secs - now).max(1));
                    }
                }
                Ok(None) => {
                    return self.begin_all(keys, now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shared failure counters unavailable; counting in memory");
                    for c in &counted {
                        let _ = store.uncount_attempt(c, false).await;
                    }
                    return self.begin_all(keys, now);
                }
            }
        }
        Ok(())
    }

    /// [`release`](Self::release), in the shared store too.
    pub async fn give_back(&self, key: &str) {
        self.release(key);
        if let Some(store) = &self.shared {
            let _ = store.uncount_attempt(&key_hash(key), false).await;
        }
    }

    /// [`succeeded`](Self::succeeded), in the shared store too.
    pub async fn forget(&self, key: &str) {
        self.succeeded(key);
        if let Some(store) = &self.shared {
            let _ = store.uncount_attempt(&key_hash(key), true).await;
        }
    }

    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// `Some(retry_after_secs)` if `key` is locked at `now`.
    pub fn locked(&self, key: &str, now: i64) -> Option<i64> {
        let e = self.map.get(key)?;
        let (start, count) = *e;
        let end = start + self.window_secs;
        (count >= self.max_failures && now < end).then_some((end - now).max(1))
    }

    /// Counts one attempt for `key` as a failure unless it is locked: `Err(retry_after_secs)`
    /// when it is (nothing counted). The test and the count are one step.
    pub fn begin(&self, key: &str, now: i64) -> Result<(), i64> {
        self.shrink(now);
        let mut e = self.map.entry(key.to_owned()).or_insert((now, 0));
        if now >= e.0 + self.window_secs {
            *e = (now, 0);
        }
        if e.1 >= self.max_failures {
            return Err((e.0 + self.window_secs - now).max(1));
        }
        e.1 += 1;
        Ok(())
    }

    /// Counts attempts for every key, all or none: `Err(retry_after_secs)` (the longest) when
    /// one of them is locked, and then nothing stays counted.
    pub fn begin_all(&self, keys: &[String], now: i64) -> Result<(), i64> {
        for (i, k) in keys.iter().enumerate() {
            if let Err(retry) = self.begin(k, now) {
                for done in &keys[..i] {
                    self.release(done);
                }
                let longest = keys
                    .iter()
                    .filter_map(|k| self.locked(k, now))
                    .max()
                    .unwrap_or(retry);
                return Err(longest);
            }
        }
        Ok(())
    }

    /// Gives back one counted attempt of `key` (it did not fail).
    pub fn release(&self, key: &str) {
        if let Some(mut e) = self.map.get_mut(key) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// A success for `key`: its failures are forgotten.
    pub fn succeeded(&self, key: &str) {
        self.map.remove(key);
    }

    /// Counts a failure without a prior [`begin`](Self::begin).
    pub fn record_failure(&self, key: &str, now: i64) {
        self.shrink(now);
        let mut e = self.map.entry(key.to_owned()).or_insert((now, 0));
        if now >= e.0 + self.window_secs {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    pub fn record_success(&self, key: &str) {
        self.succeeded(key);
    }

    fn shrink(&self, now: i64) {
        if self.map.len() >= self.max_keys {
            let window = self.window_secs;
            self.map.retain(|_, (start, _)| now < *start + window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_then_unlocks_after_window() {
        let l = FailureLimiter::new(3, 60);
        for _ in 0..3 {
            assert!(l.locked("u", 0).is_none());
            l.record_failure("u", 0);
        }
        assert_eq!(l.locked("u", 10), Some(50));
        assert!(l.locked("u", 61).is_none());
        assert!(l.locked("other", 10).is_none());
    }

    #[test]
    fn begin_counts_before_the_check_and_success_gives_back() {
        let l = FailureLimiter::new(3, 60);
        for _ in 0..3 {
            assert!(l.begin("u", 0).is_ok());
        }
        assert_eq!(l.begin("u", 10), Err(50), "the 4th concurrent attempt");
        l.release("u");
        assert!(l.begin("u", 10).is_ok());
        l.succeeded("u");
        assert!(l.locked("u", 10).is_none());
        assert!(l.begin("u", 61).is_ok());
    }

    #[test]
    fn begin_all_is_all_or_nothing() {
        let l = FailureLimiter::new(1, 60);
        assert!(l.begin("ip", 0).is_ok());
        let keys = vec!["user".to_string(), "ip".to_string()];
        assert_eq!(l.begin_all(&keys, 0), Err(60));
        assert!(
            l.locked("user", 0).is_none(),
            "the user's slot was given back"
        );
    }
}
