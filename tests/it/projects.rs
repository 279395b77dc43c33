//! Project semantics through gRPC, on SQLite and on PostgreSQL, and across a restart.

use std::sync::Arc;

use flyteauth::pb::flyteidl::admin as pb;
use tonic::Code;

use crate::support::{with_token, TestServer};

fn project(id: &str, name: &str) -> pb::Project {
    pb::Project {
        id: id.into(),
        name: name.into(),
        description: format!("{name} description"),
        labels: Some(pb::Labels {
            values: [("team".to_string(), "ml".to_string())].into(),
        }),
        ..Default::default()
    }
}

async fn register(s: &TestServer, p: pb::Project) -> Result<(), tonic::Status> {
    s.admin()
        .await
        .register_project(with_token(
            pb::ProjectRegisterRequest { project: Some(p) },
            "flyte-authorization",
            &s.token(),
        ))
        .await
        .map(|_| ())
}

async fn list(s: &TestServer, req: pb::ProjectListRequest) -> Result<pb::Projects, tonic::Status> {
    s.admin()
        .await
        .list_projects(with_token(req, "flyte-authorization", &s.token()))
        .await
        .map(|r| r.into_inner())
}

async fn project_semantics(s: &TestServer) {
    register(s, project("flytesnacks", "Flyte Snacks"))
        .await
        .unwrap();
    let err = register(s, project("flytesnacks", "again"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    for (bad, why) in [
        (project("Bad_Id", "x"), "invalid project id"),
        (project("ok", ""), "missing project_name"),
        (
            pb::Project {
                domains: vec![pb::Domain {
                    id: "d".into(),
                    name: "d".into(),
                }],
                ..project("ok", "x")
            },
            "domains",
        ),
        (
            pb::Project {
                labels: Some(pb::Labels {
                    values: [("Bad Key".to_string(), "v".to_string())].into(),
                }),
                ..project("ok", "x")
            },
            "invalid label key",
        ),
    ] {
        let err = register(s, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(why), "{err:?}");
    }

    let got = s
        .admin()
        .await
        .get_project(with_token(
            pb::ProjectGetRequest {
                id: "flytesnacks".into(),
                org: String::new(),
            },
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Flyte Snacks");
    assert_eq!(got.domains.len(), 3, "domains come from admin.domains");
    assert_eq!(got.labels.unwrap().values["team"], "ml");

    let err = s
        .admin()
        .await
        .update_project(with_token(
            project("nope", "x"),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut updated = project("flytesnacks", "Renamed");
    updated.description = "new".into();
    s.admin()
        .await
        .update_project(with_token(updated, "authorization", &s.token()))
        .await
        .unwrap();

    for i in 0..5 {
        register(s, project(&format!("p{i}"), &format!("Project {i}")))
            .await
            .unwrap();
    }
    let mut archived = project("p4", "Project 4");
    archived.state = pb::project::ProjectState::Archived as i32;
    s.admin()
        .await
        .update_project(with_token(archived, "authorization", &s.token()))
        .await
        .unwrap();

    // Default listing hides archived projects; pages chain through `token`.
    let page1 = list(
        s,
        pb::ProjectListRequest {
            limit: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page1.projects.len(), 3);
    assert_eq!(page1.token, "3");
    let page2 = list(
        s,
        pb::ProjectListRequest {
            limit: 3,
            token: page1.token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<_> = page1
        .projects
        .iter()
        .chain(&page2.projects)
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(ids, vec!["flytesnacks", "p0", "p1", "p2", "p3"]);
    assert_eq!(page2.token, "");

    let f = list(
        s,
        pb::ProjectListRequest {
            filters: "eq(state,1)".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        f.projects.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["p4"]
    );
    let f = list(
        s,
        pb::ProjectListRequest {
            filters: "contains(name,Renamed)".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(f.projects.len(), 1);
    let sorted = list(
        s,
        pb::ProjectListRequest {
            sort_by: Some(pb::Sort {
                key: "name".into(),
                direction: pb::sort::Direction::Descending as i32,
            }),
            filters: "ne(state,1)".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        sorted.projects[0].id, "flytesnacks",
        "descending by name: \"Renamed\" first"
    );

    for bad in ["nope(state,1)", "eq(state,x)", "eq(owner,1)"] {
        let err = list(
            s,
            pb::ProjectListRequest {
                filters: bad.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    let err = list(
        s,
        pb::ProjectListRequest {
            token: "x".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let domains = s
        .admin()
        .await
        .get_domains(with_token(
            pb::GetDomainRequest {},
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        domains
            .domains
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec!["development", "staging", "production"]
    );
}

#[tokio::test]
async fn projects_on_sqlite_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let s = TestServer::start_in(dir.clone(), "").await;
    project_semantics(&s).await;
    s.stop().await;
    let s = TestServer::start_in(dir, "").await;
    let all = list(
        &s,
        pb::ProjectListRequest {
            filters: "ne(state,9)".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.projects.len(), 6);
}

/// PostgreSQL from `DATABASE_URL`; required in CI, skipped with a note elsewhere.
pub(crate) async fn postgres_database() -> Option<String> {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "DATABASE_URL must be set in CI"
        );
        eprintln!("DATABASE_URL not set: skipping the PostgreSQL case");
        return None;
    };
    use sqlx::Connection;
    let name = format!("flyteauth_it_{}", hex_id());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

fn hex_id() -> String {
    flyteauth::testing::random_bytes(6)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn projects_on_postgres_survive_a_restart() {
    let Some(url) = postgres_database().await else {
        return;
    };
    let extra = format!("database:\n  url: {url}\n");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let s = TestServer::start_in(dir.clone(), &extra).await;
    project_semantics(&s).await;
    s.stop().await;
    let s = TestServer::start_in(dir, &extra).await;
    let all = list(
        &s,
        pb::ProjectListRequest {
            filters: "ne(state,9)".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.projects.len(), 6);
    s.stop().await;
}
