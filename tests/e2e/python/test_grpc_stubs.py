"""flyteidl's generated Python stubs (as shipped with flytekit) over a plain h2c channel."""

import functools
import secrets
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc, identity_pb2, identity_pb2_grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import (
    DEFAULT_CLIENT_CONFIG,
    DOMAINS,
    RPC_TIMEOUT_S,
    assert_oauth2_metadata,
    bearer,
    call_code,
    hs256_with_public_key_token,
    load_signing_key,
    mint_token,
    rsa_jwk_thumbprint,
    tamper_payload,
    unsigned_token,
)

pytestmark = pytest.mark.timeout(60)

U = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(server.endpoint)
    grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT_S)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def auth_stub(channel):
    return auth_pb2_grpc.AuthMetadataServiceStub(channel)


@pytest.fixture(scope="module")
def identity_stub(channel):
    return identity_pb2_grpc.IdentityServiceStub(channel)


@pytest.fixture(scope="module")
def admin_stub(channel):
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture(scope="module")
def good_md(server):
    return bearer(mint_token(server))


def as_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


# --------------------------------------------------------------------------- AuthMetadataService


def test_get_public_client_config_anonymous(auth_stub):
    resp = auth_stub.GetPublicClientConfig(auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_S)
    assert resp.client_id == DEFAULT_CLIENT_CONFIG["client_id"]
    assert resp.redirect_uri == DEFAULT_CLIENT_CONFIG["redirect_uri"]
    assert list(resp.scopes) == DEFAULT_CLIENT_CONFIG["scopes"]
    assert resp.authorization_metadata_key == DEFAULT_CLIENT_CONFIG["authorization_metadata_key"]
    # Flyte never sets service_http_endpoint.
    assert resp.service_http_endpoint == ""


def test_get_oauth2_metadata_anonymous(auth_stub, server):
    resp = auth_stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_S)
    assert_oauth2_metadata(as_dict(resp), server.url)


def test_auth_metadata_ignores_a_bad_token(auth_stub, server):
    """AuthMetadataService is exempt from authentication: a garbage token does not matter."""
    md = bearer("garbage") + bearer("garbage", "flyte-authorization")
    cfg = auth_stub.GetPublicClientConfig(auth_pb2.PublicClientAuthConfigRequest(), metadata=md, timeout=RPC_TIMEOUT_S)
    assert cfg.client_id == "flytectl"
    meta = auth_stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), metadata=md, timeout=RPC_TIMEOUT_S)
    assert meta.issuer == server.url


def _flyteidl2(channel, service, method, req, resp_cls, md=()):
    # flyteidl2.auth messages have the same field numbers as flyteidl.service's (plus
    # dataplane_domain = 7 on the client config), so flyteidl v1's classes decode them.
    fn = channel.unary_unary(
        f"/flyteidl2.auth.{service}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=resp_cls.FromString,
    )
    return fn(req, metadata=tuple(md), timeout=RPC_TIMEOUT_S)


def test_flyteidl2_auth_metadata_service(channel, server):
    cfg = _flyteidl2(
        channel, "AuthMetadataService", "GetPublicClientConfig",
        auth_pb2.PublicClientAuthConfigRequest(), auth_pb2.PublicClientAuthConfigResponse,
    )
    assert (cfg.client_id, cfg.redirect_uri, list(cfg.scopes), cfg.authorization_metadata_key) == (
        "flytectl", "http://localhost:53593/callback", ["all", "offline"], "flyte-authorization",
    )
    meta = _flyteidl2(
        channel, "AuthMetadataService", "GetOAuth2Metadata",
        auth_pb2.OAuth2MetadataRequest(), auth_pb2.OAuth2MetadataResponse,
    )
    assert_oauth2_metadata(as_dict(meta), server.url)


def test_flyteidl2_identity_service(channel, server):
    with pytest.raises(grpc.RpcError) as e:
        _flyteidl2(channel, "IdentityService", "UserInfo", identity_pb2.UserInfoRequest(), identity_pb2.UserInfoResponse)
    assert e.value.code() == U, e.value.details()
    resp = _flyteidl2(
        channel, "IdentityService", "UserInfo", identity_pb2.UserInfoRequest(), identity_pb2.UserInfoResponse,
        md=bearer(mint_token(server)),
    )
    assert resp.subject == "alice"


# --------------------------------------------------------------------------- Health (anonymous)


