//! The built-in authorization server through HTTP: login form, authorize + PKCE, token
//! grants, rotation and replay detection — each negative case asserting the exact `error`.

use base64::Engine;
use flyteauth::pb::flyteidl::service as v1;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) use crate::support::browser;
use crate::support::{log_in_alice, sign_in_alice, with_token, TestServer};

pub(crate) const ALICE: &str = "auth:\n  clockSkew: 0s\n  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice Example, email: alice@example.com, groups: [dev] }\n";
/// ALICE without the refresh-token grace period (§14, tested in `hostile`): a reuse right
/// after a rotation revokes the family.
const ALICE_NO_GRACE: &str = "auth:\n  clockSkew: 0s\n  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice Example, email: alice@example.com, groups: [dev] }\n  appAuth:\n    selfAuthServer:\n      refreshTokenGracePeriod: 0s\n";
pub(crate) const VERIFIER: &str =
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-long-enough-verifier";

pub(crate) fn challenge(v: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()))
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

pub(crate) fn query(url: &str, key: &str) -> Option<String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn authorize_url(s: &TestServer, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id=flytectl&redirect_uri=http%3A%2F%2Flocalhost%3A53593%2Fcallback&scope=all%20offline&state=st-12345678{extra}",
        s.url
    )
}

/// Walks login + consent-free authorize; returns the redirect to the client.
pub(crate) async fn login_and_authorize(s: &TestServer, b: &reqwest::Client, url: &str) -> String {
    let r = b.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let login = location(&r);
    if !login.starts_with("/login?") {
        return login; // already signed in
    }
    let r = log_in_alice(s, b, &login).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let back = location(&r);
    assert!(back.starts_with("/oauth2/authorize_callback?"), "{back}");
    let r = b.get(format!("{}{back}", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    location(&r)
}

pub(crate) async fn token(
    s: &TestServer,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.url))
        .form(form);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (status, r.json().await.unwrap())
}

pub(crate) async fn code_for(s: &TestServer, b: &reqwest::Client) -> String {
    let redirect = login_and_authorize(
        s,
        b,
        &authorize_url(
            s,
            &format!(
                "&code_challenge={}&code_challenge_method=S256",
                challenge(VERIFIER)
            ),
        ),
    )
    .await;
    assert!(
        redirect.starts_with("http://localhost:53593/callback?"),
        "{redirect}"
    );
    assert_eq!(query(&redirect, "state").as_deref(), Some("st-12345678"));
    assert!(query(&redirect, "iss").is_some(), "RFC 9207 iss");
    query(&redirect, "code").unwrap()
}

pub(crate) fn redeem_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://localhost:53593/callback"),
        ("code_verifier", verifier),
        ("client_id", "flytectl"),
        ("scope", "all offline"),
        ("state", "echoed-by-flytekit"),
    ]
}

