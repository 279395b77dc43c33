//! Each grant with its store, keys and clock alone: an [`AuthorizationServer`] over SQLite in
//! a temporary directory, a generated ES256 key and a manual clock — no server, no `AppState`.

mod client;
mod code;
mod device;
mod exchange;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::clients::{Clients, PROPELLER_SECRET_NAME};
use super::trusted_issuers::{TrustedIssuerFile, TrustedIssuers};
use super::*;
use crate::auth::keysource::KeySource;
use crate::auth::{Authenticator, Identity, TokenVerifier, VerifierSettings};
use crate::clock::ManualClock;
use crate::keys::{generate_pem, KeySet, SigningAlg, SigningKey};
use crate::secret::{Secret, SecretStore};
use crate::store::DatabaseTarget;
use client_auth::ClientCredentials;
use error::OAuthError;

pub(super) const PUBLIC: &str = "https://flyte.example.com";
pub(super) const PROPELLER_SECRET: &str = "propeller-secret";
pub(super) const START: i64 = 1_700_000_000;

pub(super) struct Fixture {
    pub server: AuthorizationServer,
    pub clock: Arc<ManualClock>,
    /// The store's and the secrets' directory, removed at the end.
    pub _dir: tempfile::TempDir,
}

/// A new ES256 key.
pub(super) fn signing_key() -> SigningKey {
    let pem = generate_pem(SigningAlg::ES256).expect("key");
    SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES256).expect("key")
}

/// The server with Flyte's default clients and no trusted issuer.
pub(super) async fn fixture() -> Fixture {
    fixture_with(|_| Vec::new()).await
}

/// The server with the trusted issuers `trusted` makes (given the temporary directory).
pub(super) async fn fixture_with(
    trusted: impl FnOnce(&std::path::Path) -> Vec<TrustedIssuerFile>,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = DatabaseTarget::Sqlite {
        path: dir.path().join("as.db"),
    };
    let store = crate::store::open(&target, 4, Duration::from_secs(10), None)
        .await
        .expect("open store");
    let clock = ManualClock::new(START);
    let keys = Arc::new(KeySet {
        current: signing_key(),
        old: None,
    });
    let mut secrets = SecretStore::new(dir.path().join("secrets"), "FLYTE_TEST_".into(), vec![]);
    secrets.insert_in_memory(PROPELLER_SECRET_NAME, PROPELLER_SECRET.into());
    let clients = Clients::load(None, &secrets).expect("clients");
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let verifier = TokenVerifier::new(
        VerifierSettings {
            keys: KeySource::Static(keys.verification_keys()),
            issuers: vec![PUBLIC.into()],
            audiences: vec![PUBLIC.into()],
            required_scopes: vec!["all".into()],
            cache_entries: 100,
            leeway_secs: 30,
        },
        clock.clone(),
    );
    let authenticator = Arc::new(Authenticator::new(
        verifier,
        "flyte-authorization".into(),
        None,
        vec![],
        Default::default(),
        metrics.clone(),
    ));
    let trusted = TrustedIssuers::load(&trusted(dir.path()), 30, "").expect("trusted issuers");
    let server = AuthorizationServer {
        clients,
        client_limiter: crate::ratelimit::FailureLimiter::new(3, CLIENT_FAILURE_WINDOW_SECS),
        recent: Default::default(),
        trusted_issuers: trusted,
        settings: Settings {
            configured_issuer: None,
            issuer: PUBLIC.into(),
            public_urls: PublicUrls::new(vec![Url::parse(PUBLIC).expect("url")]),
            access_token_lifespan: 600,
            refresh_token_lifespan: 3600,
            refresh_token_grace_period: 5,
            authorization_code_lifespan: 300,
            device_code_lifespan: 600,
            clock_skew_secs: 30,
        },
        store,
        keys,
        clock: clock.clone(),
        authenticator,
        metrics,
    };
    Fixture {
        server,
        clock,
        _dir: dir,
    }
}

pub(super) fn form(pairs: &[(&str, &str)]) -> Form {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn credentials(id: &str, secret: Option<&str>) -> ClientCredentials {
    ClientCredentials {
        client_id: id.into(),
        secret: secret.map(|s| Secret::new(s.to_owned())),
        used_basic: false,
    }
}

impl Fixture {
    /// The authenticated client `id`.
    pub(super) async fn client(&self, id: &str, secret: Option<&str>) -> &clients::Client {
        self.server
            .authenticate_client(credentials(id, secret), None)
            .await
            .expect("client authenticates")
    }

    /// The identity in an access token this server issued.
    pub(super) fn verify(&self, access_token: &str) -> Arc<Identity> {
        self.server
            .authenticator
            .verifier
            .verify(access_token)
            .expect("a valid access token")
    }
}

/// `result`'s wire error code and description.
#[track_caller]
pub(super) fn refused<T: std::fmt::Debug>(result: Result<T, OAuthError>) -> (&'static str, String) {
    let e = result.expect_err("refused");
    (e.error, e.description)
}
