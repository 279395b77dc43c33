//! Per-project access (DESIGN.md §12): Flyte 2's roles and actions, bound to groups,
//! subjects and client ids on projects and domains (`auth.authorization.bindings`).
//!
//! - [`config`]: the file shapes, the actions and built-in roles, validation (config errors
//!   name the key; `check-config` runs the same code).
//! - [`rules`]: the reviewed policy, method patterns → action, scope overrides.
//! - [`table`]: the table, method → action + where project/domain/org are read
//!   from, built from the vendored proto descriptors (`flyteauth authz-table` prints it).
//! - [`engine`]: [`Authorizer::decide`], the one decision for own and forwarded calls.

pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod rules;
pub(crate) mod table;

pub(crate) use engine::Decision;
pub use engine::{Authorizer, RequestBody};
pub use table::Table;

/// Decides an own-service call whose request is already decoded (the message is encoded
/// again and read like a forwarded one, so both take the same path). `Ok` without bindings
/// or without an identity (authentication disabled).
pub(crate) fn check_message<M: prost::Message>(
    authorizer: Option<&Authorizer>,
    identity: Option<&crate::auth::Identity>,
    method: &str,
    message: &M,
) -> Result<(), tonic::Status> {
    decide_message(authorizer, identity, method, message).into_result()
}

/// The decision [`check_message`] renders as a gRPC status, for transports that render a
/// refusal their own way (REST: 403 JSON). `Allow` without bindings or without a caller.
pub(crate) fn decide_message<M: prost::Message>(
    authorizer: Option<&Authorizer>,
    identity: Option<&crate::auth::Identity>,
    method: &str,
    message: &M,
) -> Decision {
    let (Some(a), Some(id)) = (authorizer, identity) else {
        return Decision::Allow;
    };
    a.decide(id, method, RequestBody::Proto(&message.encode_to_vec()))
}

/// `ListProjects` (own service): keeps the projects the caller may view (in some domain).
pub(crate) fn retain_viewable(
    authorizer: Option<&Authorizer>,
    identity: Option<&crate::auth::Identity>,
    projects: &mut Vec<crate::pb::flyteidl::admin::Project>,
) {
    if let (Some(a), Some(id)) = (authorizer, identity) {
        projects.retain(|p| a.may_view_project(id, &p.id));
    }
}
