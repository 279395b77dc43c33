//! The embedded identity source: users from `auth.userAuth.localUsers` and the sign-in
//! decision with per-user and per-address failure limits. (The HTML form, its CSRF cookie
//! and logout are in `transport/http/login.rs`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use crate::config::LocalUserFile;
use crate::keys::random_token;
use crate::metrics::Metrics;
use crate::ratelimit::FailureLimiter;
use crate::secret::{Secret, SecretStore};
use crate::session::{Session, Sessions};
use crate::store::StoreError;

/// How a user's password is checked.
enum PasswordCheck {
    /// A bcrypt or argon2 PHC string from the config.
    Hash(String),
    /// A password held in a secret (generated at first start), compared in constant time.
    Plain(Secret<String>),
}

struct LocalUser {
    check: PasswordCheck,
    profile: serde_json::Value,
}

/// The configured local users.
#[derive(Default)]
pub struct LocalUsers {
    users: HashMap<String, Arc<LocalUser>>,
    /// What an unknown user's password is checked against (§14: no user enumeration by
    /// timing): a hash of random bytes with the algorithm and cost of the configured hashes,
    /// or a random secret when every user's password is a plain secret. A plain-secret user
    /// among hashed ones checks against it too, so every attempt costs one hash.
    dummy: Option<Arc<PasswordCheck>>,
}

/// The label of a check: `(scheme, cost)`.
fn scheme_of(check: &PasswordCheck) -> (&'static str, String) {
    match check {
        PasswordCheck::Plain(_) => ("plain", "0".into()),
        PasswordCheck::Hash(h) if h.starts_with("$argon2") => (
            "argon2",
            argon2::password_hash::PasswordHash::new(h)
                .map(|p| p.params.to_string())
                .unwrap_or_default(),
        ),
        PasswordCheck::Hash(h) => ("bcrypt", h.split('$').nth(2).unwrap_or("").to_owned()),
    }
}

/// A hash of random bytes like `like` (same algorithm and parameters), or `None` if `like`
/// cannot be read (then it never verifies anyway).
fn dummy_hash_like(like: &str) -> Option<String> {
    let random = random_token();
    if like.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
        let parsed = PasswordHash::new(like).ok()?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        let salt = SaltString::encode_b64(&random.as_bytes()[..16]).ok()?;
        let h = argon2::Argon2::default()
            .hash_password_customized(
                random.as_bytes(),
                Some(parsed.algorithm),
                parsed.version,
                params,
                salt.as_salt(),
            )
            .ok()?;
        return Some(h.to_string());
    }
    let cost: u32 = like.split('$').nth(2)?.parse().ok()?;
    bcrypt::hash(random, cost).ok()
}

/// Checks `password` against `check` (CPU-bound: call on the blocking pool).
fn check_password(check: &PasswordCheck, password: &str) -> bool {
    match check {
        PasswordCheck::Plain(s) => s.ct_eq(password.as_bytes()),
        PasswordCheck::Hash(h) if h.starts_with("$argon2") => {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            PasswordHash::new(h)
                .map(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        }
        PasswordCheck::Hash(h) => bcrypt::verify(password, h).unwrap_or(false),
    }
}

impl LocalUsers {
    pub fn load(
        users: &[LocalUserFile],
        secrets: &SecretStore,
    ) -> Result<Self, (String, crate::secret::SecretError)> {
        let mut map = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let check = if u.password_secret_name.is_empty() {
                PasswordCheck::Hash(u.password_hash.clone())
            } else {
                let s = secrets.get_text(&u.password_secret_name).map_err(|e| {
                    (
                        format!("auth.userAuth.localUsers[{i}].passwordSecretName"),
                        e,
                    )
                })?;
                PasswordCheck::Plain(s)
            };
            let name = if u.name.is_empty() {
                u.username.clone()
            } else {
                u.name.clone()
            };
            let profile = json!({
                "subject": u.username,
                "name": name,
                "preferred_username": u.username,
                "email": u.email,
                "groups": u.groups,
            });
            map.insert(u.username.clone(), Arc::new(LocalUser { check, profile }));
        }
        let first_hash = users
            .iter()
            .find(|u| u.password_secret_name.is_empty() && !u.password_hash.is_empty())
            .map(|u| u.password_hash.as_str());
        let dummy = match first_hash {
            Some(h) => dummy_hash_like(h).map(PasswordCheck::Hash),
            None if !map.is_empty() => Some(PasswordCheck::Plain(Secret::new(random_token()))),
            None => None,
        };
        Ok(Self {
            users: map,
            dummy: dummy.map(Arc::new),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password (CPU-bound hashing runs on the blocking pool). Returns the profile,
    /// and the scheme and cost of the costliest check it performed (for
    /// `flyteauth_password_checks_total`: an unknown user costs what a known one does).
    pub async fn verify(
        &self,
        username: &str,
        password: Secret<String>,
    ) -> (Option<serde_json::Value>, (&'static str, String)) {
        let user = self.users.get(username).cloned();
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            let Some(user) = user else {
                return match dummy {
                    Some(d) => {
                        let _ = check_password(&d, password.expose());
                        (None, scheme_of(&d))
                    }
                    None => (None, ("none", "0".into())),
                };
            };
            let ok = check_password(&user.check, password.expose());
            let mut scheme = scheme_of(&user.check);
            if let (PasswordCheck::Plain(_), Some(d)) = (&user.check, &dummy) {
                if matches!(**d, PasswordCheck::Hash(_)) {
                    let _ = check_password(d, password.expose());
                    scheme = scheme_of(d);
                }
            }
            (ok.then(|| user.profile.clone()), scheme)
        })
        .await
        .unwrap_or((None, ("none", "0".into())))
    }
}

/// What a local sign-in needs.
pub(crate) struct LocalLogin<'a> {
    pub users: &'a LocalUsers,
    pub limiter: &'a FailureLimiter,
    pub sessions: &'a Sessions,
    pub metrics: &'a Metrics,
}

/// Why a local sign-in did not produce a session.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// Over the failure limit: retry after this many seconds.
    RateLimited {
        retry_after: i64,
    },
    BadCredentials,
    /// The session store failed.
    Store(StoreError),
}

impl LocalLogin<'_> {
    /// §4, §14: a user is limited per address (wrong passwords from one address never lock
    /// the user out at another), and an address over all users. The attempt is counted before
    /// the password is checked, so a concurrent burst cannot exceed the limit. On success the
    /// session and its cookie value.
    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: Secret<String>,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<(Secret<String>, Session), SignInError> {
        let ip_text = ip.map(|i| i.to_string()).unwrap_or_default();
        let user_key = format!("user:{username}@{ip_text}");
        let keys: Vec<String> = std::iter::once(user_key.clone())
            .chain(ip.map(|ip| format!("ip:{ip}")))
            .collect();
        if let Err(retry_after) = self.limiter.attempt(&keys, now).await {
            return Err(SignInError::RateLimited { retry_after });
        }
        let (profile, (scheme, cost)) = self.users.verify(username, password).await;
        self.metrics.inc(
            "flyteauth_password_checks_total",
            &[("scheme", scheme), ("cost", &cost)],
        );
        // A failure stays counted by `attempt`.
        let profile = profile.ok_or(SignInError::BadCredentials)?;
        self.limiter.forget(&user_key).await;
        for k in &keys[1..] {
            self.limiter.give_back(k).await;
        }
        self.sessions
            .create(username, &profile)
            .await
            .map_err(SignInError::Store)
    }
}
