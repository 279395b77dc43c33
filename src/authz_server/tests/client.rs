//! Client authentication, the client credentials grant, revocation and introspection.

use super::*;

#[tokio::test]
async fn client_credentials_issue_a_token_to_the_client() {
    let f = fixture().await;
    let client = f.client("flytepropeller", Some(PROPELLER_SECRET)).await;
    let t = f
        .server
        .token_grant(
            PUBLIC,
            client,
            "client_credentials",
            &form(&[("scope", "all")]),
        )
        .await
        .expect("token");
    assert_eq!(t.scope, "all");
    assert!(t.refresh_token.is_none());
    assert_eq!(t.expires_in, 600);
    let id = f.verify(t.access_token.expose());
    assert_eq!(id.subject, "flytepropeller");
    assert_eq!(id.client_id.as_deref(), Some("flytepropeller"));
    assert_eq!(id.expires_at, START + 600);

    // A scope the client does not have, and an audience that is not this deployment.
    let wide = form(&[("scope", "admin")]);
    let got = f.server.client_credentials(PUBLIC, client, &wide).await;
    assert_eq!(refused(got).0, "invalid_scope");
    let elsewhere = form(&[("audience", "https://other.example.com")]);
    let got = f
        .server
        .client_credentials(PUBLIC, client, &elsewhere)
        .await;
    assert_eq!(refused(got).0, "invalid_target");
    let ours = form(&[("audience", "https://flyte.example.com/")]);
    assert!(f
        .server
        .client_credentials(PUBLIC, client, &ours)
        .await
        .is_ok());
}

#[tokio::test]
async fn public_clients_get_no_client_credentials() {
    let f = fixture().await;
    let client = f.client("flytectl", None).await;
    let got = f
        .server
        .token_grant(PUBLIC, client, "client_credentials", &form(&[]))
        .await;
    assert_eq!(refused(got).0, "unauthorized_client");
    let got = f
        .server
        .token_grant(PUBLIC, client, "password", &form(&[]))
        .await;
    assert_eq!(refused(got).0, "unsupported_grant_type");
}

#[tokio::test]
async fn wrong_secrets_are_refused_then_limited_per_address() {
    let f = fixture().await;
    let addr: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let wrong = || credentials("flytepropeller", Some("guess"));
    for _ in 0..3 {
        let e = f.server.authenticate_client(wrong(), Some(addr)).await;
        let e = e.err().expect("refused");
        assert_eq!((e.error, e.status.as_u16()), ("invalid_client", 401));
    }
    // Locked at that address, even for the right secret; elsewhere the client still works.
    let right = credentials("flytepropeller", Some(PROPELLER_SECRET));
    let e = f.server.authenticate_client(right, Some(addr)).await.err();
    assert_eq!(
        e.map(|e| (e.status.as_u16(), e.retry_after.is_some())),
        Some((429, true))
    );
    let right = credentials("flytepropeller", Some(PROPELLER_SECRET));
    let other = Some("192.0.2.8".parse().unwrap());
    assert!(f.server.authenticate_client(right, other).await.is_ok());

    let missing = f
        .server
        .authenticate_client(credentials("flytepropeller", None), None);
    assert_eq!(
        missing.await.err().map(|e| e.description),
        Some("client secret is missing".into())
    );
    let unknown = f
        .server
        .authenticate_client(credentials("nobody", None), None);
    assert_eq!(
        unknown.await.err().map(|e| e.description),
        Some("unknown client".into())
    );
}

#[tokio::test]
async fn revoked_access_tokens_are_inactive() {
    let f = fixture().await;
    let client = f.client("flytepropeller", Some(PROPELLER_SECRET)).await;
    let t = f
        .server
        .client_credentials(PUBLIC, client, &form(&[]))
        .await
        .expect("token");
    let token = form(&[("token", t.access_token.expose())]);
    let v = f
        .server
        .introspect(client, &token)
        .await
        .expect("introspect");
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], "flytepropeller");
    assert_eq!(v["client_id"], "flytepropeller");

    f.server.revoke(client, &token).await.expect("revoke");
    let v = f
        .server
        .introspect(client, &token)
        .await
        .expect("introspect");
    assert_eq!(v, serde_json::json!({"active": false}));
    // Unknown tokens are no error (RFC 7009 §2.2); a missing one is.
    f.server
        .revoke(client, &form(&[("token", "opaque-unknown")]))
        .await
        .expect("unknown token");
    let got = f.server.revoke(client, &form(&[])).await;
    assert_eq!(refused(got).0, "invalid_request");
}

#[tokio::test]
async fn public_clients_may_not_introspect() {
    let f = fixture().await;
    let client = f.client("flytectl", None).await;
    let got = f
        .server
        .introspect(client, &form(&[("token", "a.b.c")]))
        .await;
    let (error, description) = refused(got);
    assert_eq!(error, "invalid_client");
    assert_eq!(description, "introspection requires a confidential client");
}
