//! The decision's cases: bindings by group, subject and client id; scopes; bodies.
use super::*;
use crate::auth::roles::config::{compile, BindingFile};
use crate::auth::{Credential, UserInfo};
use prost_reflect::ReflectMessage;

fn b(role: &str, who: (&str, &str), projects: &[&str], domains: &[&str]) -> BindingFile {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut f = BindingFile {
        role: role.into(),
        projects: v(projects),
        domains: v(domains),
        ..Default::default()
    };
    match who.0 {
        "group" => f.groups = vec![who.1.into()],
        "subject" => f.subjects = vec![who.1.into()],
        _ => f.clients = vec![who.1.into()],
    }
    f
}

fn authorizer(bindings: &[BindingFile]) -> Authorizer {
    let compiled = compile(bindings, &Default::default()).unwrap();
    Authorizer::new(Table::shared(), compiled, "groups".into(), None)
}

fn user(sub: &str, groups: &[&str]) -> Identity {
    let mut claims = serde_json::Map::new();
    claims.insert("groups".into(), serde_json::json!(groups));
    Identity {
        subject: sub.into(),
        client_id: Some("flytectl".into()),
        scopes: vec!["all".into()],
        user_info: UserInfo::default(),
        claims,
        expires_at: 0,
        token_id: None,
        credential: Credential::Bearer,
    }
}

fn client(id: &str) -> Identity {
    let mut u = user(id, &[]);
    u.client_id = Some(id.into());
    u
}

/// Encodes a request of `method` with string fields set at dotted paths.
fn proto(method: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    use prost::Message;
    let entry = Table::shared()
        .get(method.trim_start_matches('/'))
        .unwrap()
        .clone();
    let mut msg = DynamicMessage::new(entry.input.clone());
    for (path, value) in fields {
        let parts: Vec<&str> = path.split('.').collect();
        let mut cur = &mut msg;
        for p in &parts[..parts.len() - 1] {
            let fd = cur.descriptor().get_field_by_name(p).unwrap();
            cur = match cur.get_field_mut(&fd) {
                Value::Message(m) => m,
                _ => panic!("{p} is not a message"),
            };
        }
        cur.set_field_by_name(parts[parts.len() - 1], Value::String(value.to_string()));
    }
    msg.encode_to_vec()
}

const CREATE_EXEC: &str = "/flyteidl.service.AdminService/CreateExecution";

fn team() -> Authorizer {
    authorizer(&[
        b("viewer", ("group", "everyone"), &["*"], &["*"]),
        b(
            "contributor",
            ("group", "team-a"),
            &["a"],
            &["development", "staging"],
        ),
        b(
            "contributor",
            ("client", "flytepropeller"),
            &["a", "b"],
            &["*"],
        ),
        b("projectAdmin", ("subject", "carol"), &["c"], &["*"]),
    ])
}

#[test]
fn contributor_is_held_to_its_project_and_domains() {
    let a = team();
    let alice = user("alice", &["team-a", "everyone"]);
    let ok = proto(CREATE_EXEC, &[("project", "a"), ("domain", "development")]);
    assert_eq!(
        a.decide(&alice, CREATE_EXEC, RequestBody::Proto(&ok)),
        Decision::Allow
    );
    for (p, d) in [
        ("a", "production"),
        ("b", "development"),
        ("", "development"),
        ("a", ""),
    ] {
        let body = proto(CREATE_EXEC, &[("project", p), ("domain", d)]);
        let Decision::Deny(denied) = a.decide(&alice, CREATE_EXEC, RequestBody::Proto(&body))
        else {
            panic!("{p}/{d} allowed");
        };
        assert_eq!(denied.action, "CREATE_FLYTE_EXECUTIONS");
        let text = denied.to_string();
        assert!(
            text.contains("CREATE_FLYTE_EXECUTIONS")
                && text.contains(if p.is_empty() { "*" } else { p }),
            "{text}"
        );
        assert!(
            !text.contains("team-a"),
            "the message never names bindings: {text}"
        );
    }
    // A viewer of everything may read but not launch.
    let bob = user("bob", &["everyone"]);
    let get = "/flyteidl.service.AdminService/GetExecution";
    let body = proto(get, &[("id.project", "a"), ("id.domain", "production")]);
    assert!(a.decide(&bob, get, RequestBody::Proto(&body)).is_allow());
    let body = proto(CREATE_EXEC, &[("project", "a"), ("domain", "development")]);
    assert!(!a
        .decide(&bob, CREATE_EXEC, RequestBody::Proto(&body))
        .is_allow());
}

