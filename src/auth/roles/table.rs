//! The authorization table: every RPC → the action it needs and where its project, domain
//! and org are read from in the request. The policy to review is in [`super::rules`]; this
//! file applies it to the descriptors.
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

use super::rules::pattern_matches;
pub(crate) use super::rules::{
    generic_action, Need, ScopeOverride, RULES, SCOPE_OVERRIDES, SERVICES_V1,
};

/// flyteidl 1.16's services, as `flyteidl` on PyPI publishes them.
pub(crate) const FLYTEIDL_V1: &[u8] = include_bytes!("../../../proto/descriptors/flyteidl.binpb");
/// flyteidl2 as `flyte` 2.12 installs it.
pub(crate) const FLYTEIDL_V2: &[u8] = include_bytes!("../../../proto/descriptors/flyteidl2.binpb");

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
mod tests;
