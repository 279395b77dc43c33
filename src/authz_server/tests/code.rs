//! The authorization request, the authorization code grant and the refresh token grant.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::*;
use crate::authz_server::authorize::AuthorizeRefusal;

const REDIRECT: &str = "http://localhost:53593/callback";
const VERIFIER: &str = "a-pkce-code-verifier-of-at-least-43-characters-long";

fn challenge() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

fn request(extra: &[(&str, &str)]) -> Form {
    let challenge = challenge();
    let mut p = form(&[
        ("client_id", "flytectl"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "all offline"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    p.extend(form(extra));
    p
}

/// A code for alice through flytectl.
async fn code(f: &Fixture) -> String {
    let params = request(&[]);
    let request = f.server.validate_authorization(&params).expect("valid");
    assert_eq!(request.scopes, ["all", "offline"]);
    let profile = serde_json::json!({"name": "Alice", "groups": ["eng"]});
    f.server
        .issue_code(&request, "alice", &profile)
        .await
        .expect("code")
}

fn redeem(code: &str) -> Form {
    form(&[
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ])
}

#[tokio::test]
async fn a_code_is_redeemed_once() {
    let f = fixture().await;
    let code = code(&f).await;
    let client = f.client("flytectl", None).await;
    let t = f
        .server
        .token_grant(PUBLIC, client, "authorization_code", &redeem(&code))
        .await
        .expect("tokens");
    assert!(t.refresh_token.is_some());
    assert_eq!(t.scope, "all offline");
    let id = f.verify(t.access_token.expose());
    assert_eq!(id.subject, "alice");
    assert_eq!(id.claims["iss"], PUBLIC);
    assert_eq!(id.claims["user_info"]["name"], "Alice");
    assert_eq!(id.claims["groups"], serde_json::json!(["eng"]));

    // §4.1.2: a second presentation is refused and revokes what the first one issued.
    let again = f
        .server
        .authorization_code(PUBLIC, client, &redeem(&code))
        .await;
    assert_eq!(
        refused(again),
        ("invalid_grant", "authorization code already used".into())
    );
    let refresh = form(&[("refresh_token", t.refresh_token.as_ref().unwrap().expose())]);
    let got = f.server.refresh_token(PUBLIC, client, &refresh).await;
    assert_eq!(refused(got).0, "invalid_grant");
}

#[tokio::test]
async fn a_wrong_verifier_spends_the_code() {
    let f = fixture().await;
    let code = code(&f).await;
    let client = f.client("flytectl", None).await;
    let mut wrong = redeem(&code);
    wrong.insert("code_verifier".into(), "x".repeat(43));
    let got = f.server.authorization_code(PUBLIC, client, &wrong).await;
    assert_eq!(
        refused(got),
        (
            "invalid_grant",
            "code_verifier does not match the code_challenge".into()
        )
    );
    let got = f
        .server
        .authorization_code(PUBLIC, client, &redeem(&code))
        .await;
    assert_eq!(refused(got).0, "invalid_grant");
}

#[tokio::test]
async fn codes_expire() {
    let f = fixture().await;
    let code = code(&f).await;
    let client = f.client("flytectl", None).await;
    f.clock.advance(301);
    let got = f
        .server
        .authorization_code(PUBLIC, client, &redeem(&code))
        .await;
    assert_eq!(
        refused(got),
        ("invalid_grant", "authorization code expired".into())
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_late_reuse_revokes_the_family() {
    let f = fixture().await;
    let code = code(&f).await;
    let client = f.client("flytectl", None).await;
    let first = f
        .server
        .authorization_code(PUBLIC, client, &redeem(&code))
        .await
        .expect("tokens");
    let old = first.refresh_token.expect("refresh token").expose().clone();
    let narrow = form(&[("refresh_token", &old), ("scope", "all")]);
    let second = f
        .server
        .token_grant(PUBLIC, client, "refresh_token", &narrow)
        .await
        .expect("refreshed");
    assert_eq!(second.scope, "all");
    let new = second.refresh_token.expect("rotated").expose().clone();
    assert_ne!(new, old);
    assert_eq!(f.verify(second.access_token.expose()).subject, "alice");

    // After the grace period, the old token is a replay: the whole family goes.
    f.clock.advance(6);
    let got = f
        .server
        .refresh_token(PUBLIC, client, &form(&[("refresh_token", &old)]))
        .await;
    assert_eq!(
        refused(got),
        (
            "invalid_grant",
            "refresh token reuse detected; the session is revoked".into()
        )
    );
    let got = f
        .server
        .refresh_token(PUBLIC, client, &form(&[("refresh_token", &new)]))
        .await;
    assert_eq!(refused(got).0, "invalid_grant");
}

#[tokio::test]
async fn a_refresh_may_not_widen_the_scope() {
    let f = fixture().await;
    let code = code(&f).await;
    let client = f.client("flytectl", None).await;
    let t = f
        .server
        .authorization_code(PUBLIC, client, &redeem(&code))
        .await
        .expect("tokens");
    let refresh = t.refresh_token.expect("refresh token").expose().clone();
    let wide = form(&[("refresh_token", &refresh), ("scope", "all access_token")]);
    let got = f.server.refresh_token(PUBLIC, client, &wide).await;
    assert_eq!(refused(got).0, "invalid_scope");
    // A refused request spends nothing.
    let plain = form(&[("refresh_token", &refresh)]);
    assert!(f.server.refresh_token(PUBLIC, client, &plain).await.is_ok());
}

#[tokio::test]
async fn authorization_requests_are_checked_before_a_code_is_issued() {
    let f = fixture().await;
    let unknown = f
        .server
        .validate_authorization(&request(&[("client_id", "nobody")]));
    assert_eq!(
        unknown.err(),
        Some(AuthorizeRefusal::Page {
            title: "Unknown client",
            message: "This application is not registered.",
        })
    );
    let elsewhere = request(&[("redirect_uri", "https://evil.example.com/cb")]);
    let got = f.server.validate_authorization(&elsewhere).err();
    assert!(matches!(
        got,
        Some(AuthorizeRefusal::Page {
            title: "Invalid redirect URI",
            ..
        })
    ));
    // Once the redirect URI is trusted, errors go back to the client.
    let plain = request(&[("code_challenge_method", "plain"), ("state", "xyz")]);
    match f.server.validate_authorization(&plain).err() {
        Some(AuthorizeRefusal::Redirect {
            redirect_uri,
            state,
            error,
            ..
        }) => {
            assert_eq!(redirect_uri, REDIRECT);
            assert_eq!(state.as_deref(), Some("xyz"));
            assert_eq!(error, "invalid_request");
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    let mut no_pkce = request(&[]);
    no_pkce.remove("code_challenge");
    no_pkce.remove("code_challenge_method");
    assert!(matches!(
        f.server.validate_authorization(&no_pkce).err(),
        Some(AuthorizeRefusal::Redirect {
            error: "invalid_request",
            ..
        })
    ));
}
