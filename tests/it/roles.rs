//! Roles on projects and domains (`auth.authorization.bindings`, DESIGN.md §12) on
//! flyteauth's own project RPCs, through gRPC and REST; config errors; no bindings = as before.

use flyteauth::pb::flyteidl::admin as pb;
use serde_json::{json, Value};
use tonic::Code;

use crate::support::{with_token, TestServer};

const BINDINGS: &str = r#"
auth:
  authorization:
    bindings:
      - { role: admin, groups: [admins], projects: ["*"], domains: ["*"] }
      - { role: viewer, groups: [viewers], projects: [alpha], domains: ["*"] }
      - { role: contributor, groups: [team-a], projects: [alpha], domains: [development] }
      - { role: projectAdmin, subjects: [carol], projects: [gamma], domains: ["*"] }
      - { role: auditor, clients: [flytepropeller], projects: ["*"], domains: ["*"] }
    roles:
      auditor: [VIEW_FLYTE_INVENTORY, VIEW_FLYTE_EXECUTIONS]
"#;

fn token(s: &TestServer, sub: &str, groups: &[&str]) -> String {
    let mut c = s.claims();
    c["sub"] = json!(sub);
    c["groups"] = json!(groups);
    s.mint(&c)
}

fn project(id: &str) -> pb::Project {
    pb::Project {
        id: id.into(),
        name: id.into(),
        ..Default::default()
    }
}

async fn register(s: &TestServer, tok: &str, id: &str) -> Result<(), tonic::Status> {
    s.admin()
        .await
        .register_project(with_token(
            pb::ProjectRegisterRequest {
                project: Some(project(id)),
            },
            "flyte-authorization",
            tok,
        ))
        .await
        .map(|_| ())
}

async fn list(s: &TestServer, tok: &str) -> Result<Vec<String>, tonic::Status> {
    let r = s
        .admin()
        .await
        .list_projects(with_token(
            pb::ProjectListRequest::default(),
            "flyte-authorization",
            tok,
        ))
        .await?;
    let mut ids: Vec<String> = r.into_inner().projects.into_iter().map(|p| p.id).collect();
    ids.sort();
    Ok(ids)
}

