"""HTTP/1.1 side of the single port: healthcheck, metadata JSON, REST mirrors of the RPCs."""

import secrets

import grpc
import pytest
import requests
from flyteidl.service import auth_pb2, auth_pb2_grpc
from google.protobuf import json_format

from helpers import DEFAULT_CLIENT_CONFIG, DOMAINS, RPC_TIMEOUT_S, assert_oauth2_metadata, mint_token

pytestmark = pytest.mark.timeout(60)

T = 10  # seconds, every HTTP request


@pytest.fixture(scope="module")
def http(server):
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


@pytest.fixture(scope="module")
def auth_headers(server):
    return {"Authorization": f"Bearer {mint_token(server)}"}


def _grpc_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def test_healthcheck_needs_no_auth(server, http):
    r = http.get(f"{server.url}/healthcheck", timeout=T)
    assert r.status_code == 200


def test_well_known_metadata_json_matches_grpc(server, http):
    r = http.get(f"{server.url}/.well-known/oauth-authorization-server", timeout=T)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert_oauth2_metadata(body, server.url)
    # every field emitted, snake_case, including the empty device endpoint
    expected_keys = {f.name for f in auth_pb2.OAuth2MetadataResponse.DESCRIPTOR.fields}
    assert set(body) == expected_keys, set(body) ^ expected_keys
    with grpc.insecure_channel(server.endpoint) as ch:
        resp = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetOAuth2Metadata(
            auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_S
        )
    assert body == _grpc_dict(resp)


def test_flyte_client_config_json_matches_grpc(server, http):
    r = http.get(f"{server.url}/config/v1/flyte_client", timeout=T)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    for k, v in DEFAULT_CLIENT_CONFIG.items():
        assert body[k] == v, k
    expected_keys = {f.name for f in auth_pb2.PublicClientAuthConfigResponse.DESCRIPTOR.fields}
    assert set(body) == expected_keys, set(body) ^ expected_keys
    with grpc.insecure_channel(server.endpoint) as ch:
        resp = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetPublicClientConfig(
            auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_S
        )
    assert body == _grpc_dict(resp)


REST_CALLS = [
    ("GET", "/api/v1/projects", None),
    ("POST", "/api/v1/projects", {"project": {"id": "rest-noauth", "name": "x"}}),
    ("GET", "/api/v1/projects/rest-noauth", None),
    ("PUT", "/api/v1/projects/rest-noauth", {"id": "rest-noauth", "name": "y"}),
    ("GET", "/api/v1/domains", None),
    ("GET", "/me", None),
]


@pytest.mark.parametrize("method,path,body", REST_CALLS, ids=[f"{m} {p}" for m, p, _ in REST_CALLS])
@pytest.mark.parametrize("token_kind", ["none", "garbage", "expired", "wrong_audience"])
def test_rest_without_valid_token_is_401(server, http, method, path, body, token_kind):
    headers = {}
    if token_kind == "garbage":
        headers["Authorization"] = "Bearer garbage"
    elif token_kind == "expired":
        headers["Authorization"] = "Bearer " + mint_token(server, iat_offset=-7200, exp_offset=-3600)
    elif token_kind == "wrong_audience":
        headers["Authorization"] = "Bearer " + mint_token(server, aud="https://elsewhere.example.com")
    r = http.request(method, server.url + path, json=body, headers=headers, timeout=T)
    assert r.status_code == 401, (r.status_code, r.text)
    www = r.headers.get("WWW-Authenticate", "")
    assert www.startswith('Bearer error="invalid_token"'), www
    assert "error_description=" in www, www
    if "Authorization" in headers:
        assert headers["Authorization"].split(".")[-1] not in www


def test_rest_get_domains(server, http, auth_headers):
    r = http.get(f"{server.url}/api/v1/domains", headers=auth_headers, timeout=T)
    assert r.status_code == 200, r.text
    assert r.json() == {"domains": [{"id": i, "name": n} for i, n in DOMAINS]}


def test_rest_project_lifecycle(server, http, auth_headers):
    pid = "rest-" + secrets.token_hex(4)
    r = http.post(
        f"{server.url}/api/v1/projects",
        json={"project": {"id": pid, "name": "REST project", "description": "via REST"}},
        headers=auth_headers,
        timeout=T,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}

    r = http.get(f"{server.url}/api/v1/projects/{pid}", headers=auth_headers, timeout=T)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["id"] == pid
    assert p["name"] == "REST project"
    assert p["description"] == "via REST"
    assert p["domains"] == [{"id": i, "name": n} for i, n in DOMAINS]
    # grpc-gateway style: defaults emitted, enums by name, snake_case
    assert p["state"] == "ACTIVE"
    assert p["org"] == ""
    assert set(p) == {"id", "name", "domains", "description", "labels", "state", "org"}

    r = http.put(
        f"{server.url}/api/v1/projects/{pid}",
        json={"id": pid, "name": "Renamed", "description": "changed"},
        headers=auth_headers,
        timeout=T,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}

    r = http.get(f"{server.url}/api/v1/projects", params={"limit": 1000}, headers=auth_headers, timeout=T)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"projects", "token"}
    listed = {q["id"]: q for q in body["projects"]}
    assert pid in listed
    assert (listed[pid]["name"], listed[pid]["description"]) == ("Renamed", "changed")


def test_rest_missing_project_is_404(server, http, auth_headers):
    r = http.get(f"{server.url}/api/v1/projects/no-such-project", headers=auth_headers, timeout=T)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


def test_rest_invalid_project_is_400(server, http, auth_headers):
    r = http.post(
        f"{server.url}/api/v1/projects",
        json={"project": {"id": "Bad_Id!", "name": "x"}},
        headers=auth_headers,
        timeout=T,
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_rest_me(server, http):
    tok = mint_token(server, sub="dave")
    r = http.get(f"{server.url}/me", headers={"Authorization": f"Bearer {tok}"}, timeout=T)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "dave"
    assert r.headers["X-User-Subject"] == "dave"
