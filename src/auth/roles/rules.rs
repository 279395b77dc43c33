//! The policy half of the table, the part to review: which action each RPC needs
//! ([`RULES`], then [`generic_action`], else admin) and where the descriptor search is
//! overridden ([`SCOPE_OVERRIDES`]). [`super::table`] applies it to the descriptors.

use super::config::{Action, Actions};

/// The flyteidl v1 services the table covers (DESIGN.md §12). `WatchService` is not in the
/// published flyteidl 1.16 package; its rule is kept so it maps once the descriptors have it.
pub(crate) const SERVICES_V1: &[&str] = &[
    "flyteidl.service.AdminService",
    "flyteidl.service.DataProxyService",
    "flyteidl.service.SignalService",
    "flyteidl.service.WatchService",
    "flyteidl.service.IdentityService",
];

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller (the caller's own identity).
    Authenticated,
    /// This action on the request's scope.
    Action(Action),
    /// Every action (the `admin` role): methods without a mapping.
    Admin,
}

impl Need {
    pub fn actions(self) -> Actions {
        match self {
            Need::Authenticated => Actions::NONE,
            Need::Action(a) => Actions::of(&[a]),
            Need::Admin => Actions::ALL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Need::Authenticated => "AUTHENTICATED",
            Need::Action(a) => a.name(),
            Need::Admin => "admin",
        }
    }
}

use Action::*;

