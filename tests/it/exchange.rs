//! Token exchange (RFC 8693) and JWT bearer (RFC 7523) at `/oauth2/token` against an issuer
//! stand-in that publishes discovery + JWKS and mints Kubernetes-shaped service-account tokens
//! (the e2e suite does the same with PyJWT and the real clients). Time is a `ManualClock`.
//! Every refusal asserts the exact status and `error`, and that nothing was issued.

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flyteauth::pb::flyteidl::service as v1;
use flyteauth::testing::ManualClock;
use flyteauth::testing::{generate_pem, SigningAlg, SigningKey};
use serde_json::{json, Value};

use crate::support::{now, with_token, TestServer};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const PROPELLER_SA: &str = "system:serviceaccount:flyte:flytepropeller";

/// A Kubernetes API server's OIDC issuer stand-in: discovery and JWKS.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    pem: String,
}

impl Issuer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pem = generate_pem(SigningAlg::ES256).unwrap();
        let key = SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES256).unwrap();
        let keys = Arc::new(Mutex::new(vec![key]));
        let md = json!({
            "issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        });
        let k = keys.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(md) }),
            )
            .route(
                "/openid/v1/jwks",
                get(move || async move {
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
        Issuer { url, keys, pem }
    }

    /// Claims of a projected service-account token for audience `flyteauth`, issued at `at`.
    fn claims(&self, sub: &str, at: i64) -> Value {
        let (ns, sa) = sub
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
            .unwrap_or(("x", "y"));
        json!({
            "iss": self.url, "sub": sub, "aud": ["flyteauth"], "iat": at, "nbf": at,
            "exp": at + 3600, "jti": format!("jti-{}", flyteauth::testing::random_token()),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": "u-1"},
                              "pod": {"name": "flytepropeller-0", "uid": "p-1"}},
        })
    }

    fn mint(&self, claims: &Value) -> String {
        self.keys.lock().unwrap()[0].sign_jwt("JWT", claims)
    }

    fn rotate(&self) {
        let key = SigningKey::from_pem(
            generate_pem(SigningAlg::ES256).unwrap().as_bytes(),
            SigningAlg::ES256,
        )
        .unwrap();
        self.keys.lock().unwrap().insert(0, key);
    }
}

/// The `auth:` block trusting `issuer` (JWKS by discovery), plus an issuer whose JWKS is
/// unreachable.
fn config(issuer: &Issuer, dead_port: u16) -> String {
    format!(
        r#"
auth:
  clockSkew: 0s
  appAuth:
    selfAuthServer:
      trustedIssuers:
        - issuer: {url}
          audiences: [flyteauth]
          maxTokenAge: 1h
          subjects:
            "{PROPELLER_SA}": {{ clientId: flytepropeller, scopes: [all] }}
            "system:serviceaccount:ci:*": {{ clientId: ci-bot, scopes: [all, read] }}
        - issuer: http://127.0.0.1:{dead_port}/dead
          jwksUri: http://127.0.0.1:{dead_port}/jwks
          audiences: [flyteauth]
          subjects:
            "{PROPELLER_SA}": {{ clientId: flytepropeller, scopes: [all] }}
"#,
        url = issuer.url
    )
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

struct Env {
    s: TestServer,
    issuer: Issuer,
    clock: Arc<ManualClock>,
    dead: u16,
}

async fn env() -> Env {
    let issuer = Issuer::start().await;
    let dead = dead_port().await;
    let clock = ManualClock::new(now());
    let s = TestServer::start_with_clock(&config(&issuer, dead), clock.clone()).await;
    Env {
        s,
        issuer,
        clock,
        dead,
    }
}

async fn post(s: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.url))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (status, r.json().await.unwrap())
}

async fn exchange(s: &TestServer, token: &str) -> (u16, Value) {
    post(
        s,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", TYPE_JWT),
        ],
    )
    .await
}