async fn get(s: &TestServer, tok: &str, id: &str) -> Result<pb::Project, tonic::Status> {
    s.admin()
        .await
        .get_project(with_token(
            pb::ProjectGetRequest {
                id: id.into(),
                org: String::new(),
            },
            "flyte-authorization",
            tok,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn bindings_decide_the_project_rpcs() {
    let s = TestServer::start_with(BINDINGS).await;
    let admin = token(&s, "root", &["admins"]);
    for p in ["alpha", "beta", "gamma"] {
        register(&s, &admin, p).await.unwrap();
    }

    // A viewer of alpha sees alpha only, and cannot register.
    let viewer = token(&s, "vera", &["viewers"]);
    assert_eq!(list(&s, &viewer).await.unwrap(), ["alpha"]);
    get(&s, &viewer, "alpha").await.unwrap();
    let e = get(&s, &viewer, "beta").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("VIEW_FLYTE_INVENTORY") && e.message().contains("beta"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("viewers"), "{}", e.message());
    let e = register(&s, &viewer, "alpha2").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("ADMINISTER_PROJECT"),
        "{}",
        e.message()
    );

    // A contributor registers inventory, not projects.
    let contributor = token(&s, "alice", &["team-a"]);
    assert_eq!(
        register(&s, &contributor, "delta")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // A project admin registers and updates its own project only.
    let carol = token(&s, "carol", &[]);
    assert_eq!(list(&s, &carol).await.unwrap(), ["gamma"]);
    assert_eq!(
        register(&s, &carol, "epsilon").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let mut g = project("gamma");
    g.description = "by carol".into();
    s.admin()
        .await
        .update_project(with_token(g.clone(), "flyte-authorization", &carol))
        .await
        .unwrap();
    g.id = "beta".into();
    let e = s
        .admin()
        .await
        .update_project(with_token(g, "flyte-authorization", &carol))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(get(&s, &admin, "beta").await.unwrap().description, "");

    // A client binding: client_credentials tokens (sub = client id) only.
    let mut c = s.claims();
    c["sub"] = json!("flytepropeller");
    c["client_id"] = json!("flytepropeller");
    let propeller = s.mint(&c);
    assert_eq!(
        list(&s, &propeller).await.unwrap(),
        ["alpha", "beta", "gamma"]
    );
    assert_eq!(
        register(&s, &propeller, "zeta").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let mut c = s.claims();
    c["client_id"] = json!("flytepropeller");
    let user_via_client = s.mint(&c);
    assert_eq!(
        list(&s, &user_via_client).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Nobody bound: no domains, no projects.
    let stranger = token(&s, "eve", &["other"]);
    let e = s
        .admin()
        .await
        .get_domains(with_token(
            pb::GetDomainRequest {},
            "flyte-authorization",
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The identity RPC needs no binding.
    s.identity()
        .await
        .user_info(with_token(
            flyteauth::pb::flyteidl::service::UserInfoRequest {},
            "flyte-authorization",
            &stranger,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn rest_mirrors_are_decided_alike() {
    let s = TestServer::start_with(BINDINGS).await;
    let admin = token(&s, "root", &["admins"]);
    for p in ["alpha", "beta"] {
        register(&s, &admin, p).await.unwrap();
    }
    let viewer = token(&s, "vera", &["viewers"]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/v1/projects", s.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ids: Vec<&str> = body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha"]);
    let r = http
        .get(format!("{}/api/v1/projects/beta", s.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{}/api/v1/projects", s.url))
        .bearer_auth(&viewer)
        .json(&json!({"project": {"id": "omega", "name": "omega"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&s, &admin, "omega").await.unwrap_err().code(),
        Code::NotFound,
        "a refused registration changes nothing"
    );
    // `/me` carries the caller's roles.
    let me: Value = http
        .get(format!("{}/me", s.url))
        .bearer_auth(token(&s, "alice", &["team-a", "viewers"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles = me["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 2, "{me}");
    assert_eq!(roles[0]["role"], "viewer");
    assert_eq!(roles[1]["role"], "contributor");
    assert_eq!(roles[1]["projects"], json!(["alpha"]));
    assert_eq!(roles[1]["domains"], json!(["development"]));
}

#[tokio::test]
async fn without_bindings_nothing_changes() {
    let s = TestServer::start().await;
    assert!(s.state.authorizer.is_none());
    let t = token(&s, "someone", &[]);
    register(&s, &t, "alpha").await.unwrap();
    assert_eq!(list(&s, &t).await.unwrap(), ["alpha"]);
    let me: Value = reqwest::Client::new()
        .get(format!("{}/me", s.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me.get("roles").is_none(), "{me}");
}

#[test]
fn bad_bindings_are_config_errors_naming_the_key() {
    use std::process::Command;
    let cases = [
        (
            "bindings: [{ role: owner, groups: [g], projects: ['*'], domains: ['*'] }]",
            "auth.authorization.bindings[0].role",
        ),
        (
            "bindings: [{ role: viewer, projects: ['*'], domains: ['*'] }]",
            "auth.authorization.bindings[0]",
        ),
        (
            "bindings: [{ role: viewer, groups: [g], projects: [], domains: ['*'] }]",
            "auth.authorization.bindings[0].projects",
        ),
        (
            "bindings: [{ role: viewer, groups: [g], projects: ['*'] }]",
            "auth.authorization.bindings[0].domains",
        ),
        (
            "roles: { auditor: [VIEW_EVERYTHING] }",
            "auth.authorization.roles.auditor[0]",
        ),
        (
            "bindings: [{ role: viewer, group: [g], projects: ['*'], domains: ['*'] }]",
            "auth.authorization.bindings[0].group",
        ),
    ];
    for (yaml, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, format!("auth:\n  authorization:\n    {yaml}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_flyteauth"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{yaml}: {stderr}");
        assert!(stderr.contains(key), "{yaml}: {stderr}");
    }
}

#[test]
fn authz_table_prints_every_method() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flyteauth"))
        .arg("authz-table")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "flyteidl.service.AdminService/CreateExecution\tCREATE_FLYTE_EXECUTIONS\tproject / domain / org",
        "flyteidl.service.AdminService/RegisterProject\tADMINISTER_PROJECT\tproject.id / - / project.org",
        "flyteidl2.artifact.ArtifactService/ListPartitionValues\tVIEW_FLYTE_INVENTORY",
    ] {
        assert!(text.contains(line), "missing {line:?}");
    }
    assert!(text.lines().count() > 180);
}

#[tokio::test]
async fn forwarded_calls_are_decided_before_they_leave() {
    let (url, seen, _up) = crate::gateway::upstream().await;
    let s = TestServer::start_with(&format!(
        "{}{BINDINGS}",
        crate::gateway::gateway_yaml(&url, "")
    ))
    .await;
    let reached = |what: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == what)
            .count()
    };
    let update = |tok: String, id: &str| {
        let mut req = with_token(project(id), "flyte-authorization", &tok);
        req.set_timeout(std::time::Duration::from_secs(10));
        req
    };
    // carol administers gamma: forwarded (the stand-in answers FAILED_PRECONDITION).
    let carol = token(&s, "carol", &[]);
    let e = s
        .admin()
        .await
        .update_project(update(carol.clone(), "gamma"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(reached("UpdateProject"), 1);
    // ... not beta, and a viewer of alpha not alpha: refused here, never forwarded.
    for (tok, id) in [(carol, "beta"), (token(&s, "vera", &["viewers"]), "alpha")] {
        let e = s
            .admin()
            .await
            .update_project(update(tok, id))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("ADMINISTER_PROJECT") && e.message().contains(id),
            "{}",
            e.message()
        );
    }
    assert_eq!(
        reached("UpdateProject"),
        1,
        "the upstream never sees a refused call"
    );
}
