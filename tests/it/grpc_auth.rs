//! The token-checking layer through real gRPC calls: every way a token can be wrong ends in
//! UNAUTHENTICATED with a reason that names it; valid tokens reach the handlers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flyteauth::pb::flyteidl::service as v1;
use flyteauth::pb::flyteidl2::auth as v2;
use flyteauth::testing::{generate_pem, SigningAlg, SigningKey};
use serde_json::json;
use tonic::Code;

use crate::support::{now, with_token, TestServer};

async fn user_info(
    s: &TestServer,
    key: &'static str,
    token: &str,
) -> Result<v1::UserInfoResponse, tonic::Status> {
    s.identity()
        .await
        .user_info(with_token(v1::UserInfoRequest {}, key, token))
        .await
        .map(|r| r.into_inner())
}

async fn assert_unauthenticated(s: &TestServer, token: &str, reason: &str) {
    let err = user_info(s, "authorization", token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains(reason),
        "expected {reason:?} in {:?}",
        err.message()
    );
}

#[tokio::test]
async fn metadata_is_anonymous_and_matches_the_json_documents() {
    let s = TestServer::start().await;
    let ch = s.channel().await;
    let mut c = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(ch.clone());
    let m = c
        .get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    let public = format!("http://127.0.0.1:{}", s.addr.port());
    assert_eq!(m.token_endpoint, format!("{public}/oauth2/token"));
    assert_eq!(
        m.authorization_endpoint,
        format!("{public}/oauth2/authorize")
    );
    assert_eq!(m.jwks_uri, format!("{public}/oauth2/jwks"));
    assert_eq!(m.code_challenge_methods_supported, vec!["S256"]);
    assert_eq!(m.response_types_supported, vec!["code"]);
    let pc = c
        .get_public_client_config(v1::PublicClientAuthConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pc.client_id, "flytectl");
    assert_eq!(pc.redirect_uri, "http://localhost:53593/callback");
    assert_eq!(pc.scopes, vec!["all", "offline"]);
    assert_eq!(pc.authorization_metadata_key, "flyte-authorization");

    let mut c2 = v2::auth_metadata_service_client::AuthMetadataServiceClient::new(ch);
    let m2 = c2
        .get_o_auth2_metadata(v2::GetOAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m2.token_endpoint, m.token_endpoint);
    let pc2 = c2
        .get_public_client_config(v2::GetPublicClientConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pc2.client_id, "flytectl");

    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{public}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["token_endpoint"], m.token_endpoint);
    assert_eq!(
        doc["device_authorization_endpoint"],
        m.device_authorization_endpoint
    );
    assert_eq!(doc.as_object().unwrap().len(), 10, "every field is emitted");
    let fc: serde_json::Value = http
        .get(format!("{public}/config/v1/flyte_client"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fc["authorization_metadata_key"], "flyte-authorization");
    assert_eq!(fc["service_http_endpoint"], "");
}

