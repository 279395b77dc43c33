//! The device authorization grant: the device code, the user's decision, the polling.

use super::*;
use crate::authz_server::device::{normalise_user_code, DeviceDecision};
use crate::authz_server::grant_types::DEVICE_CODE;

async fn poll(f: &Fixture, device_code: &str) -> Result<issue::TokenResponse, OAuthError> {
    let client = f.client("flytectl", None).await;
    f.server
        .token_grant(
            PUBLIC,
            client,
            DEVICE_CODE,
            &form(&[("device_code", device_code)]),
        )
        .await
}

async fn decide(f: &Fixture, user_code: &str, approve: bool) {
    let code = normalise_user_code(user_code);
    let record = f.server.pending_device_code(&code).await.expect("pending");
    assert_eq!(record.client_id, "flytectl");
    let profile = serde_json::json!({"name": "Alice"});
    let decision = DeviceDecision {
        subject: "alice",
        profile: &profile,
        approve,
    };
    f.server
        .decide_device_code(&code, &record.client_id, decision)
        .await
        .expect("decided");
}

#[tokio::test]
async fn an_approved_device_gets_tokens_once() {
    let f = fixture().await;
    let client = f.client("flytectl", None).await;
    let start = f
        .server
        .device_authorization(PUBLIC, client, Some("all offline"))
        .await
        .expect("device code");
    assert_eq!(start.verification_uri, format!("{PUBLIC}/oauth2/device"));
    assert_eq!(start.user_code.len(), 9);
    assert_eq!((start.interval, start.expires_in), (5, 600));
    assert!(!format!("{start:?}").contains(start.device_code.expose().as_str()));

    let pending = poll(&f, start.device_code.expose()).await;
    assert_eq!(refused(pending).0, "authorization_pending");
    decide(&f, &start.user_code.to_lowercase(), true).await;
    f.clock.advance(6);
    let t = poll(&f, start.device_code.expose()).await.expect("tokens");
    assert_eq!(t.scope, "all offline");
    assert!(t.refresh_token.is_some());
    assert_eq!(f.verify(t.access_token.expose()).subject, "alice");

    f.clock.advance(6);
    let again = poll(&f, start.device_code.expose()).await;
    assert_eq!(refused(again).0, "invalid_grant");
}

#[tokio::test]
async fn a_denied_device_gets_access_denied() {
    let f = fixture().await;
    let client = f.client("flytectl", None).await;
    let start = f
        .server
        .device_authorization(PUBLIC, client, None)
        .await
        .expect("device code");
    decide(&f, &start.user_code, false).await;
    let got = poll(&f, start.device_code.expose()).await;
    assert_eq!(refused(got).0, "access_denied");
    let unknown = poll(&f, "no-such-device-code").await;
    assert_eq!(
        refused(unknown),
        ("invalid_grant", "unknown device code".into())
    );
}

#[tokio::test]
async fn clients_without_the_device_grant_are_refused() {
    let f = fixture().await;
    let client = f.client("flytepropeller", Some(PROPELLER_SECRET)).await;
    let got = f.server.device_authorization(PUBLIC, client, None).await;
    assert_eq!(refused(got).0, "unauthorized_client");
    let flytectl = f.client("flytectl", None).await;
    let got = f
        .server
        .device_authorization(PUBLIC, flytectl, Some("admin"))
        .await;
    assert_eq!(refused(got).0, "invalid_scope");
}
