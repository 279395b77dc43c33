//! REST mirrors agree with gRPC; 401s carry `WWW-Authenticate`; `/me` has the nginx
//! `auth_request` headers.

use flyteauth::pb::flyteidl::admin as pb;
use serde_json::{json, Value};

use crate::support::{with_token, TestServer};

#[tokio::test]
async fn rest_mirrors_agree_with_grpc() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", s.token());

    let r = http
        .post(format!("{}/api/v1/projects", s.url))
        .header("authorization", &auth)
        .json(&json!({"project": {"id": "rest-one", "name": "Rest One", "labels": {"values": {"team": "a"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // Registered over REST, read over gRPC.
    let got = s
        .admin()
        .await
        .get_project(with_token(
            pb::ProjectGetRequest {
                id: "rest-one".into(),
                org: String::new(),
            },
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Rest One");

    let p: Value = http
        .get(format!("{}/api/v1/projects/rest-one", s.url))
        .header("flyte-authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["name"], "Rest One");
    assert_eq!(p["state"], "ACTIVE");
    assert_eq!(p["org"], "", "defaults are emitted");
    assert_eq!(p["labels"]["values"]["team"], "a");
    assert_eq!(p["domains"].as_array().unwrap().len(), 3);

    let r = http
        .put(format!("{}/api/v1/projects/rest-one", s.url))
        .header("authorization", &auth)
        .json(&json!({"name": "Rest One", "description": "changed", "state": "ARCHIVED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let listed: Value = http
        .get(format!(
            "{}/api/v1/projects?filters=eq(state,1)&limit=10",
            s.url
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["projects"][0]["description"], "changed");
    assert_eq!(listed["token"], "");
    let grpc_listed = s
        .admin()
        .await
        .list_projects(with_token(
            pb::ProjectListRequest {
                filters: "eq(state,1)".into(),
                limit: 10,
                ..Default::default()
            },
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc_listed.projects.len(),
        listed["projects"].as_array().unwrap().len()
    );

    let dup = http
        .post(format!("{}/api/v1/projects", s.url))
        .header("authorization", &auth)
        .json(&json!({"project": {"id": "rest-one", "name": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["code"], 6);

    let missing = http
        .get(format!("{}/api/v1/projects/absent", s.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let bad = http
        .post(format!("{}/api/v1/projects", s.url))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let domains: Value = http
        .get(format!("{}/api/v1/domains", s.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(domains["domains"][0]["id"], "development");
}

#[tokio::test]
async fn unauthenticated_rest_calls_get_401_with_www_authenticate() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/projects",
        "/api/v1/domains",
        "/me",
        "/api/v1/projects/x",
    ] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(www.starts_with("Bearer error=\"invalid_token\""), "{www}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], 16);
    }
    let r = http
        .get(format!("{}/me", s.url))
        .header("authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("malformed token"));
    let r = http
        .get(format!("{}/healthcheck", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn me_serves_nginx_auth_request() {
    let s = TestServer::start().await;
    let r = reqwest::Client::new()
        .get(format!("{}/me", s.url))
        .header("authorization", format!("Bearer {}", s.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user-subject"], "alice");
    assert_eq!(r.headers()["x-user-claim-client-id"], "\"flytectl\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["additional_claims"]["sub"], "alice");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0 }\n  maxRequestBytes: 2048\n",
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/projects", s.url))
        .header("authorization", format!("Bearer {}", s.token()))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"project\": {{\"id\": \"big\", \"name\": \"{}\"}}}}",
            "x".repeat(10_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn request_ids_are_propagated() {
    let s = TestServer::start().await;
    let r = reqwest::Client::new()
        .get(format!("{}/healthcheck", s.url))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let r = reqwest::get(format!("{}/healthcheck", s.url))
        .await
        .unwrap();
    assert!(
        !r.headers()["x-request-id"].is_empty(),
        "one is made up when absent"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
}
