//! REST mirrors of the gRPC API, JSON like grpc-gateway emits it (snake_case field names,
//! every field present, enums by name): `/api/v1/projects`, `/api/v1/projects/{id}`,
//! `/api/v1/domains`, `/me`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::error::{bad_request, json_rejection, ApiError};
use crate::auth::Identity;
use crate::pb::flyteidl::admin as pb;
use crate::projects::{self, Projects};
use crate::transport::state::AppState;

/// The authenticated caller of a REST route (bearer token in `Authorization` or
/// `auth.httpAuthorizationHeader`). `None` only under `disableForHttp`.
pub(crate) struct Caller(pub Option<Arc<Identity>>);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if !state.config.server.use_auth {
            return Ok(Caller(None));
        }
        let auth = &state.authenticator;
        let custom = &state.config.auth.http_authorization_header;
        // The one decision; safe (GET/HEAD) reads of a session need no CSRF header.
        let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
        let result = auth.authenticate_call(&parts.headers, custom, !safe).await;
        match result {
            Ok(id) => {
                if let Some(method) =
                    crate::auth::rules::rest_method(&parts.method, parts.uri.path())
                {
                    if let Err(denied) = auth.rules.check(method, &id) {
                        tracing::info!(target: "flyteauth::audit", route = parts.uri.path(), subject = %id.subject, outcome = "forbidden", rule = denied.index);
                        return Err(ApiError::Forbidden(denied.to_string()));
                    }
                }
                Ok(Caller(Some(id)))
            }
            Err(_) if state.config.auth.disable_for_http => Ok(Caller(None)),
            Err(e) => {
                tracing::info!(target: "flyteauth::audit", route = parts.uri.path(), reason = e.kind(), outcome = "deny");
                Err(e.into())
            }
        }
    }
}

/// The projects service on this deployment's store and domains.
fn service(state: &AppState) -> Projects<'_> {
    Projects::new(&*state.store, &state.config.domains)
}

