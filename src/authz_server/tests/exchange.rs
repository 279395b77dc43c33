//! The token exchange (RFC 8693) and JWT bearer (RFC 7523) grants.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::authz_server::grant_types::{JWT_BEARER, TOKEN_EXCHANGE, TYPE_JWT};
use crate::config::trusted_issuers::SubjectFile;

const CI: &str = "https://ci.example.com";

/// The CI's key, and a fixture trusting `CI` with that key (a JWKS file).
async fn trusting() -> (SigningKey, Fixture) {
    let pem = generate_pem(SigningAlg::ES256).expect("key");
    let key = || SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES256).expect("key");
    let jwks = KeySet {
        current: key(),
        old: None,
    }
    .jwks();
    let f = fixture_with(|dir| {
        let path = dir.join("ci-jwks.json");
        std::fs::write(&path, jwks.to_string()).expect("write jwks");
        let mut subjects = BTreeMap::new();
        subjects.insert(
            "repo:flyte/*".to_owned(),
            SubjectFile {
                client_id: "flytepropeller".into(),
                scopes: vec!["all".into()],
            },
        );
        vec![TrustedIssuerFile {
            issuer: CI.into(),
            jwks_file: path.display().to_string(),
            audiences: vec!["flyteauth".into()],
            subjects,
            ..Default::default()
        }]
    })
    .await;
    (key(), f)
}

fn ci_token(key: &SigningKey, now: i64, sub: &str) -> String {
    key.sign_jwt(
        "JWT",
        &json!({"iss": CI, "sub": sub, "aud": "flyteauth", "iat": now, "exp": now + 300}),
    )
}

#[tokio::test]
async fn a_trusted_token_is_exchanged_once() {
    let (key, f) = trusting().await;
    let token = ci_token(&key, START, "repo:flyte/main");
    let request = form(&[
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", &token),
        ("subject_token_type", TYPE_JWT),
    ]);
    let t = f
        .server
        .exchange(PUBLIC, TOKEN_EXCHANGE, &request, None, None)
        .await
        .expect("exchanged");
    assert_eq!(t.scope, "all");
    assert!(t.issued_token_type.is_some());
    let id = f.verify(t.access_token.expose());
    assert_eq!(id.subject, "flytepropeller");
    assert_eq!(
        id.claims["act"],
        json!({"sub": "repo:flyte/main", "iss": CI})
    );

    let again = f
        .server
        .exchange(PUBLIC, TOKEN_EXCHANGE, &request, None, None)
        .await;
    let (error, description) = refused(again);
    assert_eq!(error, "invalid_request");
    assert!(description.contains("already exchanged"), "{description}");
}

#[tokio::test]
async fn jwt_bearer_assertions_of_unknown_subjects_are_refused() {
    let (key, f) = trusting().await;
    let token = ci_token(&key, START, "someone-else");
    let request = form(&[("assertion", &token)]);
    let got = f
        .server
        .exchange(PUBLIC, JWT_BEARER, &request, None, None)
        .await;
    assert_eq!(refused(got).0, "invalid_grant");
    // A client naming itself must be the one the subject acts as.
    let token = ci_token(&key, START, "repo:flyte/x");
    let request = form(&[("assertion", &token), ("client_id", "flytectl")]);
    let got = f
        .server
        .exchange(PUBLIC, JWT_BEARER, &request, None, None)
        .await;
    assert_eq!(refused(got).0, "invalid_grant");
}

#[tokio::test]
async fn without_trusted_issuers_the_grants_are_off() {
    let f = fixture().await;
    let got = f
        .server
        .exchange(
            PUBLIC,
            JWT_BEARER,
            &form(&[("assertion", "a.b.c")]),
            None,
            None,
        )
        .await;
    assert_eq!(refused(got).0, "unsupported_grant_type");
}
