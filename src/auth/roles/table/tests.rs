//! The table built from the vendored descriptors: every method mapped, scopes found.
use super::*;
use crate::auth::roles::config::Action::*;

#[test]
fn patterns() {
    assert!(pattern_matches("a.S/*", "a.S/Get"));
    assert!(pattern_matches("a.S/Get*", "a.S/GetX"));
    assert!(pattern_matches(
        "a.S/Update*Attributes",
        "a.S/UpdateProjectAttributes"
    ));
    assert!(!pattern_matches(
        "a.S/Update*Attributes",
        "a.S/UpdateProject"
    ));
    assert!(!pattern_matches("a.S/Get", "a.S/GetX"));
    assert!(!pattern_matches("a.S/*", "a.T/Get"));
    assert!(pattern_matches("a.S/Get*Execution*", "a.S/GetExecution"));
    assert!(pattern_matches(
        "a.S/Get*Execution*",
        "a.S/GetTaskExecutionData"
    ));
    assert!(!pattern_matches("a.S/Get*Execution*", "a.S/GetTask"));
    assert!(pattern_matches("*/CreateRun", "b.T/CreateRun"));
}

/// Every method of the covered services has a row; only deliberate ones need admin, and
/// every method that needs an action on a project finds one in its request.
#[test]
fn every_method_is_mapped() {
    let t = Table::flyte();
    let count = t.entries().count();
    assert!(count > 180, "{count} methods");
    let admin: Vec<_> = t
        .entries()
        .filter(|e| e.need == Need::Admin)
        .map(|e| e.method.clone())
        .collect();
    assert!(admin.is_empty(), "methods falling back to admin: {admin:?}");
    for m in [
        "flyteidl.service.AdminService/CreateExecution",
        "flyteidl.service.DataProxyService/CreateUploadLocation",
        "flyteidl.service.SignalService/SetSignal",
        "flyteidl2.workflow.RunService/CreateRun",
        "flyteidl2.artifact.ArtifactService/ListPartitionValues",
    ] {
        assert!(t.get(m).is_some(), "{m} missing");
    }
}

fn scope_of(t: &Table, m: &str) -> String {
    let e = t.get(m).unwrap_or_else(|| panic!("{m}"));
    match &e.scope {
        Scope::Anywhere => "anywhere".into(),
        Scope::Everywhere => "everywhere".into(),
        Scope::Fields(a) => a
            .iter()
            .map(|a| {
                format!(
                    "{}|{}",
                    a.project,
                    a.domain
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[test]
fn scopes_come_from_identifiers() {
    let t = Table::flyte();
    assert_eq!(
        scope_of(&t, "flyteidl.service.AdminService/CreateExecution"),
        "project|domain"
    );
    assert_eq!(
        scope_of(&t, "flyteidl.service.AdminService/GetTask"),
        "id.project|id.domain"
    );
    assert_eq!(
        scope_of(&t, "flyteidl.service.AdminService/RegisterProject"),
        "project.id|"
    );
    assert_eq!(
        scope_of(&t, "flyteidl.service.AdminService/ListProjects"),
        "anywhere"
    );
    assert_eq!(
        scope_of(&t, "flyteidl.service.AdminService/ListNodeExecutions"),
        "workflow_execution_id.project|workflow_execution_id.domain"
    );
    assert!(scope_of(&t, "flyteidl2.workflow.RunService/ListRuns")
        .contains("project_id.name|project_id.domain"));
    assert_eq!(
        t.get("flyteidl.service.AdminService/CreateTask")
            .unwrap()
            .need,
        Need::Action(RegisterFlyteInventory)
    );
    assert_eq!(
        t.get("flyteidl.service.AdminService/ListExecutions")
            .unwrap()
            .need,
        Need::Action(ViewFlyteExecutions)
    );
}
