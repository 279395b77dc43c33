//! The decision: may this caller do this RPC with this request? One function,
//! [`Authorizer::decide`], for flyteauth's own services and for calls it forwards.
//!
//! Bindings are indexed by group, subject and client id when the config is loaded, so a
//! decision looks up the caller's few bindings instead of scanning them all.

use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::{DynamicMessage, FieldDescriptor, Value};

use super::config::{Actions, Binding, Names};
use super::table::{Entry, FieldPath, Need, Scope, Table};
use crate::auth::Identity;
use crate::config::{AuthorizationFile, ConfigError};
use crate::metrics::{Counter, Metrics};

/// A request message as it arrived.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody<'a> {
    /// Protobuf bytes (gRPC, gRPC-web and Connect `application/proto`, after the framing).
    Proto(&'a [u8]),
    /// Connect `application/json` (protojson field names).
    Json(&'a [u8]),
    /// Nothing to read (a call whose request is not available): decided as if every field
    /// were empty.
    Empty,
}

/// Where a call lands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub project: String,
    pub domain: String,
    pub org: String,
}

/// Why a call was refused; its text is what the caller sees (never which bindings exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub method: String,
    pub action: &'static str,
    pub target: Target,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_any = |s: &str| {
            if s.is_empty() {
                "*".to_owned()
            } else {
                s.to_owned()
            }
        };
        write!(
            f,
            "permission denied: {} needs {} on project {} domain {}",
            self.method,
            self.action,
            or_any(&self.target.project),
            or_any(&self.target.domain)
        )?;
        if !self.target.org.is_empty() {
            write!(f, " (org {})", self.target.org)?;
        }
        Ok(())
    }
}

impl Denied {
    /// gRPC PERMISSION_DENIED (Connect `permission_denied`, HTTP 403 through the REST mapping).
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::permission_denied(self.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denied),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// `Ok(())` or PERMISSION_DENIED.
    pub fn into_result(self) -> Result<(), tonic::Status> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Deny(d) => Err(d.to_status()),
        }
    }
}

/// What the caller wants in a scope.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    /// Any project (domain): a binding anywhere will do.
    Any,
    /// Every project (domain): only a `*` binding.
    All,
    Name(&'a str),
}

/// A scope value from the request: empty means "every" (only a `*` binding will do).
fn want(s: &str) -> Want<'_> {
    if s.is_empty() {
        Want::All
    } else {
        Want::Name(s)
    }
}

fn names_match(names: &Names, want: Want<'_>) -> bool {
    match want {
        Want::Any => true,
        Want::All => names.is_any(),
        Want::Name(n) => names.matches(n),
    }
}

/// One of the caller's roles, for `/me` and the console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleGrant {
    pub role: String,
    pub actions: Vec<&'static str>,
    /// Project ids, or `["*"]`.
    pub projects: Vec<String>,
    pub domains: Vec<String>,
}

/// `auth.authorization.bindings` applied to calls.
pub struct Authorizer {
    table: Arc<Table>,
    bindings: Vec<Binding>,
    by_group: HashMap<String, Vec<u32>>,
    by_subject: HashMap<String, Vec<u32>>,
    by_client: HashMap<String, Vec<u32>>,
    groups_claim: String,
    /// `flyteauth_authz_decisions_total{outcome, action}`, resolved once.
    counters: HashMap<(&'static str, bool), Counter>,
}

fn index(bindings: &[Binding], pick: fn(&Binding) -> &Vec<String>) -> HashMap<String, Vec<u32>> {
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, b) in bindings.iter().enumerate() {
        for name in pick(b) {
            let v = m.entry(name.clone()).or_default();
            if v.last() != Some(&(i as u32)) {
                v.push(i as u32);
            }
        }
    }
    m
}