#[tokio::test]
async fn health_needs_no_token() {
    let s = TestServer::start().await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn a_valid_token_gets_the_identity() {
    let s = TestServer::start().await;
    let u = user_info(&s, "authorization", &s.token()).await.unwrap();
    assert_eq!(u.subject, "alice");
    assert_eq!(u.name, "Alice Example");
    assert_eq!(u.email, "alice@example.com");
    let claims = u.additional_claims.unwrap();
    assert!(claims.fields.contains_key("client_id"));
    // flyteidl2 too.
    let mut c2 = v2::identity_service_client::IdentityServiceClient::new(s.channel().await);
    let u2 = c2
        .user_info(with_token(
            v2::UserInfoRequest {},
            "flyte-authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u2.subject, "alice");
}

#[tokio::test]
async fn no_token_is_unauthenticated_everywhere_protected() {
    let s = TestServer::start().await;
    let err = s
        .identity()
        .await
        .user_info(v1::UserInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "missing access token");
    let err = s
        .admin()
        .await
        .list_projects(flyteauth::pb::flyteidl::admin::ProjectListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = s
        .admin()
        .await
        .get_domains(flyteauth::pb::flyteidl::admin::GetDomainRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated_with_its_reason() {
    let s = TestServer::start().await;
    let t = now();

    assert_unauthenticated(&s, "garbage", "malformed token").await;
    assert_unauthenticated(&s, "a.b.c", "malformed token").await;

    let mut c = s.claims();
    c["exp"] = json!(t - 3600);
    assert_unauthenticated(&s, &s.mint(&c), "token expired").await;

    let mut c = s.claims();
    c["nbf"] = json!(t + 3600);
    assert_unauthenticated(&s, &s.mint(&c), "not yet valid").await;

    let mut c = s.claims();
    c["iat"] = json!(t + 3600);
    assert_unauthenticated(&s, &s.mint(&c), "issued in the future").await;

    let mut c = s.claims();
    c["aud"] = json!(["https://someone-else.example"]);
    assert_unauthenticated(&s, &s.mint(&c), "audience mismatch: expected one of").await;

    let mut c = s.claims();
    c["iss"] = json!("https://evil.example");
    assert_unauthenticated(&s, &s.mint(&c), "issuer mismatch").await;

    let mut c = s.claims();
    c["scp"] = json!(["offline"]);
    assert_unauthenticated(&s, &s.mint(&c), "doesn't have required scope").await;

    // A key the server does not know (unknown kid).
    let other = SigningKey::from_pem(
        generate_pem(SigningAlg::RS256).unwrap().as_bytes(),
        SigningAlg::RS256,
    )
    .unwrap();
    assert_unauthenticated(
        &s,
        &other.sign_jwt("at+jwt", &s.claims()),
        "unknown signing key",
    )
    .await;

    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(s.claims().to_string());
    assert_unauthenticated(&s, &format!("{header}.{payload}."), "malformed token").await;

    // HS256 "signed" with public key material (algorithm confusion).
    let jwks = s.state.keys.jwks().to_string();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &s.claims(),
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    assert_unauthenticated(&s, &hs, "algorithm HS256 is not allowed").await;

    // Tampered payload: a valid signature over other claims.
    let good = s.token();
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = s.claims();
    c["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_unauthenticated(&s, &forged, "invalid token signature").await;

    // Wrong scheme.
    let err = s
        .identity()
        .await
        .user_info({
            let mut r = tonic::Request::new(v1::UserInfoRequest {});
            r.metadata_mut()
                .insert("authorization", format!("Basic {good}").parse().unwrap());
            r
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "authorization scheme must be Bearer");
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_the_custom_key_wins() {
    let s = TestServer::start().await;
    let good = s.token();
    let mut r = tonic::Request::new(v1::UserInfoRequest {});
    r.metadata_mut()
        .insert("authorization", format!("bEaReR {good}").parse().unwrap());
    assert!(s.identity().await.user_info(r).await.is_ok());

    // Both keys sent: the custom key decides.
    let mut r = tonic::Request::new(v1::UserInfoRequest {});
    r.metadata_mut()
        .insert("authorization", "Bearer garbage".parse().unwrap());
    r.metadata_mut().insert(
        "flyte-authorization",
        format!("Bearer {good}").parse().unwrap(),
    );
    assert!(s.identity().await.user_info(r).await.is_ok());

    let mut r = tonic::Request::new(v1::UserInfoRequest {});
    r.metadata_mut()
        .insert("authorization", format!("Bearer {good}").parse().unwrap());
    r.metadata_mut()
        .insert("flyte-authorization", "Bearer garbage".parse().unwrap());
    let err = s.identity().await.user_info(r).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn user_only_tokens_pass_the_blanket_rule_but_client_tokens_need_all() {
    let s = TestServer::start().await;
    let mut c = s.claims();
    c.as_object_mut().unwrap().remove("scp");
    c.as_object_mut().unwrap().remove("client_id");
    assert!(user_info(&s, "authorization", &s.mint(&c)).await.is_ok());

    let mut c = s.claims();
    c.as_object_mut().unwrap().remove("scp");
    let err = user_info(&s, "authorization", &s.mint(&c))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_old_key_still_validates_and_tokens_without_kid_use_the_current_key() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let old_pem = generate_pem(SigningAlg::RS256).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/token_rsa_key_old.pem"), &old_pem).unwrap();
    let s = TestServer::start_in(dir, "").await;
    let old = SigningKey::from_pem(old_pem.as_bytes(), SigningAlg::RS256).unwrap();
    let jwks = s.state.keys.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][1]["kid"], old.kid());
    let u = user_info(&s, "authorization", &old.sign_jwt("at+jwt", &s.claims()))
        .await
        .unwrap();
    assert_eq!(u.subject, "alice");

    // No kid and no key_id: checked against the current key only.
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &s.claims(),
        &jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(s.dir.path().join("secrets/token_rsa_key.pem")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(user_info(&s, "authorization", &token).await.is_ok());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &s.claims(),
        &jsonwebtoken::EncodingKey::from_rsa_pem(old_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let err = user_info(&s, "authorization", &token).await.unwrap_err();
    assert_eq!(err.message(), "invalid token signature");
}

#[tokio::test]
async fn verified_tokens_are_cached_and_the_cache_is_bounded() {
    let s = TestServer::start_with("auth:\n  tokenCache: { maxEntries: 10 }\n").await;
    for i in 0..30 {
        let mut c = s.claims();
        c["jti"] = json!(format!("t-{i}"));
        user_info(&s, "authorization", &s.mint(&c)).await.unwrap();
        assert!(s.state.authenticator.verifier.cache().len() <= 10);
    }
    assert!(!s.state.authenticator.verifier.cache().is_empty());
}

const RULES: &str = r#"auth:
  authorization:
    rules:
      - methods: ["flyteidl.service.AdminService/RegisterProject"]
        allowGroups: [admins]
        allowSubjects: [flytepropeller]
      - methods: ["flyteidl.service.AdminService/*"]
        allowScopes: [all]
"#;

#[tokio::test]
async fn authorization_rules_deny_with_permission_denied() {
    use flyteauth::pb::flyteidl::admin as pb;
    let s = TestServer::start_with(RULES).await;
    let register = |token: String, id: &'static str| {
        let s = &s;
        async move {
            s.admin()
                .await
                .register_project(with_token(
                    pb::ProjectRegisterRequest {
                        project: Some(pb::Project {
                            id: id.into(),
                            name: id.into(),
                            ..Default::default()
                        }),
                    },
                    "authorization",
                    &token,
                ))
                .await
        }
    };
    // Group rule: alice is in admins, bob is not; subject rule: flytepropeller.
    let mut alice = s.claims();
    alice["groups"] = json!(["admins"]);
    assert!(register(s.mint(&alice), "by-alice").await.is_ok());
    let mut bob = s.claims();
    bob["sub"] = json!("bob");
    bob["groups"] = json!(["dev"]);
    let err = register(s.mint(&bob), "by-bob").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("auth.authorization.rules[0]"),
        "{}",
        err.message()
    );
    let mut propeller = s.claims();
    propeller["sub"] = json!("flytepropeller");
    assert!(register(s.mint(&propeller), "by-propeller").await.is_ok());
    // Scope rule for the rest of AdminService; bob may list.
    let list = s
        .admin()
        .await
        .list_projects(with_token(
            pb::ProjectListRequest::default(),
            "authorization",
            &s.mint(&bob),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.projects.len(), 2);
    // REST mirrors the same rules: 403.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/projects", s.url))
        .header("authorization", format!("Bearer {}", s.mint(&bob)))
        .json(&json!({"project": {"id": "rest-bob", "name": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Unmatched methods keep Flyte's default.
    assert!(user_info(&s, "authorization", &s.mint(&bob)).await.is_ok());
    // An invalid token is still UNAUTHENTICATED, never PERMISSION_DENIED.
    let err = register("garbage".into(), "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn metrics_count_decisions_without_leaking_tokens() {
    let s = TestServer::start().await;
    let token = s.token();
    user_info(&s, "authorization", &token).await.unwrap();
    let _ = user_info(&s, "authorization", "garbage").await;
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"flyteauth_authn_total{outcome="allow",reason="ok",credential="bearer"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"flyteauth_authn_total{outcome="deny",reason="malformed",credential=""} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="/flyteidl.service.IdentityService/UserInfo",kind="grpc""#));
    assert!(text.contains("flyteauth_store_up 1"));
    assert!(!text.contains(&token[..40]), "no token material in metrics");
}
