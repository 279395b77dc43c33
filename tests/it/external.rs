//! `authServerType: External` against a local authorization server stand-in: its metadata and
//! a JWKS of keys minted in the test (the shapes of Keycloak, Okta and Azure AD tokens are
//! produced here on purpose — a real IdP cannot be told to emit each of them on demand).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Json;
use flyteauth::pb::flyteidl::service as v1;
use flyteauth::testing::{generate_pem, SigningAlg, SigningKey};
use serde_json::{json, Value};
use tonic::Code;

use crate::support::{now, with_token, TestServer};

struct FakeAs {
    url: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl FakeAs {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = SigningKey::from_pem(
            generate_pem(SigningAlg::RS256).unwrap().as_bytes(),
            SigningAlg::RS256,
        )
        .unwrap();
        let keys = Arc::new(Mutex::new(vec![key]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let md = json!({
            "issuer": url, "authorization_endpoint": format!("{url}/authorize"), "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"), "response_types_supported": ["code"], "grant_types_supported": ["client_credentials"],
            "code_challenge_methods_supported": ["S256"], "scopes_supported": ["all"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"], "device_authorization_endpoint": format!("{url}/device"),
            "extra_field": "dropped",
        });
        let (k, f) = (keys.clone(), fetches.clone());
        let app = axum::Router::new()
            // Only the OpenID Connect document exists: exercises the fallback.
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(md) }),
            )
            .route(
                "/jwks",
                get(move || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys: Vec<Value> = k
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|k| k.public().jwk.clone())
                        .collect();
                    Json(json!({ "keys": keys }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAs {
            url,
            keys,
            jwks_fetches: fetches,
        }
    }

    fn mint(&self, claims: &Value) -> String {
        self.keys.lock().unwrap()[0].sign_jwt("JWT", claims)
    }

    fn rotate(&self) {
        let key = SigningKey::from_pem(
            generate_pem(SigningAlg::RS256).unwrap().as_bytes(),
            SigningAlg::RS256,
        )
        .unwrap();
        self.keys.lock().unwrap().insert(0, key);
    }
}

async fn start(as_: &FakeAs, interval: &str) -> TestServer {
    let extra = format!(
        "auth:\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: {}\n      allowedAudience: [\"api://flyte\"]\n      jwksRefreshInterval: {interval}\n      retryDelay: 100ms\n",
        as_.url
    );
    let s = TestServer::start_with(&extra).await;
    // Metadata arrives in the background: wait for it (bounded).
    let mut c = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(s.channel().await);
    for _ in 0..100 {
        if c.get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
            .await
            .is_ok()
        {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("external metadata never loaded");
}

async fn user_info(s: &TestServer, token: &str) -> Result<v1::UserInfoResponse, tonic::Status> {
    s.identity()
        .await
        .user_info(with_token(v1::UserInfoRequest {}, "authorization", token))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn external_metadata_is_proxied_and_claim_shapes_normalise() {
    let as_ = FakeAs::start().await;
    let s = start(&as_, "30s").await;
    let m = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(s.channel().await)
        .get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.issuer, as_.url);
    assert_eq!(m.token_endpoint, format!("{}/token", as_.url));
    assert_eq!(
        m.device_authorization_endpoint,
        format!("{}/device", as_.url)
    );
    let doc: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["jwks_uri"], format!("{}/jwks", as_.url));
    assert!(doc.get("extra_field").is_none());
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the built-in AS is off in External mode");

    let t = now();
    let base =
        json!({"iss": as_.url, "aud": "api://flyte", "iat": t, "exp": t + 300, "sub": "svc"});
    let with = |extra: Value| {
        let mut c = base.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    // Keycloak: scopes in a space-separated `scope`, client in `azp`.
    let u = user_info(
        &s,
        &as_.mint(&with(
            json!({"scope": "all profile email", "azp": "flytepropeller"}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(u.subject, "svc");
    // Okta: `scp` array, client in `cid`.
    assert!(
        user_info(&s, &as_.mint(&with(json!({"scp": ["all"], "cid": "0oa1"}))))
            .await
            .is_ok()
    );
    // Azure AD: `scp` space string, `azp`/`appid`, audience = the public URL.
    let mut azure = with(json!({"scp": "other all", "appid": "1234"}));
    azure["aud"] = json!(format!("http://127.0.0.1:{}", s.addr.port()));
    assert!(user_info(&s, &as_.mint(&azure)).await.is_ok());

    // Wrong audience, other issuer, no `all`: refused.
    let err = user_info(
        &s,
        &as_.mint(&with(json!({"scp": ["all"], "aud": "api://other"}))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("audience mismatch"));
    let err = user_info(
        &s,
        &as_.mint(&with(json!({"scp": ["all"], "iss": "http://other-issuer"}))),
    )
    .await
    .unwrap_err();
    assert!(
        err.message().contains("issuer mismatch"),
        "{}",
        err.message()
    );
    let err = user_info(&s, &as_.mint(&with(json!({"scp": ["read"], "cid": "x"}))))
        .await
        .unwrap_err();
    assert!(err.message().contains("required scope"));

    // Garbage kids: at most one JWKS fetch per interval.
    let before = as_.jwks_fetches.load(Ordering::SeqCst);
    let stranger = SigningKey::from_pem(
        generate_pem(SigningAlg::RS256).unwrap().as_bytes(),
        SigningAlg::RS256,
    )
    .unwrap();
    for _ in 0..50 {
        let err = user_info(
            &s,
            &stranger.sign_jwt("JWT", &with(json!({"scp": ["all"]}))),
        )
        .await
        .unwrap_err();
        assert_eq!(err.message(), "unknown signing key");
    }
    assert!(
        as_.jwks_fetches.load(Ordering::SeqCst) - before <= 1,
        "no fetch storm"
    );
}

#[tokio::test]
async fn external_key_rotation_is_picked_up_without_restart() {
    let as_ = FakeAs::start().await;
    let s = start(&as_, "0s").await;
    let t = now();
    let claims = json!({"iss": as_.url, "aud": "api://flyte", "iat": t, "exp": t + 300, "sub": "svc", "scp": ["all"], "cid": "c"});
    assert!(user_info(&s, &as_.mint(&claims)).await.is_ok());
    as_.rotate();
    let u = user_info(&s, &as_.mint(&claims)).await.unwrap();
    assert_eq!(u.subject, "svc");
}

/// Flyte's `auth.httpProxyURL` is the proxy of External mode's metadata fetch: with a proxy
/// that is not there, the (reachable) AS's metadata never loads.
#[tokio::test]
async fn auth_http_proxy_url_is_used_for_the_metadata_fetch() {
    let as_ = FakeAs::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let extra = format!(
        "auth:\n  httpProxyURL: {dead_url}\n  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: {}\n      retryAttempts: 0\n      retryDelay: 10ms\n",
        as_.url
    );
    let s = TestServer::start_with(&extra).await;
    let mut c = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(s.channel().await);
    for _ in 0..20 {
        let r = c.get_o_auth2_metadata(v1::OAuth2MetadataRequest {}).await;
        assert!(r.is_err(), "metadata fetched around the configured proxy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The same AS without the proxy: loads (see `start`).
    let _ = start(&as_, "30s").await;
}
