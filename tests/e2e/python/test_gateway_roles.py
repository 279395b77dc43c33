"""Per-project roles (auth.authorization.bindings, DESIGN.md §12) on forwarded calls (§11),
with the real clients logged in as two local users in different groups:

- flytekit (Pkce) through the gateway to the Flyte 1 upstream stand-in (a grpcio AdminService);
- Flyte 2's `flyte` SDK, through its public API (`flyte.init`, `flyte.remote.Project`), as Pkce
  and as DeviceFlow users over TLS, through the gateway to the Flyte 2 upstream stand-in (a
  connectrpc ProjectService).

Vera (group analysts) is a viewer of project alpha; Carl (group ml-team) a contributor in beta's
development domain; flytepropeller, by client id, a project admin of alpha and beta. Every
refused call is checked to never reach the upstream.

Pkce tests use the fixed callback port localhost:53593 (flytekit's and the SDK's): they run one
at a time.
"""

from __future__ import annotations

import threading

import pytest
import requests
from flyteidl.admin import execution_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc

from conftest import free_port
from helpers import RPC_TIMEOUT_S, make_tls_files
from oauth import FLYTEKIT_REDIRECT_URI, LoginWalkerBrowser, auth_extra, query_of, send_dummy_callback, walk_authorize
from test_connect import run_probe
from test_device_flow import decide
from test_gateway import GatewayServer, flyte1, flyte2, flytekit_client  # noqa: F401 - upstream fixtures
from test_roles import CARL, VERA, denied, pkce, pkce_client  # noqa: F401 - pkce is a fixture

pytestmark = pytest.mark.timeout(180)

BINDINGS = [
    {"role": "viewer", "groups": ["analysts"], "projects": ["alpha"], "domains": ["*"]},
    {"role": "contributor", "groups": ["ml-team"], "projects": ["beta"], "domains": ["development"]},
    {"role": "projectAdmin", "clients": ["flytepropeller"], "projects": ["alpha", "beta"], "domains": ["*"]},
]


def gateway(tmp, upstreams, tls=False) -> GatewayServer:
    srv = GatewayServer(
        tmp_dir=tmp,
        port=free_port(),
        auth_extra=dict(auth_extra(users=(VERA, CARL)), authorization={"bindings": BINDINGS}),
    )
    if tls:
        srv.tls = make_tls_files(tmp)
    srv.gateway = {"upstreams": upstreams}
    srv.start()
    return srv


@pytest.fixture(scope="module")
def gw(tmp_path_factory, flyte1):
    """flytekit's side: plaintext, FlyteAdmin's AdminService forwarded."""
    srv = gateway(
        tmp_path_factory.mktemp("gateway_roles_v1"),
        [{"name": "flyteadmin", "url": flyte1.url, "services": ["flyteidl.service.AdminService"]}],
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gw_tls(tmp_path_factory, flyte2):
    """The SDK's side: TLS (the SDK skips authentication over plaintext), Flyte 2 forwarded."""
    srv = gateway(
        tmp_path_factory.mktemp("gateway_roles_v2"),
        [{"name": "flyte2", "url": flyte2.url, "services": ["flyteidl2.*"]}],
        tls=True,
    )
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- flytekit, Flyte 1


def execution_id(project: str, domain: str, name: str = "e1"):
    return identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)


def get_execution(client, project: str, domain: str):
    stub = admin_pb2_grpc.AdminServiceStub(client._channel)
    return stub.GetExecution(execution_pb2.WorkflowExecutionGetRequest(id=execution_id(project, domain)), timeout=RPC_TIMEOUT_S)


def launch(client, project: str, domain: str):
    """AdminService.CreateExecution through flytekit's authenticated channel."""
    stub = admin_pb2_grpc.AdminServiceStub(client._channel)
    req = execution_pb2.ExecutionCreateRequest(project=project, domain=domain, name="run1", spec=execution_pb2.ExecutionSpec())
    return stub.CreateExecution(req, timeout=RPC_TIMEOUT_S)


def refused(upstream, call) -> str:
    """Runs `call`, which must be refused with PERMISSION_DENIED before reaching the upstream
    (flytekit's channel wraps the grpc error in its own exception)."""
    before = upstream.rec.count()
    with pytest.raises(Exception) as exc_info:
        call()
    assert upstream.rec.count() == before, "a refused call reached the upstream"
    return denied(exc_info)


def logged_in(gw, pkce, user):
    """A flytekit client logged in as `user` (Pkce through the real login pages); its first call
    (ListProjects, forwarded) returns what the upstream saw."""
    browser = pkce(LoginWalkerBrowser(gw, user))
    client = pkce_client(gw)
    try:
        projects, _ = client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    assert not browser.errors, browser.errors
    return client, [p.name for p in projects]