def test_health_check_anonymous(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    # anonymous means a bad token is ignored too
    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), metadata=bearer("garbage"), timeout=RPC_TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


# --------------------------------------------------------------------------- IdentityService


def test_user_info_without_token_is_unauthenticated(identity_stub):
    code, details = call_code(identity_stub.UserInfo, identity_pb2.UserInfoRequest())
    assert code == U, details
    assert details and len(details) < 500


def test_user_info_with_minted_token(identity_stub, server):
    resp = identity_stub.UserInfo(
        identity_pb2.UserInfoRequest(), metadata=bearer(mint_token(server)), timeout=RPC_TIMEOUT_S
    )
    assert resp.subject == "alice"


def test_user_info_with_custom_metadata_key(identity_stub, server):
    resp = identity_stub.UserInfo(
        identity_pb2.UserInfoRequest(),
        metadata=bearer(mint_token(server, sub="bob"), "flyte-authorization"),
        timeout=RPC_TIMEOUT_S,
    )
    assert resp.subject == "bob"


def test_custom_metadata_key_wins_over_authorization(identity_stub, server):
    good = mint_token(server, sub="carol")
    # custom key valid, standard key garbage -> the custom key is used -> OK
    resp = identity_stub.UserInfo(
        identity_pb2.UserInfoRequest(),
        metadata=bearer("garbage") + bearer(good, "flyte-authorization"),
        timeout=RPC_TIMEOUT_S,
    )
    assert resp.subject == "carol"
    # standard key valid, custom key garbage -> the custom key is used -> UNAUTHENTICATED
    code, details = call_code(
        identity_stub.UserInfo,
        identity_pb2.UserInfoRequest(),
        bearer(good) + bearer("garbage", "flyte-authorization"),
    )
    assert code == U, details


def test_bearer_scheme_is_case_insensitive(identity_stub, server):
    tok = mint_token(server)
    for scheme in ("bearer", "BEARER"):
        resp = identity_stub.UserInfo(
            identity_pb2.UserInfoRequest(), metadata=(("authorization", f"{scheme} {tok}"),), timeout=RPC_TIMEOUT_S
        )
        assert resp.subject == "alice"


# --------------------------------------------------------------------------- token variants


def _valid_variants(server):
    key = load_signing_key(server)
    return {
        # no kid: checked against the current key
        "no_kid": mint_token(server, kid=None),
        # Flyte's header name for the key id, next to kid
        "key_id_header": mint_token(server, extra_headers={"key_id": rsa_jwk_thumbprint(key.public_key())}),
        # only Flyte's key_id, no kid
        "key_id_only": mint_token(server, kid=None, extra_headers={"key_id": rsa_jwk_thumbprint(key.public_key())}),
        # aud as an array containing the public URL
        "aud_array": mint_token(server, aud=["https://other.example.com", server.url]),
        # a user token with no client_id and no scopes gets "all" (Flyte's blanket rule)
        "user_token_without_scopes": mint_token(server, client_id=None, scp=None),
        # extra scopes next to "all"
        "extra_scopes": mint_token(server, scp=["offline", "all"]),
        # scp as a space-separated string (DESIGN §5 claim normalisation)
        "scp_string": mint_token(server, scp="offline all"),
        # 60 s leeway on exp / nbf (DESIGN §5)
        "expired_within_leeway": mint_token(server, iat_offset=-600, exp_offset=-30),
        "nbf_within_leeway": mint_token(server, nbf_offset=30),
    }


@pytest.mark.parametrize(
    "variant",
    [
        "no_kid", "key_id_header", "key_id_only", "aud_array", "user_token_without_scopes", "extra_scopes",
        "scp_string", "expired_within_leeway", "nbf_within_leeway",
    ],
)
def test_valid_token_variants_are_accepted(identity_stub, server, variant):
    tok = _valid_variants(server)[variant]
    resp = identity_stub.UserInfo(identity_pb2.UserInfoRequest(), metadata=bearer(tok), timeout=RPC_TIMEOUT_S)
    assert resp.subject == "alice"


def token_without_exp(server):
    """A correctly signed token without `exp` (RFC 9068 requires it)."""
    key = load_signing_key(server)
    now = int(time.time())
    return jwt.encode(
        {"iss": server.url, "aud": server.url, "sub": "alice", "client_id": "flytectl", "scp": ["all"],
         "iat": now, "jti": secrets.token_hex(8)},
        key, algorithm="RS256", headers={"kid": rsa_jwk_thumbprint(key.public_key())},
    )


