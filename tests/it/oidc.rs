//! The relying party's ID-token checks. The IdP here is a stand-in on purpose: a real IdP
//! cannot be told to sign with the wrong key, for the wrong audience, with a stale nonce or
//! after expiry (the happy path runs against oidc-provider in the e2e suite).

use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::Json;
use flyteauth::testing::{generate_pem, SigningAlg, SigningKey};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::support::{now, TestServer};

#[derive(Clone, Copy, PartialEq)]
enum Defect {
    None,
    WrongAudience,
    WrongNonce,
    Expired,
    OtherKey,
    ManyGroups,
}

struct Idp {
    url: String,
    key: SigningKey,
    other: SigningKey,
    nonce: Mutex<String>,
    defect: Mutex<Defect>,
}

async fn start_idp() -> Arc<Idp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let gen = || {
        SigningKey::from_pem(
            generate_pem(SigningAlg::RS256).unwrap().as_bytes(),
            SigningAlg::RS256,
        )
        .unwrap()
    };
    let idp = Arc::new(Idp {
        url,
        key: gen(),
        other: gen(),
        nonce: Mutex::new(String::new()),
        defect: Mutex::new(Defect::None),
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(idp): State<Arc<Idp>>| async move {
                Json(json!({
                    "issuer": idp.url, "authorization_endpoint": format!("{}/authorize", idp.url),
                    "token_endpoint": format!("{}/token", idp.url), "jwks_uri": format!("{}/jwks", idp.url),
                    "response_types_supported": ["code"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }))
            }),
        )
        .route("/jwks", get(|State(idp): State<Arc<Idp>>| async move { Json(json!({"keys": [idp.key.public().jwk]})) }))
        .route(
            "/token",
            post(|State(idp): State<Arc<Idp>>, Form(_f): Form<Vec<(String, String)>>| async move {
                let t = now();
                let defect = *idp.defect.lock().unwrap();
                let mut claims = json!({
                    "iss": idp.url, "sub": "idp-user-7", "aud": "flyteauth", "iat": t, "exp": t + 300,
                    "nonce": *idp.nonce.lock().unwrap(), "name": "Idp User", "email": "u@example.com",
                });
                match defect {
                    Defect::WrongAudience => claims["aud"] = json!("someone-else"),
                    Defect::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
                    Defect::Expired => {
                        claims["iat"] = json!(t - 7200);
                        claims["exp"] = json!(t - 3600);
                    }
                    Defect::ManyGroups => {
                        claims["groups"] = json!((0..400).map(|i| format!("group-{i:04}-with-a-long-name")).collect::<Vec<_>>())
                    }
                    _ => {}
                }
                let key = if defect == Defect::OtherKey { &idp.other } else { &idp.key };
                let id_token = key.sign_jwt("JWT", &claims);
                Json(json!({"access_token": "opaque-idp-access", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
            }),
        )
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    idp
}

async fn start(idp: &Idp) -> TestServer {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/oidc_client_secret"), "s3cret\n").unwrap();
    let extra = format!("auth:\n  userAuth:\n    openId: {{ clientId: flyteauth, baseUrl: \"{}\", scopes: [openid, profile] }}\n", idp.url);
    TestServer::start_in(dir, &extra).await
}

/// Runs one login; returns the `/callback` response.
async fn login(s: &TestServer, idp: &Idp, defect: Defect) -> reqwest::Response {
    *idp.defect.lock().unwrap() = defect;
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let mut to_idp = None;
    for _ in 0..100 {
        let r = b
            .get(format!("{}/login?redirect_url=/console", s.url))
            .send()
            .await
            .unwrap();
        if r.status() == 303 {
            to_idp = Some(r.headers()["location"].to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // discovery runs in the background
    }
    let to_idp = url::Url::parse(&to_idp.expect("discovery finished")).unwrap();
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    assert!(to_idp
        .as_str()
        .starts_with(&format!("{}/authorize", idp.url)));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!q["state"].is_empty());
    *idp.nonce.lock().unwrap() = q["nonce"].clone();
    b.get(format!("{}/callback?code=abc&state={}", s.url, q["state"]))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn id_token_checks() {
    let idp = start_idp().await;
    let s = start(&idp).await;

    let ok = login(&s, &idp, Defect::None).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/console");
    assert!(ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("flyte_session=")));

    for (defect, name) in [
        (Defect::WrongAudience, "wrong aud"),
        (Defect::WrongNonce, "wrong nonce"),
        (Defect::Expired, "expired"),
        (Defect::OtherKey, "signed by another key"),
    ] {
        let r = login(&s, &idp, defect).await;
        assert_eq!(r.status(), 401, "{name}");
        assert!(
            !r.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("flyte_session=")),
            "{name}: no session"
        );
        assert!(
            r.text().await.unwrap().contains("ID token was rejected"),
            "{name}"
        );
    }

    // A 10 KB ID token (hundreds of groups): nothing is limited by cookie size.
    let r = login(&s, &idp, Defect::ManyGroups).await;
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("flyte_session="))
        .unwrap();
    assert!(cookie.len() < 200, "the cookie carries only the session id");
    let me: Value = reqwest::Client::new()
        .get(format!("{}/me", s.url))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["subject"], "idp-user-7");
    assert_eq!(
        me["additional_claims"]["groups"].as_array().unwrap().len(),
        400
    );
}

#[tokio::test]
async fn callback_state_and_idp_errors() {
    let idp = start_idp().await;
    let s = start(&idp).await;
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    // No pending-login cookie.
    let r = b
        .get(format!("{}/callback?code=abc&state=xyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // IdP error: a readable page, not a 500.
    let r = b
        .get(format!(
            "{}/callback?error=access_denied&error_description=nope",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("access_denied"));
    // Forged state with a real pending login.
    for _ in 0..100 {
        if b.get(format!("{}/login", s.url))
            .send()
            .await
            .unwrap()
            .status()
            == 303
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = b
        .get(format!("{}/callback?code=abc&state=forged", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The pending login is consumed: a replayed callback finds no state.
    let r = b
        .get(format!("{}/callback?code=abc&state=forged", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // /.well-known/openid-configuration points at the IdP.
    let r = b
        .get(format!("{}/.well-known/openid-configuration", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("{}/.well-known/openid-configuration", idp.url)
    );
}