impl Authorizer {
    /// The authorizer of `auth.authorization`; `None` without bindings (Flyte's blanket rule
    /// and the method rules only, as before).
    pub fn from_config(
        cfg: &AuthorizationFile,
        metrics: Option<&Metrics>,
    ) -> Result<Option<Authorizer>, ConfigError> {
        let bindings = super::config::compile(&cfg.bindings, &cfg.roles)?;
        if bindings.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::new(
            Table::shared(),
            bindings,
            cfg.groups_claim.clone(),
            metrics,
        )))
    }

    pub fn new(
        table: Arc<Table>,
        bindings: Vec<Binding>,
        groups_claim: String,
        metrics: Option<&Metrics>,
    ) -> Authorizer {
        let mut counters = HashMap::new();
        if let Some(m) = metrics {
            let needs = super::config::Action::ALL
                .into_iter()
                .map(|a| a.name())
                .chain(["AUTHENTICATED", "admin"]);
            for need in needs {
                for allow in [true, false] {
                    let outcome = if allow { "allow" } else { "deny" };
                    counters.insert(
                        (need, allow),
                        m.counter(
                            "flyteauth_authz_decisions_total",
                            &[("outcome", outcome), ("action", need)],
                        ),
                    );
                }
            }
        }
        Authorizer {
            table,
            by_group: index(&bindings, |b| &b.groups),
            by_subject: index(&bindings, |b| &b.subjects),
            by_client: index(&bindings, |b| &b.clients),
            bindings,
            groups_claim,
            counters,
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The caller's bindings, each once, in config order.
    fn bindings_of<'a>(&'a self, id: &Identity) -> Vec<&'a Binding> {
        let mut idx: Vec<u32> = Vec::new();
        let mut add = |v: Option<&Vec<u32>>| {
            if let Some(v) = v {
                idx.extend_from_slice(v);
            }
        };
        add(self.by_subject.get(&id.subject));
        // A client binding is for the client's own (client_credentials) tokens, whose
        // subject is the client id — not for users who signed in through that client.
        if id.client_id.as_deref() == Some(id.subject.as_str()) {
            add(self.by_client.get(&id.subject));
        }
        for_each_group(id, &self.groups_claim, |g| add(self.by_group.get(g)));
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| &self.bindings[i as usize])
            .collect()
    }

    /// Whether any of the caller's bindings grants `need` on the scope (no allocation on the
    /// common path: a subject, a client, a few groups).
    fn grants(&self, id: &Identity, need: Actions, project: Want<'_>, domain: Want<'_>) -> bool {
        let ok = |v: Option<&Vec<u32>>| {
            v.is_some_and(|v| {
                v.iter().any(|&i| {
                    let b = &self.bindings[i as usize];
                    b.actions.contains(need)
                        && names_match(&b.projects, project)
                        && names_match(&b.domains, domain)
                })
            })
        };
        if ok(self.by_subject.get(&id.subject)) {
            return true;
        }
        if id.client_id.as_deref() == Some(id.subject.as_str())
            && ok(self.by_client.get(&id.subject))
        {
            return true;
        }
        let mut found = false;
        for_each_group(id, &self.groups_claim, |g| {
            if !found {
                found = ok(self.by_group.get(g));
            }
        });
        found
    }

    /// The decision for `method_path` (`/pkg.Service/Method`, or without the slash) with
    /// this request. Methods not in the table need admin on every project (fail closed).
    pub fn decide(&self, id: &Identity, method_path: &str, body: RequestBody<'_>) -> Decision {
        let method = method_path.trim_start_matches('/');
        let decision = match self.table.get(method) {
            Some(entry) => self.decide_entry(id, entry, body),
            None => self.decide_need(
                id,
                method,
                Need::Admin,
                &Scope::Everywhere,
                &Target::default(),
            ),
        };
        self.record(id, method, &decision);
        decision
    }

    fn decide_entry(&self, id: &Identity, entry: &Entry, body: RequestBody<'_>) -> Decision {
        let Scope::Fields(alts) = &entry.scope else {
            return self.decide_need(
                id,
                &entry.method,
                entry.need,
                &entry.scope,
                &Target::default(),
            );
        };
        let read = Reader::new(entry, body);
        // The first alternative (a oneof's identifier) whose project is set; else the first.
        let mut chosen = None;
        for a in alts {
            let t = Target {
                project: read.get(&a.project),
                domain: a.domain.as_ref().map(|d| read.get(d)).unwrap_or_default(),
                org: a.org.as_ref().map(|o| read.get(o)).unwrap_or_default(),
            };
            let has_domain = a.domain.is_some();
            if !t.project.is_empty() {
                chosen = Some((t, has_domain));
                break;
            }
            chosen.get_or_insert((t, has_domain));
        }
        let (target, has_domain) = chosen.unwrap_or_default();
        let need = entry.need.actions();
        if need == Actions::NONE {
            return Decision::Allow;
        }
        let domain = if has_domain {
            want(&target.domain)
        } else {
            Want::Any
        };
        if self.grants(id, need, want(&target.project), domain) {
            Decision::Allow
        } else {
            Decision::Deny(Denied {
                method: entry.method.clone(),
                action: entry.need.name(),
                target,
            })
        }
    }

    fn decide_need(
        &self,
        id: &Identity,
        method: &str,
        need: Need,
        scope: &Scope,
        target: &Target,
    ) -> Decision {
        let actions = need.actions();
        if actions == Actions::NONE {
            return Decision::Allow;
        }
        let (p, d) = match scope {
            Scope::Anywhere => (Want::Any, Want::Any),
            _ => (Want::All, Want::All),
        };
        if self.grants(id, actions, p, d) {
            Decision::Allow
        } else {
            Decision::Deny(Denied {
                method: method.to_owned(),
                action: need.name(),
                target: target.clone(),
            })
        }
    }

    /// Whether the caller may view `project` (in some domain): what `ListProjects` filters on.
    pub fn may_view_project(&self, id: &Identity, project: &str) -> bool {
        self.grants(
            id,
            Actions::of(&[super::config::Action::ViewFlyteInventory]),
            Want::Name(project),
            Want::Any,
        )
    }

    /// The caller's roles (for `/me` and the console).
    pub fn roles_of(&self, id: &Identity) -> Vec<RoleGrant> {
        let list = |n: &Names| match n {
            Names::Any => vec!["*".to_owned()],
            Names::Some(v) => v.clone(),
        };
        self.bindings_of(id)
            .into_iter()
            .map(|b| RoleGrant {
                role: b.role.clone(),
                actions: b.actions.names(),
                projects: list(&b.projects),
                domains: list(&b.domains),
            })
            .collect()
    }

    fn record(&self, id: &Identity, method: &str, d: &Decision) {
        let (need, allow) = match d {
            Decision::Allow => (
                self.table
                    .get(method)
                    .map_or(Need::Admin, |e| e.need)
                    .name(),
                true,
            ),
            Decision::Deny(denied) => (denied.action, false),
        };
        if let Some(c) = self.counters.get(&(need, allow)) {
            c.inc();
        }
        match d {
            Decision::Allow => {
                tracing::debug!(target: "flyteauth::audit", rpc = method, subject = %id.subject, client_id = id.client_id.as_deref().unwrap_or(""), action = need, outcome = "allow")
            }
            Decision::Deny(denied) => {
                tracing::info!(target: "flyteauth::audit", rpc = method, subject = %id.subject, client_id = id.client_id.as_deref().unwrap_or(""), action = need, project = %denied.target.project, domain = %denied.target.domain, outcome = "forbidden")
            }
        }
    }
}

