//! `auth.authorization.bindings` and `auth.authorization.roles` (DESIGN.md §12): the file
//! shapes, Flyte 2's actions and built-in roles, and the validation `serve` and
//! `check-config` share (every error names the key's path).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;

/// One binding as written: a role for groups, subjects or client ids, on projects and domains.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct BindingFile {
    /// `viewer`, `contributor`, `admin`, `projectAdmin`, or a name under `roles:`.
    pub role: String,
    /// Groups from the configured `groupsClaim` (local users' `groups`, the IdP's claim).
    pub groups: Vec<String>,
    /// Token subjects (`sub`).
    pub subjects: Vec<String>,
    /// `client_credentials` callers by client id (their token's `sub` is the client id).
    pub clients: Vec<String>,
    /// Project ids, or `"*"`.
    pub projects: Vec<String>,
    /// Domain ids, or `"*"`.
    pub domains: Vec<String>,
}

/// Flyte 2's actions (`flyteidl2.common.Action`, the non-deprecated ones), as a bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Action {
    ViewFlyteInventory = 1 << 0,
    ViewFlyteExecutions = 1 << 1,
    RegisterFlyteInventory = 1 << 2,
    CreateFlyteExecutions = 1 << 3,
    AdministerProject = 1 << 4,
    ManagePermissions = 1 << 5,
    AdministerAccount = 1 << 6,
    ManageCluster = 1 << 7,
    EditExecutionRelatedAttributes = 1 << 8,
    EditClusterRelatedAttributes = 1 << 9,
    EditUnusedAttributes = 1 << 10,
    SupportSystemLogs = 1 << 11,
    ViewIdentities = 1 << 12,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::ViewFlyteInventory,
        Action::ViewFlyteExecutions,
        Action::RegisterFlyteInventory,
        Action::CreateFlyteExecutions,
        Action::AdministerProject,
        Action::ManagePermissions,
        Action::AdministerAccount,
        Action::ManageCluster,
        Action::EditExecutionRelatedAttributes,
        Action::EditClusterRelatedAttributes,
        Action::EditUnusedAttributes,
        Action::SupportSystemLogs,
        Action::ViewIdentities,
    ];

    /// The name in `flyteidl2.common.Action` without its `ACTION_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Action::ViewFlyteInventory => "VIEW_FLYTE_INVENTORY",
            Action::ViewFlyteExecutions => "VIEW_FLYTE_EXECUTIONS",
            Action::RegisterFlyteInventory => "REGISTER_FLYTE_INVENTORY",
            Action::CreateFlyteExecutions => "CREATE_FLYTE_EXECUTIONS",
            Action::AdministerProject => "ADMINISTER_PROJECT",
            Action::ManagePermissions => "MANAGE_PERMISSIONS",
            Action::AdministerAccount => "ADMINISTER_ACCOUNT",
            Action::ManageCluster => "MANAGE_CLUSTER",
            Action::EditExecutionRelatedAttributes => "EDIT_EXECUTION_RELATED_ATTRIBUTES",
            Action::EditClusterRelatedAttributes => "EDIT_CLUSTER_RELATED_ATTRIBUTES",
            Action::EditUnusedAttributes => "EDIT_UNUSED_ATTRIBUTES",
            Action::SupportSystemLogs => "SUPPORT_SYSTEM_LOGS",
            Action::ViewIdentities => "VIEW_IDENTITIES",
        }
    }

    /// `VIEW_FLYTE_INVENTORY` or `ACTION_VIEW_FLYTE_INVENTORY`.
    pub fn parse(s: &str) -> Option<Action> {
        let s = s.strip_prefix("ACTION_").unwrap_or(s);
        Action::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn bit(self) -> u16 {
        self as u16
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(pub u16);

impl Actions {
    pub const NONE: Actions = Actions(0);
    /// Every action: what `admin` grants, and what a method without a mapping needs.
    pub const ALL: Actions = Actions((1 << 13) - 1);

    pub fn of(actions: &[Action]) -> Actions {
        Actions(actions.iter().fold(0, |m, a| m | a.bit()))
    }

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn names(self) -> Vec<&'static str> {
        Action::ALL
            .into_iter()
            .filter(|a| self.0 & a.bit() != 0)
            .map(Action::name)
            .collect()
    }
}

const VIEWER: &[Action] = &[Action::ViewFlyteInventory, Action::ViewFlyteExecutions];
const CONTRIBUTOR: &[Action] = &[
    Action::ViewFlyteInventory,
    Action::ViewFlyteExecutions,
    Action::RegisterFlyteInventory,
    Action::CreateFlyteExecutions,
    Action::EditExecutionRelatedAttributes,
];
const PROJECT_ADMIN: &[Action] = &[
    Action::ViewFlyteInventory,
    Action::ViewFlyteExecutions,
    Action::RegisterFlyteInventory,
    Action::CreateFlyteExecutions,
    Action::EditExecutionRelatedAttributes,
    Action::EditClusterRelatedAttributes,
    Action::EditUnusedAttributes,
    Action::AdministerProject,
    Action::ManagePermissions,
];

/// The built-in roles (Flyte 2's `RoleType`s viewer, contributor, admin, project admin) and
/// what they grant.
pub(crate) const BUILT_IN_ROLES: [&str; 4] = ["viewer", "contributor", "projectAdmin", "admin"];

pub(crate) fn built_in(role: &str) -> Option<Actions> {
    Some(match role {
        "viewer" => Actions::of(VIEWER),
        "contributor" => Actions::of(CONTRIBUTOR),
        "projectAdmin" => Actions::of(PROJECT_ADMIN),
        "admin" => Actions::ALL,
        _ => return None,
    })
}

/// A set of names or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    Any,
    /// Sorted, deduplicated.
    Some(Vec<String>),
}

