//! THE authorization table: every RPC → the action it needs and where its project, domain
//! and org are read from in the request. This is the one file to review.
//!
//! It is built from the proto descriptors of the published packages (vendored as
//! FileDescriptorSets by `proto/descriptors/gen.py`): flyteidl 1.16 (flytekit's) and flyteidl2
//! (what `flyte` 2.12 installs). For each method of the services in [`SERVICES_V1`] and of
//! every `flyteidl2.*` service:
//!
//! 1. the action is the first match in [`RULES`] (method patterns: `Svc/Method`, `Svc/*`,
//!    `*/Get*`), else [`generic_action`] (`Get*`/`List*`/`Watch*` → view, `Create*Execution`
//!    / `CreateRun` → create executions), else **admin** (fail closed);
//! 2. the scope is [`SCOPE_OVERRIDES`] where listed, else found in the request message's
//!    descriptor: the shallowest message (breadth first, singular fields only) holding a
//!    `project` string field, or a `flyteidl2.common.ProjectIdentifier` (`name`, `domain`,
//!    `organization`); its sibling `domain` and `org`/`organization` fields go with it. All
//!    such messages at that depth are alternatives (oneofs); the first one set is used.
//!
//! A method with no project field at all needs its action on every project and domain
//! (`projects: ["*"]`, `domains: ["*"]`), except the few that are [`Scope::Anywhere`]
//! (listing projects and domains, the caller's own identity). `flyteauth authz-table`
//! prints the result.

use std::collections::HashMap;
use std::fmt::Write as _;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

use super::config::{Action, Actions};

/// flyteidl 1.16's services, as `flyteidl` on PyPI publishes them.
pub const FLYTEIDL_V1: &[u8] = include_bytes!("../../../proto/descriptors/flyteidl.binpb");
/// flyteidl2 as `flyte` 2.12 installs it.
pub const FLYTEIDL_V2: &[u8] = include_bytes!("../../../proto/descriptors/flyteidl2.binpb");

/// The flyteidl v1 services the table covers (DESIGN.md §12). `WatchService` is not in the
/// published flyteidl 1.16 package; its rule is kept so it maps once the descriptors have it.
pub const SERVICES_V1: &[&str] = &[
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
pub const RULES: &[(&str, Need)] = &[
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
pub enum ScopeOverride {
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

pub const SCOPE_OVERRIDES: &[(&str, ScopeOverride)] = &[
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
pub fn generic_action(method: &str) -> Option<(Need, &'static str)> {
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
fn pattern_matches(pattern: &str, method: &str) -> bool {
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

/// A field path in a request message.
#[derive(Debug, Clone)]
pub struct FieldPath(pub Vec<FieldDescriptor>);

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, fd) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            f.write_str(fd.name())?;
        }
        Ok(())
    }
}

/// Where project, domain and org are read from; one identifier message.
#[derive(Debug, Clone)]
pub struct ScopePaths {
    pub project: FieldPath,
    pub domain: Option<FieldPath>,
    pub org: Option<FieldPath>,
}

#[derive(Debug, Clone)]
pub enum Scope {
    /// See [`ScopeOverride::Anywhere`].
    Anywhere,
    /// No project in the request: needs the action on every project and domain.
    Everywhere,
    /// The first alternative whose project is set decides.
    Fields(Vec<ScopePaths>),
}

/// One method's row.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `pkg.Service/Method`.
    pub method: String,
    pub need: Need,
    /// Which rule gave the action (for `authz-table`).
    pub rule: String,
    pub input: MessageDescriptor,
    pub scope: Scope,
}

/// Every mapped method.
pub struct Table {
    entries: HashMap<String, Entry>,
}

fn pool(bytes: &[u8]) -> DescriptorPool {
    DescriptorPool::decode(bytes).expect("the vendored descriptor set is valid")
}

impl Table {
    /// The table of the vendored descriptors.
    pub fn flyte() -> Table {
        let v1 = pool(FLYTEIDL_V1);
        let v2 = pool(FLYTEIDL_V2);
        let services = v1
            .services()
            .filter(|s| SERVICES_V1.contains(&s.full_name()))
            .chain(
                v2.services()
                    .filter(|s| s.full_name().starts_with("flyteidl2.")),
            );
        let mut entries = HashMap::new();
        for svc in services {
            for m in svc.methods() {
                let method = format!("{}/{}", svc.full_name(), m.name());
                let (need, rule) = match RULES.iter().find(|(p, _)| pattern_matches(p, &method)) {
                    Some((p, need)) => (*need, (*p).to_owned()),
                    None => match generic_action(m.name()) {
                        Some((need, rule)) => (need, rule.to_owned()),
                        None => (Need::Admin, "no mapping: admin (fail closed)".to_owned()),
                    },
                };
                let input = m.input();
                let scope = match SCOPE_OVERRIDES
                    .iter()
                    .find(|(p, _)| pattern_matches(p, &method))
                {
                    Some((_, ScopeOverride::Anywhere)) => Scope::Anywhere,
                    Some((_, ScopeOverride::Paths(alts))) => Scope::Fields(
                        alts.iter()
                            .map(|(p, d, o)| ScopePaths {
                                project: resolve(&input, p).unwrap_or_else(|| {
                                    panic!("{method}: no field {p} in {}", input.full_name())
                                }),
                                domain: resolve(&input, d),
                                org: resolve(&input, o),
                            })
                            .collect(),
                    ),
                    None if need == Need::Authenticated => Scope::Anywhere,
                    None => discover(&input),
                };
                entries.insert(
                    method.clone(),
                    Entry {
                        method,
                        need,
                        rule,
                        input,
                        scope,
                    },
                );
            }
        }
        Table { entries }
    }

    /// The table of the vendored descriptors, built once per process (it never changes).
    pub fn shared() -> std::sync::Arc<Table> {
        static TABLE: std::sync::OnceLock<std::sync::Arc<Table>> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| std::sync::Arc::new(Table::flyte()))
            .clone()
    }

    pub fn get(&self, method: &str) -> Option<&Entry> {
        self.entries.get(method)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The table as text, one method a line, sorted (`flyteauth authz-table`).
    pub fn render(&self) -> String {
        let mut rows: Vec<&Entry> = self.entries.values().collect();
        rows.sort_by(|a, b| a.method.cmp(&b.method));
        let mut out = String::from("method\taction\tproject / domain / org\trule\n");
        for e in rows {
            let scope = match &e.scope {
                Scope::Anywhere => "(any project: decided on the caller's bindings)".to_owned(),
                Scope::Everywhere => {
                    "(no project in the request: needs projects * and domains *)".to_owned()
                }
                Scope::Fields(alts) => alts
                    .iter()
                    .map(|a| {
                        let opt = |p: &Option<FieldPath>| {
                            p.as_ref().map_or("-".to_owned(), ToString::to_string)
                        };
                        format!("{} / {} / {}", a.project, opt(&a.domain), opt(&a.org))
                    })
                    .collect::<Vec<_>>()
                    .join(" | "),
            };
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}",
                e.method,
                e.need.name(),
                scope,
                e.rule
            );
        }
        out
    }
}

