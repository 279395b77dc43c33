//! Where verification keys come from: the built-in AS's own keys (static), or the JWKS of an
//! external authorization server, cached by `kid` and refetched on an unknown `kid` at most
//! once per interval — garbage tokens with random `kid`s cannot cause a fetch storm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::keys::{public_key_from_jwk, PublicKey};

/// The keys a verifier trusts.
pub enum KeySource {
    /// Current key first, then the old one.
    Static(Vec<PublicKey>),
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    /// The key for a token's `kid`. Without a kid: the current (first) key; for a remote
    /// JWKS, only when it holds exactly one key. An unknown kid is `None` (never "fall back
    /// to the first key").
    /// Calls `f` with it (no copy of the key on the verification path).
    pub fn with_key<R>(&self, kid: Option<&str>, f: impl FnOnce(&PublicKey) -> R) -> Option<R> {
        match self {
            KeySource::Static(keys) => match kid {
                Some(kid) => keys.iter().find(|k| k.kid == kid),
                None => keys.first(),
            }
            .map(f),
            KeySource::Remote(jwks) => jwks.with_key(kid, f),
        }
    }
}

/// A remote JWKS, cached.
pub struct RemoteJwks {
    url: RwLock<Option<String>>,
    keys: RwLock<Arc<HashMap<String, PublicKey>>>,
    last_fetch: std::sync::Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    min_interval: Duration,
    http: reqwest::Client,
    fetches: AtomicU64,
    /// `Cache-Control: max-age` of the last JWKS response, in seconds (0: none given).
    max_age: AtomicU64,
}

impl RemoteJwks {
    pub fn new(http: reqwest::Client, min_interval: Duration) -> Self {
        Self {
            url: RwLock::new(None),
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_fetch: std::sync::Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            min_interval,
            http,
            fetches: AtomicU64::new(0),
            max_age: AtomicU64::new(0),
        }
    }

    /// Sets the JWKS URL (from the AS metadata).
    pub fn set_url(&self, url: String) {
        *self.url.write().expect("lock") = Some(url);
    }

    /// How many times the JWKS was fetched (metrics, tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn with_key<R>(&self, kid: Option<&str>, f: impl FnOnce(&PublicKey) -> R) -> Option<R> {
        let keys = self.keys.read().expect("lock").clone();
        match kid {
            Some(kid) => keys.get(kid),
            None if keys.len() == 1 => keys.values().next(),
            None => None,
        }
        .map(f)
    }

    /// How long the last JWKS may be cached, per its `Cache-Control` (None: not said).
    pub fn max_age(&self) -> Option<Duration> {
        match self.max_age.load(Ordering::Relaxed) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    /// Fetches now (start-up, periodic refresh).
    pub async fn fetch(&self) -> Result<usize, String> {
        let _single_flight = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<usize, String> {
        let url = self
            .url
            .read()
            .expect("lock")
            .clone()
            .ok_or_else(|| "JWKS URL not known yet".to_string())?;
        *self.last_fetch.lock().expect("lock") = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(cache_max_age)
            .unwrap_or(0);
        self.max_age.store(max_age, Ordering::Relaxed);
        let doc: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
        let mut map = HashMap::new();
        for k in doc
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(pk) = public_key_from_jwk(k) {
                map.insert(pk.kid.clone(), pk);
            }
        }
        let n = map.len();
        *self.keys.write().expect("lock") = Arc::new(map);
        Ok(n)
    }

    /// Refetches after an unknown `kid`, unless the last fetch was less than the minimum
    /// interval ago. Returns whether a fetch happened (so the caller may retry).
    pub async fn refresh_if_due(&self) -> bool {
        let due = |this: &Self| {
            this.last_fetch
                .lock()
                .expect("lock")
                .is_none_or(|t| t.elapsed() >= this.min_interval)
        };
        if !due(self) {
            return false;
        }
        let _single_flight = self.fetch_lock.lock().await;
        if !due(self) {
            return false; // another caller just fetched
        }
        match self.fetch_locked().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed");
                false
            }
        }
    }
}

/// `max-age` (or `s-maxage`) from a `Cache-Control` value; `no-store`/`no-cache` mean 0.
fn cache_max_age(v: &str) -> Option<u64> {
    let mut age = None;
    for part in v.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(n) = lower
            .strip_prefix("max-age=")
            .or_else(|| lower.strip_prefix("s-maxage="))
        {
            age = n.trim_matches('"').parse().ok();
        }
    }
    age
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_control() {
        assert_eq!(super::cache_max_age("public, max-age=3600"), Some(3600));
        assert_eq!(super::cache_max_age("no-store"), Some(0));
        assert_eq!(super::cache_max_age("public"), None);
    }
}
