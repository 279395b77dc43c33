//! Projects and domains with FlyteAdmin's semantics (spec §2.3), shared by the gRPC
//! AdminService and its REST mirror. The service takes its store and the configured domains
//! explicitly; its errors ([`ProjectError`]) are mapped by each transport (gRPC status, REST
//! JSON) in one place each.

use std::collections::BTreeMap;

use crate::config::DomainFile;
use crate::pb::flyteidl::admin as pb;
use crate::store::{parse_filters, ProjectQuery, ProjectRecord, SortKey, Store, StoreError};

const MAX_NAME_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 300;
const DEFAULT_LIMIT: u32 = 100;

/// Why a projects call failed. The message is the one the caller sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProjectError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Any other store failure (mapped like every store error).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProjectError {
    fn invalid_argument(m: impl Into<String>) -> Self {
        Self::InvalidArgument(m.into())
    }
}

/// The projects service: the store and the configured domains.
pub(crate) struct Projects<'a> {
    store: &'a dyn Store,
    domains: &'a [DomainFile],
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn validate(project: &pb::Project, registering: bool) -> Result<(), ProjectError> {
    if project.id.is_empty() {
        return Err(ProjectError::invalid_argument("missing project_id"));
    }
    if !is_dns1123_label(&project.id) {
        return Err(ProjectError::invalid_argument(format!(
            "invalid project id {:?}: must be a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)",
            project.id
        )));
    }
    if registering && project.name.trim().is_empty() {
        return Err(ProjectError::invalid_argument("missing project_name"));
    }
    if project.name.chars().count() > MAX_NAME_LEN {
        return Err(ProjectError::invalid_argument(format!(
            "project_name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if project.description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ProjectError::invalid_argument(format!(
            "project_description is longer than {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    if !project.domains.is_empty() {
        return Err(ProjectError::invalid_argument(
            "domains are currently only set system wide; remove them from the request",
        ));
    }
    if pb::project::ProjectState::try_from(project.state).is_err() {
        return Err(ProjectError::invalid_argument(format!(
            "invalid project state {}",
            project.state
        )));
    }
    if let Some(labels) = &project.labels {
        for (k, v) in &labels.values {
            if !is_dns1123_label(k) {
                return Err(ProjectError::invalid_argument(format!(
                    "invalid label key {k:?}: must be a DNS-1123 label"
                )));
            }
            if !is_dns1123_label(v) {
                return Err(ProjectError::invalid_argument(format!(
                    "invalid label value {v:?} for key {k:?}: must be a DNS-1123 label"
                )));
            }
        }
    }
    Ok(())
}

fn to_record(p: &pb::Project) -> ProjectRecord {
    ProjectRecord {
        id: p.id.clone(),
        org: p.org.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        labels: p
            .labels
            .as_ref()
            .map(|l| {
                l.values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        state: p.state,
    }
}

fn domains(domains: &[DomainFile]) -> Vec<pb::Domain> {
    domains
        .iter()
        .map(|d| pb::Domain {
            id: d.id.clone(),
            name: d.name.clone(),
        })
        .collect()
}

fn from_record(r: ProjectRecord, domains: Vec<pb::Domain>) -> pb::Project {
    pb::Project {
        id: r.id,
        name: r.name,
        domains,
        description: r.description,
        labels: Some(pb::Labels {
            values: r
                .labels
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        }),
        state: r.state,
        org: r.org,
    }
}

fn not_found(id: &str) -> ProjectError {
    ProjectError::NotFound(format!("project {id:?} not found"))
}

impl<'a> Projects<'a> {
    pub(crate) fn new(store: &'a dyn Store, domains: &'a [DomainFile]) -> Self {
        Self { store, domains }
    }

    pub(crate) async fn register(
        &self,
        req: pb::ProjectRegisterRequest,
    ) -> Result<(), ProjectError> {
        let project = req
            .project
            .ok_or_else(|| ProjectError::invalid_argument("missing project"))?;
        validate(&project, true)?;
        self.store
            .create_project(&to_record(&project))
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => ProjectError::AlreadyExists(format!(
                    "project with id {:?} already exists",
                    project.id
                )),
                other => other.into(),
            })
    }

    pub(crate) async fn update(&self, project: pb::Project) -> Result<(), ProjectError> {
        validate(&project, false)?;
        let existing = self.get_record(&project.org, &project.id).await?;
        let mut record = to_record(&project);
        if record.name.is_empty() {
            record.name = existing.name;
        }
        self.store
            .update_project(&record)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => not_found(&project.id),
                other => other.into(),
            })
    }

    async fn get_record(&self, org: &str, id: &str) -> Result<ProjectRecord, ProjectError> {
        self.store.get_project(org, id).await.map_err(|e| match e {
            StoreError::NotFound => not_found(id),
            other => other.into(),
        })
    }

    pub(crate) async fn get(
        &self,
        req: pb::ProjectGetRequest,
    ) -> Result<pb::Project, ProjectError> {
        if req.id.is_empty() {
            return Err(ProjectError::invalid_argument("missing project_id"));
        }
        Ok(from_record(
            self.get_record(&req.org, &req.id).await?,
            domains(self.domains),
        ))
    }

    pub(crate) async fn list(
        &self,
        req: pb::ProjectListRequest,
    ) -> Result<pb::Projects, ProjectError> {
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n => n,
        };
        let offset: u64 = if req.token.is_empty() {
            0
        } else {
            req.token
                .parse()
                .map_err(|_| ProjectError::invalid_argument("invalid pagination token"))?
        };
        let mut filters = parse_filters(&req.filters)?;
        // Like FlyteAdmin: without filters, archived projects are not listed.
        if req.filters.trim().is_empty() {
            filters = parse_filters(&format!(
                "ne(state,{})",
                pb::project::ProjectState::Archived as i32
            ))?;
        }
        let (sort_key, ascending) = match &req.sort_by {
            None => (SortKey::Identifier, true),
            Some(s) => {
                let key = match s.key.as_str() {
                    "" | "identifier" | "id" => SortKey::Identifier,
                    "name" => SortKey::Name,
                    "created_at" => SortKey::CreatedAt,
                    other => {
                        return Err(ProjectError::invalid_argument(format!(
                            "cannot sort by {other:?}; use identifier, name or created_at"
                        )))
                    }
                };
                (key, s.direction == pb::sort::Direction::Ascending as i32)
            }
        };
        let records = self
            .store
            .list_projects(&ProjectQuery {
                org: req.org.clone(),
                filters,
                sort_key,
                ascending,
                limit,
                offset,
            })
            .await?;
        let token = if records.len() == limit as usize {
            (offset + records.len() as u64).to_string()
        } else {
            String::new()
        };
        let domains = domains(self.domains);
        Ok(pb::Projects {
            projects: records
                .into_iter()
                .map(|r| from_record(r, domains.clone()))
                .collect(),
            token,
        })
    }

    pub(crate) fn get_domains(&self) -> pb::GetDomainsResponse {
        pb::GetDomainsResponse {
            domains: domains(self.domains),
        }
    }
}

/// Labels as a sorted map (REST output is stable).
pub(crate) fn sorted_labels(p: &pb::Project) -> BTreeMap<String, String> {
    p.labels
        .as_ref()
        .map(|l| {
            l.values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123() {
        assert!(is_dns1123_label("flytesnacks"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label("a_b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1123_label(""));
    }
}