fn issued(s: &TestServer, grant: &str) -> u64 {
    let text = s.state.metrics.render(&[]);
    text.lines()
        .filter(|l| {
            l.starts_with("flyteauth_tokens_issued_total")
                && l.contains(&format!("grant=\"{grant}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The refusal `(status, error)` and that its description mentions `why`.
#[track_caller]
fn refused(got: (u16, Value), error: &str, why: &str) {
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
    let d = got.1["error_description"].as_str().unwrap_or("");
    assert!(d.contains(why), "{why:?} not in {d:?}");
    assert!(got.1.get("access_token").is_none());
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_service_account_token_is_exchanged_once_and_the_access_token_works() {
    let Env {
        s, issuer, clock, ..
    } = env().await;
    let sa = issuer.mint(&issuer.claims(PROPELLER_SA, clock_now(&clock)));
    let (status, body) = exchange(&s, &sa).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["scope"], "all");
    assert!(body.get("refresh_token").is_none());
    let at = body["access_token"].as_str().unwrap().to_owned();
    let c = claims_of(&at);
    assert_eq!(c["sub"], "flytepropeller");
    assert_eq!(c["client_id"], "flytepropeller");
    assert_eq!(c["scp"], json!(["all"]));
    assert_eq!(c["iss"], s.url);
    // RFC 8693 §4.1: who the token came from.
    assert_eq!(c["act"], json!({"sub": PROPELLER_SA, "iss": issuer.url}));

    // The access token opens the protected RPCs.
    let who = s
        .identity()
        .await
        .user_info(with_token(
            v1::UserInfoRequest {},
            "flyte-authorization",
            &at,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.subject, "flytepropeller");

    // Introspection shows the actor.
    let secret =
        std::fs::read_to_string(s.dir.path().join("secrets/flytepropeller_client_secret")).unwrap();
    let i: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/introspect", s.url))
        .basic_auth("flytepropeller", Some(secret.trim()))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["act"]["sub"], PROPELLER_SA);
    assert_eq!(i["act"]["iss"], issuer.url);

    // Single use: the same token again is refused, and nothing more is issued.
    assert_eq!(issued(&s, "token_exchange"), 1);
    refused(
        exchange(&s, &sa).await,
        "invalid_request",
        "already exchanged",
    );
    assert_eq!(issued(&s, "token_exchange"), 1);
}

#[tokio::test]
async fn jwt_bearer_grant_and_prefix_subjects() {
    let Env {
        s, issuer, clock, ..
    } = env().await;
    let ci = issuer.mint(&issuer.claims("system:serviceaccount:ci:runner", clock_now(&clock)));
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", ci.as_str()),
        ("scope", "read"),
    ];
    let (status, body) = post(&s, &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("issued_token_type").is_none());
    let c = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(c["client_id"], "ci-bot");
    assert_eq!(c["scp"], json!(["read"]));
    assert_eq!(c["act"]["sub"], "system:serviceaccount:ci:runner");
    // RFC 7523 §3.1: a bad assertion is invalid_grant; a replayed one too.
    refused(post(&s, &form).await, "invalid_grant", "already exchanged");
    assert_eq!(issued(&s, "jwt_bearer"), 1);
}

/// Every check of DESIGN.md §13 refuses with the grant's error and issues nothing; the token of
/// a refused request is not burnt.
#[tokio::test]
async fn bad_subject_tokens_are_refused() {
    let Env {
        s,
        issuer,
        clock,
        dead,
    } = env().await;
    let t = clock_now(&clock);
    let good = issuer.claims(PROPELLER_SA, t);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "untrusted issuer",
            issuer.mint(&with("iss", json!("https://evil.example.com"))),
            "is not trusted",
        ),
        (
            "wrong audience",
            issuer.mint(&with("aud", json!(["kubernetes"]))),
            "audience mismatch",
        ),
        (
            "expired",
            issuer.mint(&with("exp", json!(t - 1))),
            "expired",
        ),
        (
            "not yet valid",
            issuer.mint(&with("nbf", json!(t + 30))),
            "not valid yet",
        ),
        (
            "issued in the future",
            issuer.mint(&with("iat", json!(t + 30))),
            "issued in the future",
        ),
        (
            "too old",
            issuer.mint(&with("iat", json!(t - 3601))),
            "too old",
        ),
        (
            "no iat",
            issuer.mint(&with("iat", Value::Null)),
            "no iat claim",
        ),
        (
            "no exp",
            issuer.mint(&with("exp", Value::Null)),
            "no exp claim",
        ),
        (
            "unknown subject",
            issuer.mint(&with("sub", json!("system:serviceaccount:default:default"))),
            "is not mapped",
        ),
        ("alg none", unsigned(&good), "algorithm \"none\""),
        ("HS256 with the public key", hs256(&issuer, &good), "HS256"),
        (
            "bad signature",
            tampered(&issuer.mint(&good)),
            "bad signature",
        ),
        (
            "unreachable JWKS",
            issuer.mint(&with("iss", json!(format!("http://127.0.0.1:{dead}/dead")))),
            "could not be fetched",
        ),
        ("not a JWT", "opaque-token".into(), "malformed"),
    ];
    for (name, token, why) in &cases {
        let got = exchange(&s, token).await;
        assert_eq!(got.0, 400, "{name}: {}", got.1);
        assert_eq!(got.1["error"], "invalid_request", "{name}: {}", got.1);
        let d = got.1["error_description"].as_str().unwrap();
        assert!(d.contains(why), "{name}: {why:?} not in {d:?}");
        // RFC 7523 §3.1: the same token as an assertion is invalid_grant.
        let got = post(&s, &[("grant_type", JWT_BEARER), ("assertion", token)]).await;
        assert_eq!(
            (got.0, got.1["error"].as_str()),
            (400, Some("invalid_grant")),
            "{name}"
        );
    }
    assert_eq!(issued(&s, "token_exchange") + issued(&s, "jwt_bearer"), 0);

    // Request errors: the token itself is fine and is not burnt by them.
    let sa = issuer.mint(&good);
    let base = [
        ("grant_type", EXCHANGE),
        ("subject_token", sa.as_str()),
        ("subject_token_type", TYPE_JWT),
    ];
    let plus = |extra: (&'static str, &'static str)| {
        let mut f = base.to_vec();
        f.push(extra);
        f
    };
    refused(
        post(&s, &base[..2]).await,
        "invalid_request",
        "subject_token_type is missing",
    );
    refused(
        post(
            &s,
            &[
                base[0],
                base[1],
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
        )
        .await,
        "invalid_request",
        "not supported",
    );
    refused(
        post(
            &s,
            &plus((
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )),
        )
        .await,
        "invalid_request",
        "requested_token_type",
    );
    refused(
        post(&s, &plus(("scope", "all admin"))).await,
        "invalid_scope",
        "\"admin\"",
    );
    refused(
        post(&s, &plus(("audience", "https://other.example.com"))).await,
        "invalid_target",
        "audience",
    );
    refused(
        post(&s, &plus(("resource", "https://other.example.com/api"))).await,
        "invalid_target",
        "resource",
    );
    // A client that authenticates must be the one the subject acts as.
    refused(
        post(&s, &plus(("client_id", "flytectl"))).await,
        "invalid_request",
        "acts as client \"flytepropeller\"",
    );
    // Client authentication is optional, but when sent it must succeed.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.url))
        .basic_auth("flytepropeller", Some("wrong-secret"))
        .form(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let (status, body) = post(&s, &plus(("audience", s.url.clone().leak()))).await;
    assert_eq!(
        status, 200,
        "the refusals above did not burn the token: {body}"
    );

    // The token is remembered until it expires: still refused just before.
    clock.set(t + 3599);
    refused(
        exchange(&s, &sa).await,
        "invalid_request",
        "already exchanged",
    );
}

fn clock_now(c: &ManualClock) -> i64 {
    use flyteauth::testing::Clock;
    c.now()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `alg: none`, no signature.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// HS256 keyed with the issuer's public key (the algorithm-confusion attack).
fn hs256(issuer: &Issuer, claims: &Value) -> String {
    let jwk = issuer.keys.lock().unwrap()[0].public().jwk.clone();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = jwk["kid"].as_str().map(String::from);
    let secret = serde_json::to_vec(&jwk).unwrap();
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

/// A validly signed token whose payload was changed afterwards.
fn tampered(jwt: &str) -> String {
    let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("system:serviceaccount:ci:evil");
    parts[1] = b64(&claims);
    parts.join(".")
}

/// The issuer rotates its key: an unknown kid makes flyteauth fetch the JWKS again.
#[tokio::test]
async fn a_rotated_issuer_key_is_fetched_on_an_unknown_kid() {
    let Env {
        s, issuer, clock, ..
    } = env().await;
    let t = clock_now(&clock);
    let first = issuer.mint(&issuer.claims(PROPELLER_SA, t));
    assert_eq!(exchange(&s, &first).await.0, 200);
    issuer.rotate();
    // Within 10 s of the last fetch an unknown kid fetches nothing (no fetch storms).
    let second = issuer.mint(&issuer.claims(PROPELLER_SA, t));
    refused(exchange(&s, &second).await, "invalid_request", "kid");
    clock.advance(11);
    let (status, body) = exchange(&s, &second).await;
    assert_eq!(status, 200, "{body}");
}

/// Keys from a file (`kubectl get --raw /openid/v1/jwks > jwks.json`), metadata advertising
/// the grants, and a server without trusted issuers refusing them.
#[tokio::test]
async fn jwks_file_metadata_and_disabled_grants() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = issuer.keys.lock().unwrap()[0].public().jwk.clone();
    std::fs::write(&jwks, json!({ "keys": [key] }).to_string()).unwrap();
    let yaml = format!(
        "auth:\n  appAuth:\n    selfAuthServer:\n      trustedIssuers:\n        - issuer: https://kubernetes.default.svc.cluster.local\n          jwksFile: {}\n          audiences: [flyteauth]\n          subjects:\n            \"{PROPELLER_SA}\": {{ clientId: flytepropeller, scopes: [all] }}\n",
        jwks.display()
    );
    let s = TestServer::start_with(&yaml).await;
    let mut c = issuer.claims(PROPELLER_SA, now());
    c["iss"] = json!("https://kubernetes.default.svc.cluster.local");
    let (status, body) = exchange(&s, &issuer.mint(&c)).await;
    assert_eq!(status, 200, "{body}");
    let md: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grants = md["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!(EXCHANGE)) && grants.contains(&json!(JWT_BEARER)));

    let plain = TestServer::start().await;
    let md: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        plain.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(!md["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(EXCHANGE)));
    refused(
        exchange(&plain, &issuer.mint(&c)).await,
        "unsupported_grant_type",
        "no trusted issuers",
    );
    drop(issuer.pem);
}

#[test]
fn bad_trusted_issuer_configs_name_the_key() {
    let cfg = |issuer: &str| {
        format!(
            "auth:\n  appAuth:\n    selfAuthServer:\n      trustedIssuers:\n        - {issuer}\n"
        )
    };
    let cases = [
        (
            "{ issuer: 'not a url', audiences: [a], subjects: { s: { clientId: c, scopes: [all] } } }",
            "trustedIssuers[0].issuer",
        ),
        (
            "{ issuer: 'https://i', subjects: { s: { clientId: c, scopes: [all] } } }",
            "trustedIssuers[0].audiences",
        ),
        (
            "{ issuer: 'https://i', audiences: [a], subjects: { '*': { clientId: c, scopes: [all] } } }",
            "trustedIssuers[0].subjects.*",
        ),
        (
            "{ issuer: 'https://i', audiences: [a], subjects: { 'a*b': { clientId: c, scopes: [all] } } }",
            "trustedIssuers[0].subjects.a*b",
        ),
        (
            "{ issuer: 'https://i', audiences: [a], subjects: { s: { clientId: '', scopes: [all] } } }",
            "trustedIssuers[0].subjects.s.clientId",
        ),
        (
            "{ issuer: 'https://i', audiences: [a], jwksUri: 'https://i/k', jwksFile: k.json, subjects: { s: { clientId: c, scopes: [all] } } }",
            "trustedIssuers[0].jwksFile",
        ),
        (
            "{ issuer: 'https://i', audiences: [a], subjects: { s: { clientId: c, scopes: [all], extra: 1 } } }",
            "extra",
        ),
    ];
    for (issuer, key) in cases {
        let e = flyteauth::testing::Config::from_yaml(&cfg(issuer), std::path::Path::new("/cfg"))
            .unwrap_err();
        assert!(e.to_string().contains(key), "{issuer}: {e}");
    }
}

/// `flyteauth token --subject-token-file F` prints the access token alone; errors go to
/// stderr with a non-zero exit.
#[tokio::test]
async fn token_command_exchanges_a_subject_token_file() {
    let Env {
        s, issuer, clock, ..
    } = env().await;
    let file = s.dir.path().join("sa-token");
    let t = clock_now(&clock);
    std::fs::write(&file, issuer.mint(&issuer.claims(PROPELLER_SA, t))).unwrap();
    let endpoint = s.url.clone();
    let run = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flyteauth"))
            .args(["token", "--endpoint", &endpoint, "--subject-token-file"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let run2 = run.clone();
    let out = tokio::task::spawn_blocking(run).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let at = String::from_utf8(out.stdout).unwrap();
    assert_eq!(claims_of(at.trim())["act"]["sub"], PROPELLER_SA);
    // The same file again: a replay, refused; the reason on stderr, nothing on stdout.
    let out = tokio::task::spawn_blocking(run2).await.unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid_request") && err.contains("already exchanged"),
        "{err}"
    );
}