@functools.lru_cache(maxsize=1)
def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _invalid_variants(server):
    other_key = _other_key()
    real_kid = rsa_jwk_thumbprint(load_signing_key(server).public_key())
    return {
        "garbage": "garbage",
        "empty": "",
        "wrong_audience": mint_token(server, aud="https://elsewhere.example.com"),
        "no_audience": mint_token(server, aud=None),
        "wrong_issuer": mint_token(server, iss="https://evil.example.com"),
        "no_issuer": mint_token(server, iss=None),
        "no_exp": token_without_exp(server),
        "expired": mint_token(server, iat_offset=-7200, exp_offset=-3600),
        "not_yet_valid": mint_token(server, nbf_offset=3600, exp_offset=7200),
        "issued_in_future": mint_token(server, iat_offset=3600, exp_offset=7200),
        "unknown_kid": mint_token(server, kid="unknown-" + secrets.token_hex(8)),
        # Flyte falls back to the first key on an unknown key_id; flyteauth must refuse.
        "unknown_key_id": mint_token(server, kid=None, extra_headers={"key_id": "unknown-" + secrets.token_hex(8)}),
        "alg_none": unsigned_token(server),
        "hs256_with_public_key": hs256_with_public_key_token(server),
        "tampered_payload": tamper_payload(mint_token(server), sub="mallory"),
        "other_key_with_real_kid": mint_token(server, key=other_key, kid=real_kid),
        "other_key_without_kid": mint_token(server, key=other_key, kid=None),
        "scope_without_all": mint_token(server, scp=["offline"]),
        "client_token_without_scopes": mint_token(server, scp=None),
    }


INVALID = [
    "garbage", "empty", "wrong_audience", "no_audience", "wrong_issuer", "no_issuer", "no_exp", "expired", "not_yet_valid",
    "issued_in_future", "unknown_kid", "unknown_key_id", "alg_none", "hs256_with_public_key", "tampered_payload",
    "other_key_with_real_kid", "other_key_without_kid", "scope_without_all", "client_token_without_scopes",
]


@pytest.mark.parametrize("variant", INVALID)
def test_invalid_tokens_are_unauthenticated(identity_stub, admin_stub, server, variant):
    tok = _invalid_variants(server)[variant]
    for key in ("authorization", "flyte-authorization"):
        code, details = call_code(identity_stub.UserInfo, identity_pb2.UserInfoRequest(), bearer(tok, key))
        assert code == U, (key, details)
        assert details and len(details) < 500, details
        if len(tok) > 20:
            assert tok not in details, "token echoed in the error"
            sig = tok.split(".")[-1]
            assert not sig or sig not in details, "token signature echoed in the error"
    code, details = call_code(admin_stub.ListProjects, project_pb2.ProjectListRequest(limit=10), bearer(tok))
    assert code == U, details


@pytest.mark.parametrize("scheme", ["Basic", "IDToken-nope", "Token"])
def test_wrong_scheme_is_unauthenticated(identity_stub, server, scheme):
    tok = mint_token(server)
    code, details = call_code(
        identity_stub.UserInfo, identity_pb2.UserInfoRequest(), (("authorization", f"{scheme} {tok}"),)
    )
    assert code == U, details


# --------------------------------------------------------------------------- AdminService


ADMIN_CALLS = {
    "RegisterProject": lambda: project_pb2.ProjectRegisterRequest(
        project=project_pb2.Project(id="noauth", name="noauth")
    ),
    "UpdateProject": lambda: project_pb2.Project(id="noauth", name="noauth"),
    "GetProject": lambda: project_pb2.ProjectGetRequest(id="noauth"),
    "ListProjects": lambda: project_pb2.ProjectListRequest(limit=10),
    "GetDomains": lambda: project_pb2.GetDomainRequest(),
}


@pytest.mark.parametrize("method", sorted(ADMIN_CALLS))
def test_admin_rpcs_without_token_are_unauthenticated(admin_stub, method):
    code, details = call_code(getattr(admin_stub, method), ADMIN_CALLS[method]())
    assert code == U, details
    assert details and len(details) < 500


def test_get_domains(admin_stub, good_md):
    resp = admin_stub.GetDomains(project_pb2.GetDomainRequest(), metadata=good_md, timeout=RPC_TIMEOUT_S)
    assert [(d.id, d.name) for d in resp.domains] == DOMAINS