pub(crate) async fn user_info(
    s: &TestServer,
    access: &str,
) -> Result<v1::UserInfoResponse, tonic::Status> {
    s.identity()
        .await
        .user_info(with_token(
            v1::UserInfoRequest {},
            "flyte-authorization",
            access,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn pkce_code_flow_then_replay_revokes() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    let code = code_for(&s, &b).await;
    let (status, body) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(body["scope"], "all offline");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(body["refresh_token"].is_string());
    let u = user_info(&s, &access).await.unwrap();
    assert_eq!(u.subject, "alice");
    assert_eq!(u.name, "Alice Example");

    // Replay: refused, and the tokens issued from the code are revoked.
    let (status, body) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let err = user_info(&s, &access).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(err.message(), "token revoked");
}

#[tokio::test]
async fn code_exchange_negatives() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();

    let code = code_for(&s, &b).await;
    let (_, body) = token(
        &s,
        &redeem_form(&code, "wrong-verifier-wrong-verifier-wrong-verifier-000"),
        None,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant", "wrong verifier");
    // Any presentation spends the code: a guessed verifier gets no second try.
    let (_, body) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(
        (&body["error"], &body["error_description"]),
        (
            &serde_json::json!("invalid_grant"),
            &serde_json::json!("authorization code already used")
        ),
        "the right verifier after a wrong one"
    );

    let code = code_for(&s, &b).await;
    let form: Vec<_> = redeem_form(&code, VERIFIER)
        .into_iter()
        .filter(|(k, _)| *k != "code_verifier")
        .collect();
    let (_, body) = token(&s, &form, None).await;
    assert_eq!(body["error"], "invalid_request", "missing verifier");

    let code = code_for(&s, &b).await;
    let mut form = redeem_form(&code, VERIFIER);
    form[2] = ("redirect_uri", "http://localhost:12345/callback");
    let (_, body) = token(&s, &form, None).await;
    assert_eq!(body["error"], "invalid_grant", "redirect_uri mismatch");

    let code = code_for(&s, &b).await;
    let mut form = redeem_form(&code, VERIFIER);
    form[4] = ("client_id", "flyte-cli");
    let (_, body) = token(&s, &form, None).await;
    assert_eq!(body["error"], "invalid_grant", "code of another client");

    let (_, body) = token(&s, &redeem_form("not-a-code", VERIFIER), None).await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn authorize_negatives() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    // Before the redirect URI is trusted: a page, never a redirect.
    let r = b.get(format!("{}/oauth2/authorize?response_type=code&client_id=nope&redirect_uri=http://localhost:53593/callback", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = b
        .get(
            authorize_url(&s, "&code_challenge=x")
                .replace("localhost%3A53593%2Fcallback", "evil.example%2Fcb"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // After: errors on the redirect, with state.
    let err_of = |r: &reqwest::Response| query(&location(r), "error");
    let r = b.get(authorize_url(&s, "")).send().await.unwrap();
    assert_eq!(
        err_of(&r).as_deref(),
        Some("invalid_request"),
        "public client without PKCE"
    );
    let r = b
        .get(authorize_url(
            &s,
            &format!(
                "&code_challenge={}&code_challenge_method=plain",
                challenge(VERIFIER)
            ),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(err_of(&r).as_deref(), Some("invalid_request"), "plain");
    assert_eq!(
        query(&location(&r), "state").as_deref(),
        Some("st-12345678")
    );
    let r = b
        .get(
            authorize_url(&s, "&code_challenge=x")
                .replace("response_type=code", "response_type=token"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(err_of(&r).as_deref(), Some("unsupported_response_type"));
    let r = b
        .get(
            authorize_url(
                &s,
                &format!(
                    "&code_challenge={}&code_challenge_method=S256",
                    challenge(VERIFIER)
                ),
            )
            .replace("scope=all%20offline", "scope=admin"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(err_of(&r).as_deref(), Some("invalid_scope"));
    // Loopback: any port.
    let r = b
        .get(
            authorize_url(
                &s,
                &format!(
                    "&code_challenge={}&code_challenge_method=S256",
                    challenge(VERIFIER)
                ),
            )
            .replace("53593", "40000"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/login"));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = TestServer::start_with(ALICE_NO_GRACE).await;
    let b = browser();
    let code = code_for(&s, &b).await;
    let (_, first) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    // `scope` "" asks for no scope: the grant keeps the refresh token's.
    let refresh_with = |rt: String, scope: &'static str| {
        let s = &s;
        async move {
            token(
                s,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", "flytectl"),
                    ("scope", scope),
                ],
                None,
            )
            .await
        }
    };
    let refresh = |rt: String| refresh_with(rt, "");
    let (status, second) = refresh(rt1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let access2 = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(user_info(&s, &access2).await.unwrap().subject, "alice");

    // Widening is refused, and a refused request spends nothing: rt2 still works.
    let (_, body) = refresh_with(rt2.clone(), "all admin").await;
    assert_eq!(body["error"], "invalid_scope");
    // Narrowing narrows the access token only; the rotated refresh token keeps the original
    // scope (RFC 6749 §6), so the next refresh gets all of it back.
    let (status, third) = refresh_with(rt2.clone(), "offline").await;
    assert_eq!(
        (status, &third["scope"]),
        (200, &serde_json::json!("offline"))
    );
    let rt3 = third["refresh_token"].as_str().unwrap().to_owned();
    let (status, fourth) = refresh(rt3).await;
    assert_eq!(
        (status, &fourth["scope"]),
        (200, &serde_json::json!("all offline"))
    );
    let rt4 = fourth["refresh_token"].as_str().unwrap().to_owned();

    let (_, body) = refresh(rt1).await;
    assert_eq!(body["error"], "invalid_grant", "reuse of a rotated token");
    let (_, body) = refresh(rt4).await;
    assert_eq!(body["error"], "invalid_grant", "the whole family is dead");
    let err = user_info(&s, &access2).await.unwrap_err();
    assert_eq!(err.message(), "token revoked");
}

/// Two replicas on one database. Each keeps the codes and refresh tokens it issued in memory
/// to skip a read when they come back; one spent on the other replica must still count as
/// spent, and a replay must still revoke the family whatever else is wrong with the request.
#[tokio::test]
async fn a_credential_spent_on_another_replica_is_spent_here() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let here = TestServer::start_in(dir.clone(), ALICE_NO_GRACE).await;
    let there = TestServer::start_in(dir, ALICE_NO_GRACE).await;
    let refresh = |s: &TestServer, rt: String, scope: &'static str| {
        let url = s.url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/oauth2/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", "flytectl"),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };

    // A refresh token issued here, spent there, then presented here: refused as a reuse, even
    // with a scope that would be refused anyway, and the family is revoked everywhere.
    let code = code_for(&here, &browser()).await;
    let (_, first) = token(&here, &redeem_form(&code, VERIFIER), None).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&there, rt1.clone(), "").await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(&here, rt1.clone(), "all admin").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_grant"))
    );
    assert_eq!(
        body["error_description"],
        "refresh token reuse detected; the session is revoked"
    );
    let (_, body) = refresh(&there, rt2, "").await;
    assert_eq!(body["error"], "invalid_grant", "the family is revoked");

    // The same with a code: issued here, redeemed there, replayed here with a wrong verifier.
    let code = code_for(&here, &browser()).await;
    let (status, body) = token(&there, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(status, 200, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = token(
        &here,
        &redeem_form(&code, &VERIFIER.replace('d', "e")),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_grant"))
    );
    assert_eq!(body["error_description"], "authorization code already used");
    let (_, body) = refresh(&there, rt, "").await;
    assert_eq!(
        body["error"], "invalid_grant",
        "the code's family is revoked"
    );

    // Issued here, redeemed here: straight from memory, and a replay is still a reuse.
    let code = code_for(&here, &browser()).await;
    let (status, body) = token(&here, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(status, 200, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(&here, rt.clone(), "").await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = refresh(&here, rt, "").await;
    assert_eq!(
        body["error"], "invalid_grant",
        "a replay after a grant from memory"
    );
    let (_, body) = token(&here, &redeem_form(&code, VERIFIER), None).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "a code replay after a grant from memory"
    );

    // A token whose family was revoked on another replica is refused here.
    let code = code_for(&here, &browser()).await;
    let (_, body) = token(&here, &redeem_form(&code, VERIFIER), None).await;
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/revoke", there.url))
        .form(&[
            ("token", rt.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", "flytectl"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = refresh(&here, rt, "").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_grant"))
    );
    here.stop().await;
    there.stop().await;
}

#[tokio::test]
async fn client_credentials_and_client_authentication() {
    let s = TestServer::start().await;
    let secret =
        std::fs::read_to_string(s.dir.path().join("secrets/flytepropeller_client_secret")).unwrap();
    let (status, body) = token(
        &s,
        &[("grant_type", "client_credentials"), ("scope", "all")],
        Some(("flytepropeller", &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let u = user_info(&s, body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(u.subject, "flytepropeller");
    // Form authentication, comma-separated scopes (old flytekit), cached secret digest.
    let (status, _) = token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "all,offline"),
            ("client_id", "flytepropeller"),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = token(
        &s,
        &[("grant_type", "client_credentials")],
        Some(("flytepropeller", "wrong")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (_, body) = token(
        &s,
        &[("grant_type", "client_credentials")],
        Some(("flytectl", "")),
    )
    .await;
    assert_eq!(body["error"], "unauthorized_client", "public client");
    let (_, body) = token(
        &s,
        &[("grant_type", "password")],
        Some(("flytepropeller", &secret)),
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type");
    let (_, body) = token(
        &s,
        &[("grant_type", "client_credentials"), ("scope", "admin")],
        Some(("flytepropeller", &secret)),
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&x={}",
            "a".repeat(2 << 20)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn login_is_rate_limited_and_csrf_protected() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    let csrf = sign_in_alice(&s, &b).await;
    let register = |csrf: Option<&str>, origin: Option<&str>, id: &str| {
        let mut req = b
            .post(format!("{}/api/v1/projects", s.url))
            .json(&serde_json::json!({"project": {"id": id, "name": id}}));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(
        register(None, None, "nocsrf").await.unwrap().status(),
        401,
        "state change without the CSRF header"
    );
    assert_eq!(
        register(Some("wrong"), None, "wrongcsrf")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        register(Some(&csrf), Some("https://evil.example"), "evil")
            .await
            .unwrap()
            .status(),
        401
    );
    let own_origin = format!("http://127.0.0.1:{}", s.addr.port());
    assert_eq!(
        register(Some(&csrf), Some(&own_origin), "good")
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn guessing_a_client_secret_is_rate_limited() {
    let s = TestServer::start().await;
    for _ in 0..20 {
        let (status, _) = token(
            &s,
            &[("grant_type", "client_credentials")],
            Some(("flytepropeller", "guess")),
        )
        .await;
        assert_eq!(status, 401);
    }
    let secret =
        std::fs::read_to_string(s.dir.path().join("secrets/flytepropeller_client_secret")).unwrap();
    let (status, body) = token(
        &s,
        &[("grant_type", "client_credentials")],
        Some(("flytepropeller", &secret)),
    )
    .await;
    assert_eq!(status, 429, "locked even with the right secret: {body}");
}

#[tokio::test]
async fn es256_and_eddsa_signing_are_selectable() {
    for (alg, kty) in [("ES256", "EC"), ("EdDSA", "OKP")] {
        let s = TestServer::start_with(&format!(
            "auth:\n  appAuth:\n    selfAuthServer:\n      signingAlgorithm: {alg}\n"
        ))
        .await;
        let secret =
            std::fs::read_to_string(s.dir.path().join("secrets/flytepropeller_client_secret"))
                .unwrap();
        let (status, body) = token(
            &s,
            &[("grant_type", "client_credentials")],
            Some(("flytepropeller", &secret)),
        )
        .await;
        assert_eq!(status, 200, "{alg}: {body}");
        let jwt = body["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let jwks: Value = reqwest::get(format!("{}/oauth2/jwks", s.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(user_info(&s, jwt).await.unwrap().subject, "flytepropeller");
    }
}