#[test]
fn json_bodies_are_read_by_protojson_names() {
    let a = team();
    let alice = user("alice", &["team-a"]);
    let m = "/flyteidl2.workflow.RunService/ListRuns";
    let ok = br#"{"projectId":{"organization":"o","name":"a","domain":"staging"}}"#;
    assert!(a.decide(&alice, m, RequestBody::Json(ok)).is_allow());
    let other = br#"{"project_id":{"name":"b","domain":"staging"}}"#;
    assert!(!a.decide(&alice, m, RequestBody::Json(other)).is_allow());
    // Only an org: every project of it; a project binding is not enough.
    assert!(!a
        .decide(&alice, m, RequestBody::Json(br#"{"org":"o"}"#))
        .is_allow());
    // Undecodable bodies are decided as empty (fail closed).
    assert!(!a.decide(&alice, m, RequestBody::Json(b"{")).is_allow());
    assert!(!a
        .decide(&alice, CREATE_EXEC, RequestBody::Proto(b"\xff\xff"))
        .is_allow());
}

#[test]
fn client_bindings_match_client_credentials_tokens_only() {
    let a = team();
    let body = proto(CREATE_EXEC, &[("project", "b"), ("domain", "production")]);
    assert!(a
        .decide(
            &client("flytepropeller"),
            CREATE_EXEC,
            RequestBody::Proto(&body)
        )
        .is_allow());
    // A user signed in through a client with that id is not the client.
    let mut u = user("mallory", &[]);
    u.client_id = Some("flytepropeller".into());
    assert!(!a
        .decide(&u, CREATE_EXEC, RequestBody::Proto(&body))
        .is_allow());
    // Nor is a subject binding a client binding.
    assert!(!a
        .decide(
            &user("flytepropeller", &[]),
            CREATE_EXEC,
            RequestBody::Proto(&body)
        )
        .is_allow());
}

#[test]
fn unmapped_methods_need_admin() {
    let a = authorizer(&[
        b("projectAdmin", ("subject", "carol"), &["*"], &["*"]),
        b("admin", ("subject", "root"), &["*"], &["*"]),
    ]);
    let m = "/flyteidl.service.AdminService/SomethingNew";
    let Decision::Deny(d) = a.decide(&user("carol", &[]), m, RequestBody::Empty) else {
        panic!("allowed")
    };
    assert_eq!(d.action, "admin");
    assert!(a
        .decide(&user("root", &[]), m, RequestBody::Empty)
        .is_allow());
    // Identity needs no binding.
    assert!(a
        .decide(
            &user("nobody", &[]),
            "/flyteidl.service.IdentityService/UserInfo",
            RequestBody::Empty
        )
        .is_allow());
}

#[test]
fn projects_filter_and_roles() {
    let a = team();
    let alice = user("alice", &["team-a"]);
    assert!(a.may_view_project(&alice, "a"));
    assert!(!a.may_view_project(&alice, "b"));
    assert!(a.may_view_project(&user("x", &["everyone"]), "b"));
    let roles = a.roles_of(&user("carol", &["team-a", "everyone"]));
    let names: Vec<_> = roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(names, ["viewer", "contributor", "projectAdmin"]);
    assert_eq!(roles[1].projects, ["a"]);
    // A projectAdmin registers its own project only.
    let reg = "/flyteidl.service.AdminService/RegisterProject";
    let body = proto(reg, &[("project.id", "c")]);
    assert!(a
        .decide(&user("carol", &[]), reg, RequestBody::Proto(&body))
        .is_allow());
    let body = proto(reg, &[("project.id", "d")]);
    assert!(!a
        .decide(&user("carol", &[]), reg, RequestBody::Proto(&body))
        .is_allow());
    assert!(!a
        .decide(
            &alice,
            reg,
            RequestBody::Proto(&proto(reg, &[("project.id", "a")]))
        )
        .is_allow());
}

#[test]
fn groups_claim_may_be_a_string() {
    let a = team();
    let mut u = user("dave", &[]);
    u.claims
        .insert("groups".into(), serde_json::json!("x,team-a"));
    let body = proto(CREATE_EXEC, &[("project", "a"), ("domain", "staging")]);
    assert!(a
        .decide(&u, CREATE_EXEC, RequestBody::Proto(&body))
        .is_allow());
}