def test_register_get_list_project(admin_stub, good_md):
    pid = "stub-" + secrets.token_hex(4)
    admin_stub.RegisterProject(
        project_pb2.ProjectRegisterRequest(
            project=project_pb2.Project(id=pid, name="Stub project", description="via flyteidl stubs")
        ),
        metadata=good_md,
        timeout=RPC_TIMEOUT_S,
    )
    p = admin_stub.GetProject(project_pb2.ProjectGetRequest(id=pid), metadata=good_md, timeout=RPC_TIMEOUT_S)
    assert (p.id, p.name, p.description, p.state) == (pid, "Stub project", "via flyteidl stubs", 0)
    # Get/List fill in domains from the server config.
    assert [(d.id, d.name) for d in p.domains] == DOMAINS

    resp = admin_stub.ListProjects(project_pb2.ProjectListRequest(limit=1000), metadata=good_md, timeout=RPC_TIMEOUT_S)
    listed = {q.id: q for q in resp.projects}
    assert pid in listed
    assert [(d.id, d.name) for d in listed[pid].domains] == DOMAINS
    assert resp.token == ""


def test_update_project(admin_stub, good_md):
    pid = "upd-" + secrets.token_hex(4)
    admin_stub.RegisterProject(
        project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id=pid, name="one")),
        metadata=good_md, timeout=RPC_TIMEOUT_S,
    )
    admin_stub.UpdateProject(
        project_pb2.Project(id=pid, name="two", description="changed"), metadata=good_md, timeout=RPC_TIMEOUT_S
    )
    p = admin_stub.GetProject(project_pb2.ProjectGetRequest(id=pid), metadata=good_md, timeout=RPC_TIMEOUT_S)
    assert (p.name, p.description) == ("two", "changed")


def test_get_and_update_missing_project_is_not_found(admin_stub, good_md):
    code, details = call_code(admin_stub.GetProject, project_pb2.ProjectGetRequest(id="does-not-exist"), good_md)
    assert code == grpc.StatusCode.NOT_FOUND, details
    code, details = call_code(admin_stub.UpdateProject, project_pb2.Project(id="does-not-exist", name="x"), good_md)
    assert code == grpc.StatusCode.NOT_FOUND, details


@pytest.mark.parametrize(
    "project",
    [
        project_pb2.Project(id="no-name"),
        project_pb2.Project(id="Not_A_DNS_Label!", name="bad id"),
        project_pb2.Project(id="", name="empty id"),
        project_pb2.Project(id="with-domains", name="x", domains=[project_pb2.Domain(id="development", name="development")]),
    ],
    ids=["empty_name", "bad_id", "empty_id", "domains_set"],
)
def test_register_invalid_project_is_invalid_argument(admin_stub, good_md, project):
    code, details = call_code(admin_stub.RegisterProject, project_pb2.ProjectRegisterRequest(project=project), good_md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details


def test_register_duplicate_project_is_already_exists(admin_stub, good_md):
    pid = "dup-" + secrets.token_hex(4)
    req = project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id=pid, name="dup"))
    admin_stub.RegisterProject(req, metadata=good_md, timeout=RPC_TIMEOUT_S)
    code, details = call_code(admin_stub.RegisterProject, req, good_md)
    assert code == grpc.StatusCode.ALREADY_EXISTS, details


def test_list_projects_pagination_sorted_by_id(admin_stub, good_md):
    for suffix in ("a", "b"):
        admin_stub.RegisterProject(
            project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id=f"page-{suffix}", name=suffix)),
            metadata=good_md, timeout=RPC_TIMEOUT_S,
        )
    full = admin_stub.ListProjects(project_pb2.ProjectListRequest(limit=1000), metadata=good_md, timeout=RPC_TIMEOUT_S)
    ids = [p.id for p in full.projects]
    assert ids == sorted(ids), ids
    assert len(ids) >= 2
    first = admin_stub.ListProjects(project_pb2.ProjectListRequest(limit=1), metadata=good_md, timeout=RPC_TIMEOUT_S)
    assert [p.id for p in first.projects] == ids[:1]
    assert first.token == "1"
    second = admin_stub.ListProjects(
        project_pb2.ProjectListRequest(limit=1, token=first.token), metadata=good_md, timeout=RPC_TIMEOUT_S
    )
    assert [p.id for p in second.projects] == ids[1:2]