impl Names {
    fn from_list(list: &[String]) -> Names {
        if list.iter().any(|p| p == "*") {
            return Names::Any;
        }
        let mut v = list.to_vec();
        v.sort();
        v.dedup();
        Names::Some(v)
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Names::Any => true,
            Names::Some(v) => v.iter().any(|n| n == name),
        }
    }

    pub fn is_any(&self) -> bool {
        matches!(self, Names::Any)
    }
}

/// A validated binding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub index: usize,
    pub role: String,
    pub actions: Actions,
    pub groups: Vec<String>,
    pub subjects: Vec<String>,
    pub clients: Vec<String>,
    pub projects: Names,
    pub domains: Names,
}

/// Validates `bindings` and `roles` (paths under `auth.authorization`) into bindings with
/// their action sets. Unknown roles or actions and bindings that grant nothing are errors.
pub fn compile(
    bindings: &[BindingFile],
    roles: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Binding>, ConfigError> {
    let mut custom = BTreeMap::new();
    for (name, actions) in roles {
        let path = format!("auth.authorization.roles.{name}");
        if built_in(name).is_some() {
            return Err(ConfigError::new(
                path,
                "redefines a built-in role (viewer, contributor, projectAdmin, admin)",
            ));
        }
        if name.is_empty() {
            return Err(ConfigError::new(path, "a role needs a name"));
        }
        if actions.is_empty() {
            return Err(ConfigError::new(
                path,
                "grants no action: list at least one",
            ));
        }
        let mut set = Actions::NONE;
        for (i, a) in actions.iter().enumerate() {
            let action = Action::parse(a).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}[{i}]"),
                    format!(
                        "unknown action {a:?}; known: {}",
                        Actions::ALL.names().join(", ")
                    ),
                )
            })?;
            set.0 |= action.bit();
        }
        custom.insert(name.as_str(), set);
    }
    let mut out = Vec::with_capacity(bindings.len());
    for (index, b) in bindings.iter().enumerate() {
        let path = format!("auth.authorization.bindings[{index}]");
        let actions = built_in(&b.role)
            .or_else(|| custom.get(b.role.as_str()).copied())
            .ok_or_else(|| {
                let mut known: Vec<&str> = BUILT_IN_ROLES.to_vec();
                known.extend(custom.keys());
                ConfigError::new(
                    format!("{path}.role"),
                    format!("unknown role {:?}; known: {}", b.role, known.join(", ")),
                )
            })?;
        let blank = |v: &[String]| v.iter().position(|s| s.trim().is_empty());
        for (key, list) in [
            ("groups", &b.groups),
            ("subjects", &b.subjects),
            ("clients", &b.clients),
            ("projects", &b.projects),
            ("domains", &b.domains),
        ] {
            if let Some(i) = blank(list.as_slice()) {
                return Err(ConfigError::new(
                    format!("{path}.{key}[{i}]"),
                    "must not be empty",
                ));
            }
        }
        if b.groups.is_empty() && b.subjects.is_empty() && b.clients.is_empty() {
            return Err(ConfigError::new(
                path,
                "grants nothing: name at least one of groups, subjects or clients",
            ));
        }
        if b.projects.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.projects"),
                "grants nothing: list project ids or \"*\"",
            ));
        }
        if b.domains.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.domains"),
                "grants nothing: list domain ids or \"*\"",
            ));
        }
        out.push(Binding {
            index,
            role: b.role.clone(),
            actions,
            groups: b.groups.clone(),
            subjects: b.subjects.clone(),
            clients: b.clients.clone(),
            projects: Names::from_list(&b.projects),
            domains: Names::from_list(&b.domains),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(role: &str) -> BindingFile {
        BindingFile {
            role: role.into(),
            groups: vec!["g".into()],
            projects: vec!["*".into()],
            domains: vec!["development".into()],
            ..Default::default()
        }
    }

    #[test]
    fn built_in_roles_nest() {
        let v = built_in("viewer").unwrap();
        let c = built_in("contributor").unwrap();
        let p = built_in("projectAdmin").unwrap();
        let a = built_in("admin").unwrap();
        assert!(c.contains(v) && p.contains(c) && a.contains(p));
        assert!(!v.contains(Actions::of(&[Action::RegisterFlyteInventory])));
        assert!(!c.contains(Actions::of(&[Action::AdministerProject])));
        assert!(!p.contains(Actions::of(&[Action::AdministerAccount])));
        assert_eq!(a, Actions::ALL);
    }

    #[test]
    fn errors_name_the_key() {
        let none = BTreeMap::new();
        let e = compile(&[binding("viewer"), binding("owner")], &none).unwrap_err();
        assert_eq!(e.path, "auth.authorization.bindings[1].role");
        assert!(e.message.contains("owner"), "{e}");

        let mut roles = BTreeMap::new();
        roles.insert(
            "auditor".to_string(),
            vec!["VIEW_FLYTE_INVENTORY".to_string(), "READ_ALL".to_string()],
        );
        let e = compile(&[binding("auditor")], &roles).unwrap_err();
        assert_eq!(e.path, "auth.authorization.roles.auditor[1]");

        let mut b = binding("viewer");
        b.groups.clear();
        let e = compile(&[b], &none).unwrap_err();
        assert_eq!(e.path, "auth.authorization.bindings[0]");

        let mut b = binding("viewer");
        b.projects.clear();
        let e = compile(&[b], &none).unwrap_err();
        assert_eq!(e.path, "auth.authorization.bindings[0].projects");

        let mut b = binding("viewer");
        b.domains.clear();
        let e = compile(&[b], &none).unwrap_err();
        assert_eq!(e.path, "auth.authorization.bindings[0].domains");

        let mut roles = BTreeMap::new();
        roles.insert(
            "viewer".to_string(),
            vec!["VIEW_FLYTE_INVENTORY".to_string()],
        );
        let e = compile(&[], &roles).unwrap_err();
        assert_eq!(e.path, "auth.authorization.roles.viewer");

        let mut roles = BTreeMap::new();
        roles.insert("empty".to_string(), vec![]);
        assert_eq!(
            compile(&[], &roles).unwrap_err().path,
            "auth.authorization.roles.empty"
        );
    }

    #[test]
    fn custom_roles_and_wildcards() {
        let mut roles = BTreeMap::new();
        roles.insert(
            "auditor".to_string(),
            vec![
                "VIEW_FLYTE_INVENTORY".to_string(),
                "ACTION_VIEW_FLYTE_EXECUTIONS".to_string(),
            ],
        );
        let b = compile(&[binding("auditor")], &roles).unwrap();
        assert_eq!(b[0].actions, built_in("viewer").unwrap());
        assert!(b[0].projects.is_any());
        assert!(b[0].domains.matches("development"));
        assert!(!b[0].domains.matches("production"));
    }
}
