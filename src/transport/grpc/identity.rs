//! `IdentityService.UserInfo` (flyteidl v1 and flyteidl2): the caller's identity.

use std::sync::Arc;

use prost_types::value::Kind;
use tonic::{Request, Response, Status};

use crate::auth::Identity;
use crate::pb::flyteidl::service as v1;
use crate::pb::flyteidl2::auth as v2;
use crate::transport::state::AppState;

#[derive(Clone)]
pub(crate) struct IdentityApi {
    _state: Arc<AppState>,
}

impl IdentityApi {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { _state: state }
    }
}

/// JSON → `google.protobuf.Value`.
pub(super) fn to_proto_value(v: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_proto_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(to_proto_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub(super) fn to_proto_struct(
    o: &serde_json::Map<String, serde_json::Value>,
) -> prost_types::Struct {
    prost_types::Struct {
        fields: o
            .iter()
            .map(|(k, v)| (k.clone(), to_proto_value(v)))
            .collect(),
    }
}

/// The v1 response for an identity (empty for an anonymous caller under `disableForGrpc`).
pub(super) fn user_info_response(id: Option<&Identity>) -> v1::UserInfoResponse {
    let Some(id) = id else {
        return v1::UserInfoResponse::default();
    };
    let u = &id.user_info;
    v1::UserInfoResponse {
        subject: u.subject.clone(),
        name: u.name.clone(),
        preferred_username: u.preferred_username.clone(),
        given_name: u.given_name.clone(),
        family_name: u.family_name.clone(),
        email: u.email.clone(),
        picture: u.picture.clone(),
        additional_claims: Some(to_proto_struct(&id.claims)),
    }
}

#[tonic::async_trait]
impl v1::identity_service_server::IdentityService for IdentityApi {
    async fn user_info(
        &self,
        req: Request<v1::UserInfoRequest>,
    ) -> Result<Response<v1::UserInfoResponse>, Status> {
        let id = super::identity(&req);
        Ok(Response::new(user_info_response(id.as_deref())))
    }
}

#[tonic::async_trait]
impl v2::identity_service_server::IdentityService for IdentityApi {
    async fn user_info(
        &self,
        req: Request<v2::UserInfoRequest>,
    ) -> Result<Response<v2::UserInfoResponse>, Status> {
        let id = super::identity(&req);
        let r = user_info_response(id.as_deref());
        Ok(Response::new(v2::UserInfoResponse {
            subject: r.subject,
            name: r.name,
            preferred_username: r.preferred_username,
            given_name: r.given_name,
            family_name: r.family_name,
            email: r.email,
            picture: r.picture,
            additional_claims: r.additional_claims,
        }))
    }
}