/// The caller's bindings (DESIGN.md §12) on the RPC this route mirrors.
fn authorize<M: prost::Message>(
    state: &AppState,
    caller: &Caller,
    method: &str,
    msg: &M,
) -> Result<(), ApiError> {
    match crate::auth::roles::decide_message(
        state.authorizer.as_deref(),
        caller.0.as_deref(),
        &format!("flyteidl.service.AdminService/{method}"),
        msg,
    ) {
        crate::auth::roles::Decision::Allow => Ok(()),
        crate::auth::roles::Decision::Deny(d) => Err(ApiError::Forbidden(d.to_string())),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainJson {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelsJson {
    pub values: BTreeMap<String, String>,
}

/// A project state by name (`"ACTIVE"`) or number, as protojson accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum StateJson {
    #[default]
    Missing,
    Name(String),
    Number(i32),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectJson {
    pub id: String,
    pub name: String,
    pub domains: Vec<DomainJson>,
    pub description: String,
    pub labels: Option<LabelsJson>,
    #[serde(serialize_with = "ser_state", deserialize_with = "de_state")]
    pub state: i32,
    pub org: String,
}

fn ser_state<S: serde::Serializer>(state: &i32, s: S) -> Result<S::Ok, S::Error> {
    match pb::project::ProjectState::try_from(*state) {
        Ok(v) => s.serialize_str(v.as_str_name()),
        Err(_) => s.serialize_i32(*state),
    }
}

fn de_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    match StateJson::deserialize(d)? {
        StateJson::Missing => Ok(0),
        StateJson::Number(n) => Ok(n),
        StateJson::Name(n) => pb::project::ProjectState::from_str_name(&n)
            .map(|v| v as i32)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown project state {n:?}"))),
    }
}

impl From<pb::Project> for ProjectJson {
    fn from(p: pb::Project) -> Self {
        let labels = projects::sorted_labels(&p);
        Self {
            id: p.id,
            name: p.name,
            domains: p
                .domains
                .into_iter()
                .map(|d| DomainJson {
                    id: d.id,
                    name: d.name,
                })
                .collect(),
            description: p.description,
            labels: Some(LabelsJson { values: labels }),
            state: p.state,
            org: p.org,
        }
    }
}

impl From<ProjectJson> for pb::Project {
    fn from(p: ProjectJson) -> Self {
        Self {
            id: p.id,
            name: p.name,
            domains: p
                .domains
                .into_iter()
                .map(|d| pb::Domain {
                    id: d.id,
                    name: d.name,
                })
                .collect(),
            description: p.description,
            labels: p.labels.map(|l| pb::Labels {
                values: l.values.into_iter().collect(),
            }),
            state: p.state,
            org: p.org,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RegisterJson {
    pub project: Option<ProjectJson>,
}

pub(crate) async fn register_project(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<RegisterJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let req = pb::ProjectRegisterRequest {
        project: body.project.map(Into::into),
    };
    authorize(&state, &caller, "RegisterProject", &req)?;
    service(&state).register(req).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn update_project(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ProjectJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut body) = body.map_err(json_rejection)?;
    body.id = id;
    let project: pb::Project = body.into();
    authorize(&state, &caller, "UpdateProject", &project)?;
    service(&state).update(project).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn get_project(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ProjectJson>, ApiError> {
    let org = q.get("org").cloned().unwrap_or_default();
    let req = pb::ProjectGetRequest { id, org };
    authorize(&state, &caller, "GetProject", &req)?;
    let p = service(&state).get(req).await?;
    Ok(Json(p.into()))
}

#[derive(Serialize)]
pub(crate) struct ProjectsJson {
    projects: Vec<ProjectJson>,
    token: String,
}

pub(crate) async fn list_projects(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ProjectsJson>, ApiError> {
    let limit = match q.get("limit") {
        None => 0,
        Some(l) => l
            .parse()
            .map_err(|_| bad_request("limit must be a number"))?,
    };
    let direction = match q.get("sort_by.direction").map(String::as_str) {
        None | Some("DESCENDING") | Some("0") => pb::sort::Direction::Descending,
        Some("ASCENDING") | Some("1") => pb::sort::Direction::Ascending,
        Some(other) => return Err(bad_request(format!("invalid sort direction {other:?}"))),
    };
    let sort_by = q.get("sort_by.key").map(|key| pb::Sort {
        key: key.clone(),
        direction: direction as i32,
    });
    let req = pb::ProjectListRequest {
        limit,
        token: q.get("token").cloned().unwrap_or_default(),
        filters: q.get("filters").cloned().unwrap_or_default(),
        sort_by,
        org: q.get("org").cloned().unwrap_or_default(),
    };
    authorize(&state, &caller, "ListProjects", &req)?;
    let mut page = service(&state).list(req).await?;
    crate::auth::roles::retain_viewable(
        state.authorizer.as_deref(),
        caller.0.as_deref(),
        &mut page.projects,
    );
    Ok(Json(ProjectsJson {
        projects: page.projects.into_iter().map(Into::into).collect(),
        token: page.token,
    }))
}

pub(crate) async fn get_domains(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &caller, "GetDomains", &pb::GetDomainRequest {})?;
    let domains: Vec<DomainJson> = service(&state)
        .get_domains()
        .domains
        .into_iter()
        .map(|d| DomainJson {
            id: d.id,
            name: d.name,
        })
        .collect();
    Ok(Json(serde_json::json!({ "domains": domains })))
}

/// `/me`: UserInfo as JSON, plus `X-User-Subject` and `X-User-Claim-*` headers so it can
/// serve as an nginx `auth_request` endpoint (spec §2.5).
pub(crate) async fn me(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let Some(id) = caller else {
        return Err(crate::auth::AuthError::MissingToken.into());
    };
    let u = &id.user_info;
    let mut body = serde_json::json!({
        "subject": u.subject,
        "name": u.name,
        "preferred_username": u.preferred_username,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "email": u.email,
        "picture": u.picture,
        "additional_claims": id.claims,
    });
    // `roles` (addition, DESIGN.md §12): the caller's bindings, present when bindings are
    // configured, for the console.
    if let Some(a) = state.authorizer.as_deref() {
        body["roles"] = serde_json::to_value(a.roles_of(&id)).unwrap_or_default();
    }
    let mut resp = Json(body).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&u.subject) {
        headers.insert("x-user-subject", v);
    }
    for (k, v) in &id.claims {
        let name = format!("x-user-claim-{}", k.replace('_', "-"));
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&v.to_string()),
        ) {
            headers.insert(n, v);
        }
    }
    Ok(resp)
}