/// Calls `f` with each of the caller's groups (`groupsClaim`: an array, or a space/comma
/// separated string).
fn for_each_group(id: &Identity, claim: &str, f: impl FnMut(&str)) {
    match id.claims.get(claim) {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).for_each(f),
        Some(serde_json::Value::String(s)) => {
            s.split([' ', ',']).filter(|g| !g.is_empty()).for_each(f)
        }
        _ => {}
    }
}

/// A decoded request, read by field paths.
enum Reader {
    Proto(Option<DynamicMessage>),
    Json(Option<serde_json::Value>),
}

impl Reader {
    fn new(entry: &Entry, body: RequestBody<'_>) -> Reader {
        match body {
            RequestBody::Proto(b) => {
                Reader::Proto(DynamicMessage::decode(entry.input.clone(), b).ok())
            }
            RequestBody::Json(b) => Reader::Json(serde_json::from_slice(b).ok()),
            RequestBody::Empty => Reader::Proto(None),
        }
    }

    /// The string at `path`; empty when unset or undecodable (which then needs `*`).
    fn get(&self, path: &FieldPath) -> String {
        match self {
            Reader::Proto(Some(m)) => proto_str(m, &path.0),
            Reader::Json(Some(v)) => json_str(v, &path.0),
            _ => String::new(),
        }
    }
}

fn proto_str(msg: &DynamicMessage, fields: &[FieldDescriptor]) -> String {
    match fields {
        [] => String::new(),
        [last] => msg.get_field(last).as_str().unwrap_or_default().to_owned(),
        [first, rest @ ..] => {
            if !msg.has_field(first) {
                return String::new();
            }
            match &*msg.get_field(first) {
                Value::Message(m) => proto_str(m, rest),
                _ => String::new(),
            }
        }
    }
}

fn json_str(v: &serde_json::Value, fields: &[FieldDescriptor]) -> String {
    let mut cur = v;
    for fd in fields {
        match cur.get(fd.json_name()).or_else(|| cur.get(fd.name())) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    cur.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests;
