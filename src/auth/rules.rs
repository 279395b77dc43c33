//! Per-method authorization rules (`auth.authorization`), applied after authentication. The
//! first rule whose method pattern matches decides: the caller passes if it has one of the
//! rule's scopes, groups (from the configured claim) or subjects; otherwise the call ends
//! with PERMISSION_DENIED naming the rule. Calls no rule matches keep Flyte's default (the
//! blanket scope rule, already applied by the verifier).

use serde_json::Value;

use super::Identity;
use crate::config::AuthorizationFile;

pub(crate) struct Rule {
    pub index: usize,
    pub methods: Vec<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub subjects: Vec<String>,
}

#[derive(Default)]
pub struct Rules {
    groups_claim: String,
    rules: Vec<Rule>,
}

/// A denial: which rule said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub index: usize,
    pub pattern: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "denied by authorization rule auth.authorization.rules[{}] ({})",
            self.index, self.pattern
        )
    }
}

/// `pkg.Service/Method` against a pattern: exact, `pkg.Service/*`, or `*`.
fn matches(pattern: &str, method: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => method.starts_with(prefix),
        None => pattern == method,
    }
}

impl Rules {
    pub fn from_config(cfg: &AuthorizationFile) -> Self {
        Self {
            groups_claim: cfg.groups_claim.clone(),
            rules: cfg
                .rules
                .iter()
                .enumerate()
                .map(|(index, r)| Rule {
                    index,
                    methods: r
                        .methods
                        .iter()
                        .map(|m| m.trim_start_matches('/').to_owned())
                        .collect(),
                    scopes: r.allow_scopes.clone(),
                    groups: r.allow_groups.clone(),
                    subjects: r.allow_subjects.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The caller's groups, from the configured claim (`groupsClaim`).
    pub fn groups<'a>(&self, id: &'a Identity) -> Vec<&'a str> {
        match id.claims.get(&self.groups_claim) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split([' ', ',']).filter(|g| !g.is_empty()).collect(),
            _ => Vec::new(),
        }
    }

    /// Checks `method` (`flyteidl.service.AdminService/RegisterProject`, no leading slash).
    pub fn check(&self, method: &str, id: &Identity) -> Result<(), Denied> {
        let method = method.trim_start_matches('/');
        let Some((rule, pattern)) = self.rules.iter().find_map(|r| {
            r.methods
                .iter()
                .find(|p| matches(p, method))
                .map(|p| (r, p))
        }) else {
            return Ok(());
        };
        let groups = self.groups(id);
        let allowed = rule.scopes.iter().any(|s| id.has_scope(s))
            || rule.groups.iter().any(|g| groups.contains(&g.as_str()))
            || rule.subjects.contains(&id.subject);
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                index: rule.index,
                pattern: pattern.clone(),
            })
        }
    }
}

/// The RPC a REST route mirrors, for rule matching.
pub(crate) fn rest_method(method: &http::Method, path: &str) -> Option<&'static str> {
    Some(match (method.as_str(), path) {
        ("POST", "/api/v1/projects") => "flyteidl.service.AdminService/RegisterProject",
        ("GET", "/api/v1/projects") => "flyteidl.service.AdminService/ListProjects",
        ("GET", "/api/v1/domains") => "flyteidl.service.AdminService/GetDomains",
        ("GET", "/me") => "flyteidl.service.IdentityService/UserInfo",
        ("PUT", p) if p.starts_with("/api/v1/projects/") => {
            "flyteidl.service.AdminService/UpdateProject"
        }
        ("GET", p) if p.starts_with("/api/v1/projects/") => {
            "flyteidl.service.AdminService/GetProject"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, UserInfo};
    use crate::config::{AuthorizationFile, AuthorizationRuleFile};

    fn id(sub: &str, scopes: &[&str], groups: Value) -> Identity {
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), groups);
        Identity {
            subject: sub.into(),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            user_info: UserInfo::default(),
            claims,
            expires_at: 0,
            token_id: None,
            credential: Credential::Bearer,
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let cfg = AuthorizationFile {
            groups_claim: "groups".into(),
            rules: vec![
                AuthorizationRuleFile {
                    methods: vec!["flyteidl.service.AdminService/RegisterProject".into()],
                    allow_groups: vec!["admins".into()],
                    allow_subjects: vec!["flytepropeller".into()],
                    ..Default::default()
                },
                AuthorizationRuleFile {
                    methods: vec!["flyteidl.service.AdminService/*".into()],
                    allow_scopes: vec!["all".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let r = Rules::from_config(&cfg);
        let m = "/flyteidl.service.AdminService/RegisterProject";
        assert!(r
            .check(m, &id("alice", &["all"], serde_json::json!(["admins"])))
            .is_ok());
        assert!(r.check(m, &id("flytepropeller", &[], Value::Null)).is_ok());
        let d = r
            .check(m, &id("bob", &["all"], serde_json::json!("dev users")))
            .unwrap_err();
        assert_eq!(d.index, 0);
        assert!(r
            .check(
                "flyteidl.service.AdminService/ListProjects",
                &id("bob", &["all"], Value::Null)
            )
            .is_ok());
        assert!(r
            .check(
                "flyteidl.service.AdminService/ListProjects",
                &id("bob", &["x"], Value::Null)
            )
            .is_err());
        assert!(r
            .check(
                "flyteidl.service.IdentityService/UserInfo",
                &id("bob", &[], Value::Null)
            )
            .is_ok());
    }
}
