//! Projects and domains with FlyteAdmin's semantics (spec §2.3), shared by the gRPC
//! AdminService and its REST mirror.

use std::collections::BTreeMap;

use tonic::Status;

use crate::pb::flyteidl::admin as pb;
use crate::store::{parse_filters, ProjectQuery, ProjectRecord, SortKey, StoreError};
use crate::transport::state::AppState;

const MAX_NAME_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 300;
const DEFAULT_LIMIT: u32 = 100;

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Status::not_found("not found"),
            StoreError::AlreadyExists => Status::already_exists("already exists"),
            StoreError::Invalid(m) => Status::invalid_argument(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("database unavailable")
            }
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "database error");
                Status::internal("database error")
            }
        }
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn validate(project: &pb::Project, registering: bool) -> Result<(), Status> {
    if project.id.is_empty() {
        return Err(Status::invalid_argument("missing project_id"));
    }
    if !is_dns1123_label(&project.id) {
        return Err(Status::invalid_argument(format!(
            "invalid project id {:?}: must be a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)",
            project.id
        )));
    }
    if registering && project.name.trim().is_empty() {
        return Err(Status::invalid_argument("missing project_name"));
    }
    if project.name.chars().count() > MAX_NAME_LEN {
        return Err(Status::invalid_argument(format!(
            "project_name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if project.description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(Status::invalid_argument(format!(
            "project_description is longer than {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    if !project.domains.is_empty() {
        return Err(Status::invalid_argument(
            "domains are currently only set system wide; remove them from the request",
        ));
    }
    if pb::project::ProjectState::try_from(project.state).is_err() {
        return Err(Status::invalid_argument(format!(
            "invalid project state {}",
            project.state
        )));
    }
    if let Some(labels) = &project.labels {
        for (k, v) in &labels.values {
            if !is_dns1123_label(k) {
                return Err(Status::invalid_argument(format!(
                    "invalid label key {k:?}: must be a DNS-1123 label"
                )));
            }
            if !is_dns1123_label(v) {
                return Err(Status::invalid_argument(format!(
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

fn domains(state: &AppState) -> Vec<pb::Domain> {
    state
        .config
        .domains
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

pub async fn register(state: &AppState, req: pb::ProjectRegisterRequest) -> Result<(), Status> {
    let project = req
        .project
        .ok_or_else(|| Status::invalid_argument("missing project"))?;
    validate(&project, true)?;
    state
        .store
        .create_project(&to_record(&project))
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists => {
                Status::already_exists(format!("project with id {:?} already exists", project.id))
            }
            other => other.into(),
        })
}

pub async fn update(state: &AppState, project: pb::Project) -> Result<(), Status> {
    validate(&project, false)?;
    let existing = get_record(state, &project.org, &project.id).await?;
    let mut record = to_record(&project);
    if record.name.is_empty() {
        record.name = existing.name;
    }
    state
        .store
        .update_project(&record)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => not_found(&project.id),
            other => other.into(),
        })
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("project {id:?} not found"))
}

async fn get_record(state: &AppState, org: &str, id: &str) -> Result<ProjectRecord, Status> {
    state.store.get_project(org, id).await.map_err(|e| match e {
        StoreError::NotFound => not_found(id),
        other => other.into(),
    })
}

pub async fn get(state: &AppState, req: pb::ProjectGetRequest) -> Result<pb::Project, Status> {
    if req.id.is_empty() {
        return Err(Status::invalid_argument("missing project_id"));
    }
    Ok(from_record(
        get_record(state, &req.org, &req.id).await?,
        domains(state),
    ))
}

pub async fn list(state: &AppState, req: pb::ProjectListRequest) -> Result<pb::Projects, Status> {
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n => n,
    };
    let offset: u64 = if req.token.is_empty() {
        0
    } else {
        req.token
            .parse()
            .map_err(|_| Status::invalid_argument("invalid pagination token"))?
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
                    return Err(Status::invalid_argument(format!(
                        "cannot sort by {other:?}; use identifier, name or created_at"
                    )))
                }
            };
            (key, s.direction == pb::sort::Direction::Ascending as i32)
        }
    };
    let records = state
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
    let domains = domains(state);
    Ok(pb::Projects {
        projects: records
            .into_iter()
            .map(|r| from_record(r, domains.clone()))
            .collect(),
        token,
    })
}

pub fn get_domains(state: &AppState) -> pb::GetDomainsResponse {
    pb::GetDomainsResponse {
        domains: domains(state),
    }
}

/// Labels as a sorted map (REST output is stable).
pub fn sorted_labels(p: &pb::Project) -> BTreeMap<String, String> {
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
