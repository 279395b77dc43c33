//! Codes and refresh tokens this process issued and nobody has presented to it since, so that
//! the grant redeeming one usually skips the database read (one round trip of three on
//! PostgreSQL).
//!
//! What a record holds never changes once stored (subject, client, scopes, expiry, family).
//! What does change — whether the code or token was spent, here or on another replica, and
//! whether its family was revoked — is never taken from here: the grant's transaction decides
//! it, as it does after a read. A request that would be refused is answered from a fresh read
//! instead, so that a credential spent elsewhere still revokes its family when presented again
//! (RFC 9700 §4.14.2), whatever else is wrong with the request.
//!
//! Entries are taken out when presented, so each is used at most once, and the oldest are
//! dropped beyond a fixed number: the memory is bounded, and a replica that never sees the
//! redemption only pays the read it would have paid anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::store::{AuthCodeRecord, RefreshTokenRecord};

/// Entries kept per kind. A refresh token's record is ~0.5–2 KiB with its profile.
pub(crate) const RECENT_ENTRIES: usize = 4096;

/// Recently issued codes and refresh tokens, keyed by their stored digest.
pub struct RecentGrants {
    pub codes: Recent<AuthCodeRecord>,
    pub refresh_tokens: Recent<RefreshTokenRecord>,
}

impl Default for RecentGrants {
    fn default() -> Self {
        Self {
            codes: Recent::new(RECENT_ENTRIES),
            refresh_tokens: Recent::new(RECENT_ENTRIES),
        }
    }
}

/// At most `capacity` records by key, the oldest dropped first.
pub struct Recent<T> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    records: HashMap<String, T>,
    /// Keys in insertion order; may still name records already taken.
    order: VecDeque<String>,
}

impl<T> Recent<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                records: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Keeps `record` under `key`, dropping the oldest records beyond the capacity.
    pub fn put(&self, key: String, record: T) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.records.insert(key.clone(), record).is_none() {
            inner.order.push_back(key);
        }
        while inner.records.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.records.remove(&oldest);
        }
        // Keys of taken records pile up in `order` when nothing is dropped: forget them once
        // they outnumber the records.
        if inner.order.len() > 2 * self.capacity {
            let Inner { records, order } = &mut *inner;
            order.retain(|k| records.contains_key(k));
        }
    }

    /// Takes the record under `key` out: each record is handed out once.
    pub fn take(&self, key: &str) -> Option<T> {
        self.lock().records.remove(key)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock leaves at worst a record too many: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_handed_out_once() {
        let r = Recent::new(4);
        r.put("a".into(), 1);
        assert_eq!(r.take("a"), Some(1));
        assert_eq!(r.take("a"), None);
        assert_eq!(r.take("b"), None);
    }

    #[test]
    fn the_oldest_records_go_beyond_the_capacity() {
        let r = Recent::new(3);
        for i in 0..5 {
            r.put(format!("k{i}"), i);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.take("k0"), None);
        assert_eq!(r.take("k1"), None);
        assert_eq!(r.take("k4"), Some(4));
    }

    #[test]
    fn taken_keys_do_not_pile_up() {
        let r = Recent::new(8);
        for i in 0..10_000 {
            let key = format!("k{i}");
            r.put(key.clone(), i);
            assert_eq!(r.take(&key), Some(i));
        }
        assert!(r.is_empty());
        assert!(r.lock().order.len() <= 2 * 8 + 1);
    }

    #[test]
    fn a_record_put_again_is_replaced_not_doubled() {
        let r = Recent::new(2);
        r.put("a".into(), 1);
        r.put("a".into(), 2);
        r.put("b".into(), 3);
        assert_eq!(r.len(), 2);
        assert_eq!(r.take("a"), Some(2));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let r = Recent::new(0);
        r.put("a".into(), 1);
        assert_eq!(r.take("a"), None);
    }
}
