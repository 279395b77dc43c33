"""The gateway (DESIGN.md §11) with real clients in front and upstream stand-ins behind
(gateway_upstreams.py): flytekit 1.16 and grpcio to a grpcio AdminService (Flyte 1), headless
Chromium's gRPC-web and console-style REST with the session cookie, and Connect (requests'
JSON and flyteidl2's generated Connect client) to a connectrpc ProjectService (Flyte 2), and
Flyte 2's `flyte` SDK itself (flyte2_probe.py) logging in over TLS and calling that service.
Every refused call is checked to never reach the upstream.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import grpc
import jwt
import pytest
import requests
import yaml
from flyteidl.admin import agent_pb2, execution_pb2, project_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc, agent_pb2_grpc
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig

from browser import ConsoleServer, run_browser
from conftest import free_port
from gateway_upstreams import FLYTE2_SCRIPT, STREAM_GAP_S, Flyte1Upstream, Flyte2Upstream
from helpers import RPC_TIMEOUT_S, bearer, make_tls_files
from oauth import ALICE, HTTP_TIMEOUT_S, auth_extra, generated_propeller_secret, jwks, token
from test_connect import run_probe

pytestmark = pytest.mark.timeout(180)

FORGED = {
    "x-auth-request-user": "admin",
    "x-auth-request-email": "admin@evil.example",
    "x-auth-request-groups": "admins",
    "x-auth-request-preferred-username": "admin",
    "x-amzn-oidc-identity": "admin",
    "x-flyte-identity": "forged",
}


class GatewayServer(ConsoleServer):
    """flyteauth with local users, its own origin allowed, and a `gateway:` section."""

    gateway: dict = {}

    def write_config(self) -> None:
        super().write_config()
        cfg = yaml.safe_load(self.config_file.read_text())
        cfg["gateway"] = self.gateway
        self.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def flyte1():
    up = Flyte1Upstream().start()
    yield up
    up.close()


@pytest.fixture(scope="module")
def flyte2(tmp_path_factory):
    up = Flyte2Upstream(tmp_path_factory.mktemp("flyte2_upstream"))
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, flyte1, flyte2):
    srv = GatewayServer(tmp_dir=tmp_path_factory.mktemp("gateway"), port=free_port(), auth_extra=auth_extra())
    srv.gateway = {
        "upstreams": [
            {
                "name": "flyteadmin",
                "url": flyte1.url,
                "services": ["flyteidl.service.AdminService", "flyteidl.service.AsyncAgentService"],
            },
            {"name": "flyteadmin-rest", "url": flyte1.rest_url, "httpPrefixes": ["/api/v1/"]},
            {"name": "flyte2", "url": flyte2.url, "services": ["flyteidl2.*"]},
        ]
    }
    srv.start()
    yield srv
    srv.stop()


def propeller_token(srv) -> str:
    r = token(srv, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", generated_propeller_secret(srv)))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def verify_identity_jwt(srv, value: str, upstream: str) -> dict:
    """X-Flyte-Identity checked as an upstream would: signature by the kid in /oauth2/jwks."""
    header = jwt.get_unverified_header(value)
    keys = [k for k in jwks(srv)["keys"] if k.get("kid") == header["kid"]]
    assert len(keys) == 1, header
    claims = jwt.decode(
        value,
        jwt.PyJWK(keys[0]).key,
        algorithms=[header["alg"]],
        audience=f"flyteauth-gateway:{upstream}",
        issuer=srv.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    assert 60 <= claims["exp"] - claims["iat"] <= 120, claims
    return claims


def flytekit_client(srv) -> SynchronousFlyteClient:
    return SynchronousFlyteClient(
        PlatformConfig(
            endpoint=srv.endpoint,
            insecure=True,
            auth_mode="ClientSecret",
            client_id="flytepropeller",
            client_credentials_secret=generated_propeller_secret(srv),
            rpc_retries=1,
        )
    )


# --------------------------------------------------------------------------- Flyte 1, gRPC


def test_flytekit_through_the_gateway_reaches_flyteadmin_with_the_verified_identity(gw, flyte1):
    client = flytekit_client(gw)
    projects, _ = client.list_projects_paginated(limit=10)
    assert [p.name for p in projects] == ["seen-by-upstream:flytepropeller"]
    md = flyte1.rec.last("ListProjects")
    assert md["x-auth-request-user"] == "flytepropeller"
    assert "flyte-authorization" in md or "authorization" in md, md
    claims = verify_identity_jwt(gw, md["x-flyte-identity"], "flyteadmin")
    assert claims["sub"] == "flytepropeller" and claims["client_id"] == "flytepropeller"
    # Another RPC of the same service, and the upstream's own NOT_FOUND passing through.
    from flytekit.exceptions.user import FlyteEntityNotExistException
    from flytekit.models.core.identifier import WorkflowExecutionIdentifier

    ex = client.get_execution(WorkflowExecutionIdentifier("p", "development", "exec1"))
    assert ex.id.name == "exec1"
    assert flyte1.rec.last("GetExecution")["x-auth-request-user"] == "flytepropeller"
    with pytest.raises(FlyteEntityNotExistException):
        client.get_execution(WorkflowExecutionIdentifier("p", "development", "missing"))


def test_forged_identity_headers_never_reach_the_upstream(gw, flyte1):
    tok = propeller_token(gw)
    with grpc.insecure_channel(gw.endpoint) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        before = flyte1.rec.count()
        # Without a token the forged headers get nowhere.
        with pytest.raises(grpc.RpcError) as e:
            stub.ListProjects(project_pb2.ProjectListRequest(), metadata=tuple(FORGED.items()), timeout=RPC_TIMEOUT_S)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert flyte1.rec.count() == before, "a refused call reached the upstream"
        # With a token the upstream sees the verified identity, never the forged one.
        resp = stub.ListProjects(
            project_pb2.ProjectListRequest(), metadata=tuple(FORGED.items()) + tuple(bearer(tok)), timeout=RPC_TIMEOUT_S
        )
    assert resp.projects[0].name == "seen-by-upstream:flytepropeller"
    md = flyte1.rec.last("ListProjects")
    assert md["x-auth-request-user"] == "flytepropeller"
    assert "x-auth-request-email" not in md and "x-auth-request-groups" not in md, md
    assert md.get("x-auth-request-preferred-username") != "admin"
    assert "x-amzn-oidc-identity" not in md
    verify_identity_jwt(gw, md["x-flyte-identity"], "flyteadmin")


def test_server_streaming_is_not_buffered(gw, flyte1):
    tok = propeller_token(gw)
    with grpc.insecure_channel(gw.endpoint) as ch:
        stub = agent_pb2_grpc.AsyncAgentServiceStub(ch)
        t0 = time.monotonic()
        stream = stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(task_type="t"), metadata=bearer(tok), timeout=30)
        first = next(stream)
        t_first = time.monotonic() - t0
        rest = list(stream)
        t_end = time.monotonic() - t0
    assert first.header.token == "first" and rest[0].body.results == ["second"]
    assert t_first < t_end - STREAM_GAP_S / 2, (t_first, t_end)
    assert flyte1.rec.last("GetTaskLogs")["x-auth-request-user"] == "flytepropeller"


def test_upstream_stopped_is_unavailable_and_restarted_recovers(gw, flyte1):
    tok = propeller_token(gw)
    flyte1.stop()
    try:
        with grpc.insecure_channel(gw.endpoint) as ch:
            stub = admin_pb2_grpc.AdminServiceStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.ListProjects(project_pb2.ProjectListRequest(), metadata=bearer(tok), timeout=RPC_TIMEOUT_S)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
            assert "flyteadmin" in e.value.details()
    finally:
        flyte1.start()
    with grpc.insecure_channel(gw.endpoint) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        deadline = time.monotonic() + 10
        while True:
            try:
                resp = stub.ListProjects(project_pb2.ProjectListRequest(), metadata=bearer(tok), timeout=RPC_TIMEOUT_S)
                break
            except grpc.RpcError as err:
                if time.monotonic() > deadline:
                    raise
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                time.sleep(0.2)
    assert resp.projects[0].name == "seen-by-upstream:flytepropeller"


# --------------------------------------------------------------------------- the console, Chromium


def _grpc_frame(msg: bytes) -> str:
    return base64.b64encode(b"\x00" + len(msg).to_bytes(4, "big") + msg).decode()


def test_console_in_chromium_through_the_gateway(gw, flyte1):
    list_frame = _grpc_frame(project_pb2.ProjectListRequest(limit=5).SerializeToString())
    # The console page itself lists projects (forwarded too): the refused cross-origin gRPC-web
    # call is one it never makes, GetExecution.
    get_frame = _grpc_frame(
        execution_pb2.WorkflowExecutionGetRequest(
            id=identifier_pb2.WorkflowExecutionIdentifier(project="p", domain="development", name="x")
        ).SerializeToString()
    )
    logs_frame = _grpc_frame(agent_pb2.GetTaskLogsRequest(task_type="t").SerializeToString())
    rest_body = base64.b64encode(b"\x0a\x03abc").decode()
    octet = "application/octet-stream"
    steps = [
        {"do": "open"},
        {"do": "signIn", "kind": "local", "username": ALICE.username, "password": ALICE.password},
        # gRPC-web with the session cookie and no CSRF header (not CORS-simple, own origin).
        {"do": "fetch", "path": "/flyteidl.service.AdminService/ListProjects", "contentType": "application/grpc-web+proto", "bodyB64": list_frame, "csrf": "none"},
        # Server streaming over gRPC-web: the first message before the stream ends.
        {"do": "fetch", "path": "/flyteidl.service.AsyncAgentService/GetTaskLogs", "contentType": "application/grpc-web+proto", "bodyB64": logs_frame, "csrf": "none"},
        # flyteconsole's REST call: protobuf body, the cookie, no CSRF header.
        {"do": "fetch", "path": "/api/v1/executions", "contentType": octet, "bodyB64": rest_body, "csrf": "none"},
        # CORS-simple without the CSRF header: refused.
        {"do": "fetch", "path": "/api/v1/executions", "contentType": "text/plain", "bodyB64": rest_body, "csrf": "none"},
        # From a foreign origin: refused (the preflight fails; a simple one is refused here).
        {"do": "crossOriginFetch", "path": "/api/v1/executions", "contentType": octet, "bodyB64": rest_body, "csrf": "none"},
        {"do": "crossOriginFetch", "path": "/api/v1/executions", "contentType": "text/plain", "bodyB64": rest_body, "csrf": "cookie"},
        {"do": "crossOriginFetch", "path": "/flyteidl.service.AdminService/GetExecution", "contentType": "application/grpc-web+proto", "bodyB64": get_frame, "csrf": "cookie"},
    ]

    def calls(prefix):
        return sum(1 for m, _ in flyte1.rec.calls if m.startswith(prefix))

    before = {m: calls(m) for m in ("GetExecution", "GetTaskLogs", "POST /api/v1/")}
    r = run_browser(gw, steps, timeout_s=90)
    grpc_list, stream, rest_ok, simple, foreign_octet, foreign_simple, foreign_grpc = r[2:]
    assert grpc_list["grpcStatus"] == 0 and grpc_list["dataFrames"] == 1, grpc_list
    md = flyte1.rec.last("ListProjects")
    assert md["x-auth-request-user"] == "alice" and md["x-auth-request-email"] == ALICE.email, md
    assert md["x-auth-request-groups"] == "dev", md
    assert verify_identity_jwt(gw, md["x-flyte-identity"], "flyteadmin")["credential"] == "session"
    assert "flyte_session" not in md.get("cookie", ""), "flyteauth's cookie is not forwarded"
    assert stream["grpcStatus"] == 0 and stream["dataFrames"] == 2, stream
    assert stream["firstChunkMs"] < stream["endMs"] - STREAM_GAP_S * 1000 / 2, stream
    assert rest_ok["httpStatus"] == 200 and rest_ok["upstreamHeader"] == "flyteadmin-rest", rest_ok
    assert rest_ok["bodyB64"] == rest_body
    assert flyte1.rec.last("POST /api/v1/executions")["x-auth-request-user"] == "alice"
    assert simple["httpStatus"] == 401 and simple["wwwAuthenticate"], simple
    for refused in (foreign_octet, foreign_simple, foreign_grpc):
        assert "fetchError" in refused or refused["httpStatus"] == 401 or refused["grpcStatus"] == 16, refused
    # Exactly the accepted calls reached the upstream: one stream, one REST call, no GetExecution.
    after = {m: calls(m) for m in before}
    expected = dict(before)
    expected["GetTaskLogs"] += 1
    expected["POST /api/v1/"] += 1
    assert after == expected, (before, after)


# --------------------------------------------------------------------------- Flyte 2, Connect


def test_connect_json_to_the_flyte2_upstream(gw, flyte2):
    tok = propeller_token(gw)
    url = f"{gw.url}/flyteidl2.project.ProjectService/ListProjects"
    r = requests.post(url, json={}, headers={"content-type": "application/json"}, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthenticated"
    assert flyte2.seen() == [], "a refused call reached the upstream"
    r = requests.post(
        url,
        json={},
        headers={"authorization": f"Bearer {tok}", **FORGED, "connect-protocol-version": "1"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert r.status_code == 200, r.text
    assert r.json()["projects"]["projects"][0]["name"] == "seen-by-upstream:flytepropeller"
    h = flyte2.seen()[-1]["headers"]
    assert h["x-auth-request-user"] == "flytepropeller"
    assert "x-amzn-oidc-identity" not in h and "x-auth-request-groups" not in h, h
    assert h["authorization"] == f"Bearer {tok}"
    verify_identity_jwt(gw, h["x-flyte-identity"], "flyte2")


def test_flyteidl2_connect_client_through_the_gateway(gw, flyte2):
    tok = propeller_token(gw)
    python = os.environ["E2E_FLYTE2_PYTHON"]
    script = FLYTE2_SCRIPT.parent / "flyte2_client.py"
    p = subprocess.run([python, str(script), gw.url, tok], capture_output=True, timeout=60)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
    assert len(lines) == 2, p.stderr.decode()[-2000:]
    assert lines[0] == {"ok": True, "projects": ["seen-by-upstream:flytepropeller"]}
    assert lines[1]["ok"] is False and lines[1]["code"] == "not_found", lines[1]
    # Without a token: Connect's unauthenticated, and the upstream saw nothing more.
    n = len(flyte2.seen())
    p = subprocess.run([python, str(script), gw.url], capture_output=True, timeout=60)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
    assert [x.get("code") for x in lines] == ["unauthenticated", "unauthenticated"], lines
    assert len(flyte2.seen()) == n


@pytest.fixture(scope="module")
def gw_roles(tmp_path_factory, flyte2):
    """The gateway with per-project bindings: flytepropeller may view project alpha only."""
    bindings = [{"role": "viewer", "clients": ["flytepropeller"], "projects": ["alpha"], "domains": ["*"]}]
    srv = GatewayServer(
        tmp_dir=tmp_path_factory.mktemp("gateway_roles"),
        port=free_port(),
        auth_extra=dict(auth_extra(), authorization={"bindings": bindings}),
    )
    srv.gateway = {"upstreams": [{"name": "flyte2", "url": flyte2.url, "services": ["flyteidl2.*"]}]}
    srv.start()
    yield srv
    srv.stop()


def test_flyte2_gzip_requests_are_decided_on_their_project(gw_roles, flyte2):
    """Flyte 2's Connect client gzips its requests: the roles decision reads the inflated
    message, so a call in the bound project is forwarded and one in another project is refused
    here, naming the project, and never reaches the upstream."""
    tok = propeller_token(gw_roles)
    python = os.environ["E2E_FLYTE2_PYTHON"]
    script = FLYTE2_SCRIPT.parent / "flyte2_client.py"

    def get_project(project: str) -> dict:
        p = subprocess.run([python, str(script), gw_roles.url, tok, project], capture_output=True, timeout=60)
        lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
        assert len(lines) == 2, p.stderr.decode()[-2000:]
        assert lines[0]["ok"] is True, lines[0]
        return lines[1]

    def gets_seen() -> int:
        return sum(1 for c in flyte2.seen() if c["method"] == "GetProject")

    before = gets_seen()
    bound = get_project("alpha")
    assert bound == {"ok": False, "code": "not_found", "message": "project alpha not found"}, bound
    assert gets_seen() == before + 1
    other = get_project("gamma")
    assert other["ok"] is False and other["code"] == "permission_denied", other
    assert "gamma" in other["message"], other
    assert gets_seen() == before + 1, "a refused call reached the upstream"


# --------------------------------------------------------------------------- Flyte 2, the SDK


@pytest.fixture(scope="module")
def gw_tls(tmp_path_factory, flyte2):
    """The gateway over TLS (test CA): Flyte 2's SDK skips authentication over plaintext. The
    upstream stays h2c/HTTP (http://)."""
    tmp = tmp_path_factory.mktemp("gateway_tls")
    srv = GatewayServer(tmp_dir=tmp, port=free_port(), auth_extra=auth_extra())
    srv.tls = make_tls_files(tmp)
    srv.gateway = {"upstreams": [{"name": "flyte2", "url": flyte2.url, "services": ["flyteidl2.project.*"]}]}
    srv.start()
    yield srv
    srv.stop()


def test_flyte2_sdk_logs_in_and_reaches_the_upstream_with_the_verified_identity(gw_tls, flyte2):
    """The `flyte` SDK discovers the metadata over Connect, logs in (ClientSecret as
    flytepropeller) and calls ProjectService with its own client set, adding forged identity
    headers: the upstream sees the verified identity only."""
    n = len(flyte2.seen())
    secret_file = gw_tls.secrets_dir / "flytepropeller_client_secret"
    r = run_probe(gw_tls, "projects", "flytepropeller", str(secret_file))
    assert r["list"] == {"ok": True, "projects": ["seen-by-upstream:flytepropeller"]}, r
    assert r["get"] == {"ok": False, "code": "not_found", "message": "project nope not found"}, r
    # The SDK's first try goes out without a token, is refused (and not forwarded), and it logs
    # in and retries: the upstream saw exactly the two authenticated calls.
    seen = flyte2.seen()[n:]
    assert [s["method"] for s in seen] == ["ListProjects", "GetProject"], seen
    for s in seen:
        h = s["headers"]
        # A client's identity has a subject only: the forged email, groups and username are
        # stripped, not passed on.
        assert {k: v for k, v in h.items() if k.startswith("x-auth-request-")} == {
            "x-auth-request-user": "flytepropeller"
        }, h
        assert h["flyte-authorization"].startswith("Bearer "), h
        claims = verify_identity_jwt(gw_tls, h["x-flyte-identity"], "flyte2")
        assert claims["sub"] == "flytepropeller", claims


def test_flyte2_sdk_without_credentials_is_unauthenticated_and_never_forwarded(gw_tls, flyte2):
    n = len(flyte2.seen())
    r = run_probe(gw_tls, "projects")
    assert r["list"] == {"ok": False, "code": "unauthenticated", "message": "missing access token"}, r
    assert r["get"] == {"ok": False, "code": "unauthenticated", "message": "missing access token"}, r
    assert flyte2.seen()[n:] == [], "a refused call reached the upstream"
