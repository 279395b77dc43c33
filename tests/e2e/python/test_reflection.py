"""gRPC server reflection (the grpcurl / buf curl path), anonymous, v1alpha and v1."""

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from helpers import RPC_TIMEOUT_S

pytestmark = pytest.mark.timeout(60)

APP_SERVICES = {
    "flyteidl.service.AuthMetadataService",
    "flyteidl.service.IdentityService",
    "flyteidl.service.AdminService",
    "flyteidl2.auth.AuthMetadataService",
    "flyteidl2.auth.IdentityService",
    "grpc.health.v1.Health",
}
REFLECTION_SERVICES = {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}

EXPECTED_METHODS = {
    "flyteidl.service.AdminService": {
        "RegisterProject": ("flyteidl.admin.ProjectRegisterRequest", "flyteidl.admin.ProjectRegisterResponse"),
        "UpdateProject": ("flyteidl.admin.Project", "flyteidl.admin.ProjectUpdateResponse"),
        "GetProject": ("flyteidl.admin.ProjectGetRequest", "flyteidl.admin.Project"),
        "ListProjects": ("flyteidl.admin.ProjectListRequest", "flyteidl.admin.Projects"),
        "GetDomains": ("flyteidl.admin.GetDomainRequest", "flyteidl.admin.GetDomainsResponse"),
    },
    "flyteidl.service.AuthMetadataService": {
        "GetOAuth2Metadata": ("flyteidl.service.OAuth2MetadataRequest", "flyteidl.service.OAuth2MetadataResponse"),
        "GetPublicClientConfig": (
            "flyteidl.service.PublicClientAuthConfigRequest",
            "flyteidl.service.PublicClientAuthConfigResponse",
        ),
    },
    "flyteidl.service.IdentityService": {
        "UserInfo": ("flyteidl.service.UserInfoRequest", "flyteidl.service.UserInfoResponse"),
    },
    "flyteidl2.auth.AuthMetadataService": {
        "GetOAuth2Metadata": ("flyteidl2.auth.GetOAuth2MetadataRequest", "flyteidl2.auth.GetOAuth2MetadataResponse"),
        "GetPublicClientConfig": (
            "flyteidl2.auth.GetPublicClientConfigRequest",
            "flyteidl2.auth.GetPublicClientConfigResponse",
        ),
    },
    "flyteidl2.auth.IdentityService": {
        "UserInfo": ("flyteidl2.auth.UserInfoRequest", "flyteidl2.auth.UserInfoResponse"),
    },
}


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(server.endpoint)
    grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT_S)
    yield ch
    ch.close()


def test_v1alpha_lists_services_via_descriptor_database(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    missing = (APP_SERVICES | {"grpc.reflection.v1alpha.ServerReflection"}) - services
    assert not missing, f"missing {sorted(missing)}; listed {sorted(services)}"


@pytest.mark.parametrize("service", sorted(EXPECTED_METHODS))
def test_v1alpha_descriptors_resolve(channel, service):
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    sd = pool.FindServiceByName(service)
    got = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in sd.methods}
    for name, types in EXPECTED_METHODS[service].items():
        assert got.get(name) == types, (name, got)


def test_v1alpha_message_fields_keep_flyte_numbers(channel):
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    project = pool.FindMessageTypeByName("flyteidl.admin.Project")
    assert {f.name: f.number for f in project.fields} == {
        "id": 1, "name": 2, "domains": 3, "description": 4, "labels": 5, "state": 6, "org": 7,
    }
    cfg = pool.FindMessageTypeByName("flyteidl2.auth.GetPublicClientConfigResponse")
    assert cfg.fields_by_name["dataplane_domain"].number == 7


def _v1_call(channel, requests):
    """Raw grpc.reflection.v1 call. v1 and v1alpha messages are identical on the wire
    (same fields and numbers), and grpcio-reflection ships only v1alpha classes."""
    fn = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(fn(iter(requests), timeout=RPC_TIMEOUT_S))


def test_v1_lists_services(channel):
    (resp,) = _v1_call(channel, [reflection_pb2.ServerReflectionRequest(list_services="")])
    assert resp.WhichOneof("message_response") == "list_services_response", resp
    services = {s.name for s in resp.list_services_response.service}
    missing = (APP_SERVICES | {"grpc.reflection.v1.ServerReflection"}) - services
    assert not missing, f"missing {sorted(missing)}; listed {sorted(services)}"


def test_reflection_ignores_a_bad_token(channel):
    fn = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (resp,) = list(
        fn(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
           metadata=(("authorization", "Bearer garbage"),), timeout=RPC_TIMEOUT_S)
    )
    assert "flyteidl.service.AdminService" in {s.name for s in resp.list_services_response.service}


def test_v1_resolves_admin_service(channel):
    (resp,) = _v1_call(
        channel, [reflection_pb2.ServerReflectionRequest(file_containing_symbol="flyteidl.service.AdminService")]
    )
    assert resp.WhichOneof("message_response") == "file_descriptor_response", resp
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in resp.file_descriptor_response.file_descriptor_proto]
    services = {f"{f.package}.{s.name}": s for f in files for s in f.service}
    admin = services["flyteidl.service.AdminService"]
    got = {m.name: (m.input_type.lstrip("."), m.output_type.lstrip(".")) for m in admin.method}
    for name, types in EXPECTED_METHODS["flyteidl.service.AdminService"].items():
        assert got.get(name) == types, (name, got)


def test_v1_unknown_symbol_is_not_found(channel):
    # Either form is a NOT_FOUND: an in-stream error_response (grpc-go) or the stream's status
    # (tonic-reflection).
    try:
        (resp,) = _v1_call(
            channel, [reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service")]
        )
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
        return
    assert resp.WhichOneof("message_response") == "error_response", resp
    assert resp.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_both_reflection_versions_are_listed(channel):
    """grpcurl-style `list` shows the reflection services of both versions."""
    alpha = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    (resp,) = _v1_call(channel, [reflection_pb2.ServerReflectionRequest(list_services="")])
    v1 = {s.name for s in resp.list_services_response.service}
    assert REFLECTION_SERVICES <= alpha and REFLECTION_SERVICES <= v1, (
        f"v1alpha lists {sorted(alpha & REFLECTION_SERVICES)}, v1 lists {sorted(v1 & REFLECTION_SERVICES)}"
    )