/// A dotted path of proto field names in `msg`; `None` for `""` or a missing field.
fn resolve(msg: &MessageDescriptor, path: &str) -> Option<FieldPath> {
    if path.is_empty() {
        return None;
    }
    let mut cur = msg.clone();
    let mut out = Vec::new();
    for (i, name) in path.split('.').enumerate() {
        let fd = cur.get_field_by_name(name)?;
        if i + 1 < path.split('.').count() {
            match fd.kind() {
                Kind::Message(m) => cur = m,
                _ => return None,
            }
        }
        out.push(fd);
    }
    Some(FieldPath(out))
}

fn is_string(fd: &FieldDescriptor) -> bool {
    matches!(fd.kind(), Kind::String) && !fd.is_list()
}

/// The project, domain and org fields of one message, if it has a project.
/// An identifier's project field, and its sibling domain and org fields.
type IdentifierFields = (
    FieldDescriptor,
    Option<FieldDescriptor>,
    Option<FieldDescriptor>,
);

fn identifier_fields(msg: &MessageDescriptor) -> Option<IdentifierFields> {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| msg.get_field_by_name(n).filter(is_string))
    };
    let project = if msg.full_name() == "flyteidl2.common.ProjectIdentifier" {
        field(&["name"])
    } else {
        field(&["project"])
    }?;
    Some((project, field(&["domain"]), field(&["org", "organization"])))
}

/// Breadth first through singular message fields (depth ≤ 4, well-known types skipped): the
/// identifier messages at the shallowest depth that has any.
fn discover(input: &MessageDescriptor) -> Scope {
    let mut level: Vec<(Vec<FieldDescriptor>, MessageDescriptor)> =
        vec![(Vec::new(), input.clone())];
    for _depth in 0..5 {
        let mut found = Vec::new();
        for (path, msg) in &level {
            if let Some((p, d, o)) = identifier_fields(msg) {
                let with = |f: FieldDescriptor| {
                    let mut v = path.clone();
                    v.push(f);
                    FieldPath(v)
                };
                found.push(ScopePaths {
                    project: with(p),
                    domain: d.map(with),
                    org: o.map(with),
                });
            }
        }
        if !found.is_empty() {
            return Scope::Fields(found);
        }
        let mut next = Vec::new();
        for (path, msg) in &level {
            for fd in msg.fields() {
                if fd.is_list() || fd.is_map() {
                    continue;
                }
                if let Kind::Message(m) = fd.kind() {
                    if m.full_name().starts_with("google.")
                        || path.iter().any(|p| p.full_name() == fd.full_name())
                    {
                        continue;
                    }
                    let mut v = path.clone();
                    v.push(fd.clone());
                    next.push((v, m));
                }
            }
        }
        level = next;
    }
    Scope::Everywhere
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
