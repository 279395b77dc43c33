//! Failure counting in fixed windows: after `max_failures` within `window` for a key (a user
//! name, a client address), the key is locked until the window ends — even for a correct
//! password. Bounded: stale windows are dropped when the map grows.

use dashmap::DashMap;

pub struct FailureLimiter {
    map: DashMap<String, (i64, u32)>,
    max_failures: u32,
    window_secs: i64,
    max_keys: usize,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window_secs: i64) -> Self {
        Self {
            map: DashMap::new(),
            max_failures,
            window_secs,
            max_keys: 100_000,
        }
    }

    /// `Some(retry_after_secs)` if `key` is locked at `now`.
    pub fn locked(&self, key: &str, now: i64) -> Option<i64> {
        let e = self.map.get(key)?;
        let (start, count) = *e;
        let end = start + self.window_secs;
        (count >= self.max_failures && now < end).then_some((end - now).max(1))
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        if self.map.len() >= self.max_keys {
            let window = self.window_secs;
            self.map.retain(|_, (start, _)| now < *start + window);
        }
        let mut e = self.map.entry(key.to_owned()).or_insert((now, 0));
        if now >= e.0 + self.window_secs {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    pub fn record_success(&self, key: &str) {
        self.map.remove(key);
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
}
