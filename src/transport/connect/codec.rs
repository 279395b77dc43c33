//! The procedures flyteauth serves over Connect, and their message codecs: binary protobuf
//! passes through as it is; JSON is converted to and from protobuf with the proto3 JSON
//! mapping by `prost-reflect`, driven by the descriptor set that `build.rs` compiles from
//! `proto/` (no hand-written JSON per message).

use std::collections::HashMap;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};

/// One unary procedure: `/package.Service/Method`.
#[derive(Debug, Clone)]
pub(crate) struct Procedure {
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    /// Client or server streaming: not served over Connect (unary only).
    pub streaming: bool,
}

/// How a Connect message is encoded on the wire (`application/proto` or `application/json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec of a unary request's `content-type` (parameters such as `charset=utf-8`
    /// ignored; JSON must be UTF-8).
    pub(crate) fn from_content_type(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let media = parts.next().unwrap_or("").trim();
        let charset_ok = parts.all(|p| match p.trim().split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        });
        if media.eq_ignore_ascii_case("application/proto") {
            Some(Self::Proto)
        } else if media.eq_ignore_ascii_case("application/json") && charset_ok {
            Some(Self::Json)
        } else {
            None
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }
}

/// Every procedure of the services in flyteauth's descriptor set.
pub(crate) struct Procedures {
    by_path: HashMap<String, Procedure>,
}

impl Procedures {
    /// From encoded `FileDescriptorSet`s (flyteauth's own, plus health).
    pub(crate) fn from_descriptor_sets(
        sets: &[&[u8]],
    ) -> Result<Self, prost_reflect::DescriptorError> {
        let mut pool = DescriptorPool::new();
        for set in sets {
            pool.decode_file_descriptor_set(*set)?;
        }
        let mut by_path = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                by_path.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    Procedure {
                        input: method.input(),
                        output: method.output(),
                        streaming: method.is_client_streaming() || method.is_server_streaming(),
                    },
                );
            }
        }
        Ok(Self { by_path })
    }

    /// flyteauth's own services and grpc.health.v1.
    pub(crate) fn builtin() -> Self {
        Self::from_descriptor_sets(&[
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .expect("the embedded descriptor sets are valid")
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Procedure> {
        self.by_path.get(path)
    }
}

/// The request message in binary protobuf: as sent, or converted from JSON. The error is a
/// short reason for an `invalid_argument` answer (about the caller's own input). JSON is
/// converted before the call reaches the auth layer, so a caller without credentials learns
/// only whether its JSON fits the message.
pub(super) fn request_to_proto(
    codec: Codec,
    input: &MessageDescriptor,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, String> {
    match codec {
        // Decoded by the service, after authentication (a malformed message from a caller
        // without credentials is `unauthenticated`, as over gRPC).
        Codec::Proto => Ok(body),
        Codec::Json => {
            if body.is_empty() {
                return Err("an empty body is not a JSON object".into());
            }
            let mut de = serde_json::Deserializer::from_slice(&body);
            let msg = DynamicMessage::deserialize_with_options(
                input.clone(),
                &mut de,
                &DeserializeOptions::new(),
            )
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| format!("request is not a valid {} in JSON: {e}", input.full_name()))?;
            Ok(msg.encode_to_vec().into())
        }
    }
}

/// The response message in the request's codec.
pub(super) fn response_from_proto(
    codec: Codec,
    output: &MessageDescriptor,
    message: bytes::Bytes,
) -> Result<bytes::Bytes, String> {
    match codec {
        Codec::Proto => Ok(message),
        Codec::Json => {
            let msg = DynamicMessage::decode(output.clone(), message)
                .map_err(|e| format!("response is not a valid {}: {e}", output.full_name()))?;
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::new(&mut out);
            // Proto3 JSON as protojson writes it: lowerCamelCase names, default values
            // omitted, 64-bit integers as strings, enums by name.
            msg.serialize_with_options(&mut ser, &prost_reflect::SerializeOptions::new())
                .map_err(|e| format!("response cannot be written as JSON: {e}"))?;
            Ok(out.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_procedure_is_known() {
        let p = Procedures::builtin();
        for path in [
            "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
            "/flyteidl.service.AuthMetadataService/GetPublicClientConfig",
            "/flyteidl.service.IdentityService/UserInfo",
            "/flyteidl.service.AdminService/RegisterProject",
            "/flyteidl.service.AdminService/UpdateProject",
            "/flyteidl.service.AdminService/GetProject",
            "/flyteidl.service.AdminService/ListProjects",
            "/flyteidl.service.AdminService/GetDomains",
            "/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
            "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig",
            "/flyteidl2.auth.IdentityService/UserInfo",
            "/grpc.health.v1.Health/Check",
        ] {
            let proc = p.get(path).unwrap_or_else(|| panic!("{path}"));
            assert!(!proc.streaming, "{path}");
        }
        assert!(p.get("/grpc.health.v1.Health/Watch").unwrap().streaming);
        assert!(p.get("/flyteidl.service.AdminService/CreateTask").is_none());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Codec::from_content_type("application/proto"),
            Some(Codec::Proto)
        );
        assert_eq!(
            Codec::from_content_type("application/json; charset=utf-8"),
            Some(Codec::Json)
        );
        assert_eq!(
            Codec::from_content_type("application/json;charset=latin1"),
            None
        );
        assert_eq!(Codec::from_content_type("application/grpc"), None);
        assert_eq!(Codec::from_content_type("text/plain"), None);
    }

    #[test]
    fn json_round_trips_with_the_proto3_mapping() {
        let p = Procedures::builtin();
        let proc = p
            .get("/flyteidl.service.AdminService/ListProjects")
            .unwrap();
        let proto = request_to_proto(
            Codec::Json,
            &proc.input,
            br#"{"limit": 5, "token": "t", "sortBy": {"key": "name"}}"#
                .to_vec()
                .into(),
        )
        .unwrap();
        let req = crate::pb::flyteidl::admin::ProjectListRequest::decode(proto).unwrap();
        assert_eq!(req.limit, 5);
        assert_eq!(req.token, "t");
        // protojson accepts the proto field name too.
        assert!(request_to_proto(
            Codec::Json,
            &proc.input,
            br#"{"sort_by": {"key": "name"}}"#.to_vec().into()
        )
        .is_ok());
        // Unknown fields and wrong types are refused.
        assert!(
            request_to_proto(Codec::Json, &proc.input, br#"{"nope": 1}"#.to_vec().into()).is_err()
        );
        assert!(request_to_proto(
            Codec::Json,
            &proc.input,
            br#"{"limit": "x"}"#.to_vec().into()
        )
        .is_err());
        assert!(
            request_to_proto(Codec::Json, &proc.input, b"{} trailing".to_vec().into()).is_err()
        );
        assert!(request_to_proto(Codec::Json, &proc.input, bytes::Bytes::new()).is_err());
        // Binary passes through (the service decodes it).
        assert!(request_to_proto(Codec::Proto, &proc.input, bytes::Bytes::new()).is_ok());

        let domains = p.get("/flyteidl.service.AdminService/GetDomains").unwrap();
        let resp = crate::pb::flyteidl::admin::GetDomainsResponse {
            domains: vec![crate::pb::flyteidl::admin::Domain {
                id: "development".into(),
                name: "development".into(),
            }],
        };
        let json =
            response_from_proto(Codec::Json, &domains.output, resp.encode_to_vec().into()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"domains": [{"id": "development", "name": "development"}]})
        );
    }
}