def test_flytekit_viewer_reads_its_project_and_cannot_launch(gw, flyte1, pkce):
    client, seen_as = logged_in(gw, pkce, VERA)
    assert seen_as == [f"seen-by-upstream:{VERA.username}"]
    assert get_execution(client, "alpha", "production").id.project == "alpha"
    md = flyte1.rec.last("GetExecution")
    assert md["x-auth-request-user"] == VERA.username and md["x-auth-request-groups"] == "analysts", md

    msg = refused(flyte1, lambda: launch(client, "alpha", "development"))
    assert "CREATE_FLYTE_EXECUTIONS" in msg and "alpha" in msg, msg
    msg = refused(flyte1, lambda: get_execution(client, "beta", "development"))
    assert "VIEW_FLYTE_EXECUTIONS" in msg and "beta" in msg, msg
    assert "analysts" not in msg and "ml-team" not in msg, msg  # never names bindings


def test_flytekit_contributor_launches_in_beta_and_is_refused_in_alpha(gw, flyte1, pkce):
    client, _ = logged_in(gw, pkce, CARL)
    assert launch(client, "beta", "development").id.name == "run1"
    assert flyte1.rec.last("CreateExecution")["x-auth-request-user"] == CARL.username
    # Bound to beta's development domain only, and not to alpha at all.
    assert "production" in refused(flyte1, lambda: launch(client, "beta", "production"))
    assert "alpha" in refused(flyte1, lambda: get_execution(client, "alpha", "development"))
    assert "alpha" in refused(flyte1, lambda: launch(client, "alpha", "development"))


def test_flytekit_propeller_works_where_bound_by_client_id(gw, flyte1):
    client = flytekit_client(gw)
    for project in ("alpha", "beta"):
        assert launch(client, project, "production").id.project == project
        assert flyte1.rec.last("CreateExecution")["x-auth-request-user"] == "flytepropeller"
    assert "gamma" in refused(flyte1, lambda: launch(client, "gamma", "production"))


# --------------------------------------------------------------------------- the flyte SDK, Flyte 2


def sdk_projects(srv, user, auth_type: str, *projects: str) -> dict:
    """`flyte.init` as `user` (the parent walks the login pages), then Project.get / .create."""
    seen: dict = {"walks": 0, "errors": []}

    def user_side(kind: str, url: str) -> None:
        def walk():
            try:
                if kind == "BROWSER":
                    w = walk_authorize(srv, requests.Session(), url, user)
                    final = w.final_url or ""
                    assert final.startswith(FLYTEKIT_REDIRECT_URI) and "code" in query_of(final), final
                    # The SDK's loopback listener (plain http on localhost:53593).
                    assert requests.get(final, timeout=15).status_code == 200
                else:
                    sess = requests.Session()
                    sess.trust_env = False
                    sess.verify = str(srv.tls.ca_cert)
                    r = decide(srv, sess, url, user)
                    assert r.status_code == 200 and "Device connected" in r.text, (r.status_code, r.text[:500])
                seen["walks"] += 1
            except BaseException as e:  # noqa: BLE001 - never leave the SDK waiting
                seen["errors"].append(e)
                if kind == "BROWSER":
                    send_dummy_callback()

        if kind in ("BROWSER", "VERIFY"):
            threading.Thread(target=walk, daemon=True).start()

    r = run_probe(srv, "sdk-projects", auth_type, *projects, on_line=user_side, errors=seen["errors"])
    assert not seen["errors"], seen["errors"]
    assert seen["walks"] == 1, seen
    return r


def upstream_calls(flyte2, since: int) -> list:
    return [(c["method"], c["headers"].get("x-auth-request-user"), c["headers"].get("x-auth-request-groups"))
            for c in flyte2.seen()[since:]]


def test_flyte2_sdk_viewer_gets_its_project_and_cannot_create(gw_tls, flyte2, pkce):
    n = len(flyte2.seen())
    r = sdk_projects(gw_tls, VERA, "Pkce", "alpha", "beta")
    # Forwarded: the stand-in's own answer (it stores no projects).
    assert r["get alpha"] == {"ok": False, "code": "not_found", "message": "project alpha not found"}, r
    for verb, project, action in (("create", "alpha", "ADMINISTER_PROJECT"), ("get", "beta", "VIEW_FLYTE_INVENTORY"),
                                  ("create", "beta", "ADMINISTER_PROJECT")):
        got = r[f"{verb} {project}"]
        assert got["code"] == "permission_denied", r
        assert action in got["message"] and project in got["message"], got
    assert upstream_calls(flyte2, n) == [("GetProject", VERA.username, "analysts")], "only the allowed call is forwarded"


def test_flyte2_sdk_contributor_in_beta_is_refused_in_alpha(gw_tls, flyte2):
    n = len(flyte2.seen())
    r = sdk_projects(gw_tls, CARL, "DeviceFlow", "beta", "alpha")
    assert r["get beta"] == {"ok": False, "code": "not_found", "message": "project beta not found"}, r
    assert r["get alpha"]["code"] == "permission_denied" and "alpha" in r["get alpha"]["message"], r
    # A contributor registers workflows and runs them; creating projects needs an admin.
    assert r["create beta"]["code"] == "permission_denied" and "ADMINISTER_PROJECT" in r["create beta"]["message"], r
    assert r["create alpha"]["code"] == "permission_denied", r
    assert upstream_calls(flyte2, n) == [("GetProject", CARL.username, "ml-team")], "only the allowed call is forwarded"