/// Explicit actions, first match wins. `*/Get*` style patterns match method names in any
/// service.
pub(crate) const RULES: &[(&str, Need)] = &[
    // The caller's own identity and the anonymous metadata services.
    ("flyteidl.service.IdentityService/*", Need::Authenticated),
    ("flyteidl2.auth.IdentityService/*", Need::Authenticated),
    (
        "flyteidl.service.AuthMetadataService/*",
        Need::Authenticated,
    ),
    ("flyteidl2.auth.AuthMetadataService/*", Need::Authenticated),
    // Flyte 1: projects and domains.
    (
        "flyteidl.service.AdminService/RegisterProject",
        Need::Action(AdministerProject),
    ),
    (
        "flyteidl.service.AdminService/UpdateProject",
        Need::Action(AdministerProject),
    ),
    (
        "flyteidl.service.AdminService/GetProject",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/ListProjects",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/GetDomains",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/GetVersion",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 1: matchable attributes (execution queues, resources, cluster labels, ...).
    (
        "flyteidl.service.AdminService/Update*Attributes",
        Need::Action(EditExecutionRelatedAttributes),
    ),
    (
        "flyteidl.service.AdminService/Delete*Attributes",
        Need::Action(EditExecutionRelatedAttributes),
    ),
    (
        "flyteidl.service.AdminService/Get*Attributes",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/ListMatchableAttributes",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 1: inventory (tasks, workflows, launch plans, named entities).
    (
        "flyteidl.service.AdminService/CreateTask",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/CreateWorkflow",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/CreateLaunchPlan",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/UpdateLaunchPlan",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/UpdateNamedEntity",
        Need::Action(RegisterFlyteInventory),
    ),
    // Flyte 1: executions, and the events propeller reports about them.
    (
        "flyteidl.service.AdminService/CreateExecution",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/RelaunchExecution",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/RecoverExecution",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/UpdateExecution",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/TerminateExecution",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/Create*Event",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/Get*Execution*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/List*Execution*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/GetDynamicNodeWorkflow",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl.service.AdminService/Get*",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl.service.AdminService/List*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 1: data proxy (fast-registration uploads; execution inputs/outputs), signals.
    (
        "flyteidl.service.DataProxyService/CreateUploadLocation",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl.service.DataProxyService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl.service.SignalService/ListSignals",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl.service.SignalService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl.service.WatchService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    // Flyte 2: the action queue the executor drives.
    (
        "flyteidl2.actions.ActionsService/WatchForUpdates",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.actions.ActionsService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    // Flyte 2: apps.
    (
        "flyteidl2.app.AppLogsService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.app.AppService/Create",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.app.AppService/Update",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.app.AppService/Delete",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.app.AppService/UpdateStatus",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.app.AppService/Lease",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.app.AppService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: artifacts.
    (
        "flyteidl2.artifact.ArtifactService/CreateArtifact",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.artifact.ArtifactService/DeclareArtifact",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.artifact.ArtifactService/DeleteArtifact",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.artifact.ArtifactService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: the task cache (read by runs, written by the executor).
    (
        "flyteidl2.cacheservice.CacheService/Get",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.cacheservice.CacheService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.cacheservice.v2.CacheService/Get",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.cacheservice.v2.CacheService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.cluster.ClusterService/*",
        Need::Action(ManageCluster),
    ),
    // Flyte 2: connectors.
    (
        "flyteidl2.connector.AsyncConnectorService/CreateTask",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.connector.AsyncConnectorService/DeleteTask",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.connector.AsyncConnectorService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.connector.ConnectorMetadataService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: data proxy.
    (
        "flyteidl2.dataproxy.DataProxyService/CreateUploadLocation",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.dataproxy.DataProxyService/UploadInputs",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.dataproxy.DataProxyService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.imagebuilder.ImageService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: the organisation's domains and projects.
    (
        "flyteidl2.org.DomainService/ListDomains",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.org.DomainService/GetDomain",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.org.DomainService/*",
        Need::Action(AdministerAccount),
    ),
    (
        "flyteidl2.project.ProjectService/CreateProject",
        Need::Action(AdministerProject),
    ),
    (
        "flyteidl2.project.ProjectService/UpdateProject",
        Need::Action(AdministerProject),
    ),
    (
        "flyteidl2.project.ProjectService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: secrets (metadata readable by viewers; values never leave the backend).
    (
        "flyteidl2.secret.SecretService/GetSecret",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.secret.SecretService/ListSecrets",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.secret.SecretService/*",
        Need::Action(AdministerProject),
    ),
    (
        "flyteidl2.settings.SettingsService/GetSettings",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.settings.SettingsService/*",
        Need::Action(AdministerProject),
    ),
    // Flyte 2: tasks and triggers.
    (
        "flyteidl2.task.TaskService/DeployTask",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.task.TaskService/*",
        Need::Action(ViewFlyteInventory),
    ),
    (
        "flyteidl2.trigger.TriggerService/DeployTrigger",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.trigger.TriggerService/UpdateTriggers",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.trigger.TriggerService/DeleteTriggers",
        Need::Action(RegisterFlyteInventory),
    ),
    (
        "flyteidl2.trigger.TriggerService/*",
        Need::Action(ViewFlyteInventory),
    ),
    // Flyte 2: runs and actions.
    (
        "flyteidl2.workflow.EventsProxyService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.InternalRunService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.QueueService/*",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunLogsService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunService/CreateRun",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunService/AbortRun",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunService/AbortAction",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunService/SignalEvent",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.RunService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.StateService/Put",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.StateService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.TrackedRunService/CreateRun",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.TrackedRunService/ReportActions",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.TrackedRunService/AbortRun",
        Need::Action(CreateFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.TrackedRunService/*",
        Need::Action(ViewFlyteExecutions),
    ),
    (
        "flyteidl2.workflow.TranslatorService/*",
        Need::Action(ViewFlyteInventory),
    ),
];

/// Where a method's scope comes from, when the descriptor search would get it wrong.
pub(crate) enum ScopeOverride {
    /// Decided without a project: any binding that grants the action (list calls filtered
    /// by flyteauth, the domain list, the version).
    Anywhere,
    /// These field paths (dotted, proto names): project, domain (may be empty), org; several
    /// are alternatives (a oneof), the first one set decides.
    Paths(&'static [(&'static str, &'static str, &'static str)]),
}

/// A workflow execution id's fields under `prefix`.
macro_rules! execution {
    ($prefix:literal) => {
        ScopeOverride::Paths(&[(
            concat!($prefix, ".project"),
            concat!($prefix, ".domain"),
            concat!($prefix, ".org"),
        )])
    };
}

pub(crate) const SCOPE_OVERRIDES: &[(&str, ScopeOverride)] = &[
    (
        "flyteidl.service.AdminService/ListProjects",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl.service.AdminService/GetDomains",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl.service.AdminService/GetVersion",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl2.project.ProjectService/ListProjects",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl2.org.DomainService/ListDomains",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl2.workflow.TranslatorService/*",
        ScopeOverride::Anywhere,
    ),
    (
        "flyteidl.service.AdminService/RegisterProject",
        ScopeOverride::Paths(&[("project.id", "", "project.org")]),
    ),
    (
        "flyteidl.service.AdminService/UpdateProject",
        ScopeOverride::Paths(&[("id", "", "org")]),
    ),
    (
        "flyteidl.service.AdminService/GetProject",
        ScopeOverride::Paths(&[("id", "", "org")]),
    ),
    (
        "flyteidl2.project.ProjectService/CreateProject",
        ScopeOverride::Paths(&[("project.id", "", "project.org")]),
    ),
    (
        "flyteidl2.project.ProjectService/UpdateProject",
        ScopeOverride::Paths(&[("project.id", "", "project.org")]),
    ),
    (
        "flyteidl2.project.ProjectService/GetProject",
        ScopeOverride::Paths(&[("id", "", "org")]),
    ),
    (
        "flyteidl2.org.DomainService/GetDomain",
        ScopeOverride::Anywhere,
    ),
    // Task and node executions belong to the workflow execution's project, not to the
    // project of the task or entity they run (which may be another one).
    (
        "flyteidl.service.AdminService/GetTaskExecution",
        execution!("id.node_execution_id.execution_id"),
    ),
    (
        "flyteidl.service.AdminService/GetTaskExecutionData",
        execution!("id.node_execution_id.execution_id"),
    ),
    (
        "flyteidl.service.AdminService/ListNodeExecutionsForTask",
        execution!("task_execution_id.node_execution_id.execution_id"),
    ),
    (
        "flyteidl.service.AdminService/CreateTaskEvent",
        execution!("event.parent_node_execution_id.execution_id"),
    ),
    (
        "flyteidl.service.AdminService/CreateNodeEvent",
        execution!("event.id.execution_id"),
    ),
    // A run is created in its run id's or project id's project, not in its task's.
    (
        "flyteidl2.workflow.*/CreateRun",
        ScopeOverride::Paths(&[
            ("run_id.project", "run_id.domain", "run_id.org"),
            (
                "project_id.name",
                "project_id.domain",
                "project_id.organization",
            ),
        ]),
    ),
];

/// Actions for methods no rule names (a newer package): reads are views, executions are
/// created, anything else needs admin.
pub(crate) fn generic_action(method: &str) -> Option<(Need, &'static str)> {
    let execution = ["Execution", "Run", "Action", "Log", "Signal", "Event"]
        .iter()
        .any(|w| method.contains(w));
    let read = ["Get", "List", "Watch", "Describe", "Tail"]
        .iter()
        .any(|p| method.starts_with(p));
    if read {
        let a = if execution {
            ViewFlyteExecutions
        } else {
            ViewFlyteInventory
        };
        return Some((Need::Action(a), "generic: Get*/List*/Watch* → view"));
    }
    if (method.starts_with("Create") && method.ends_with("Execution")) || method == "CreateRun" {
        return Some((
            Need::Action(CreateFlyteExecutions),
            "generic: Create*Execution → create executions",
        ));
    }
    None
}

/// `Svc/Method`, `Svc/*`, `Svc/Get*`, `Svc/Get*Execution*` (`*` anywhere in the method part,
/// any number of them; the service part may hold `*` too: `flyteidl2.workflow.*`, `*`).
pub(super) fn pattern_matches(pattern: &str, method: &str) -> bool {
    let (Some((ps, pm)), Some((ms, mm))) = (pattern.split_once('/'), method.split_once('/')) else {
        return false;
    };
    glob(ps, ms) && glob(pm, mm)
}

fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
