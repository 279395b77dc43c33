"""Per-project roles (auth.authorization.bindings, DESIGN.md §12) with real clients: flytekit
(ClientSecret for flytepropeller, Pkce for two local users in different groups) against
flyteauth's own project RPCs, and config errors through the binary.

Pkce tests use flytekit's fixed callback port (localhost:53593): they run one at a time.
"""

import socket
import subprocess
import threading
import webbrowser

import grpc
import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc
from flytekit.clients.auth import auth_client as flytekit_auth_client
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.models.project import Project

from conftest import FLYTEAUTH_BIN
from helpers import RPC_TIMEOUT_S
from oauth import LocalUser, LoginWalkerBrowser, auth_extra, generated_propeller_secret, send_dummy_callback

pytestmark = pytest.mark.timeout(180)

CALLBACK_PORT = 53593

VERA = LocalUser("vera", "vera-pw-0123456789", "Vera Viewer", "vera@example.com", ("analysts",))
CARL = LocalUser("carl", "carl-pw-0123456789", "Carl Contributor", "carl@example.com", ("ml-team",))

AS_AUTH_EXTRA = dict(
    auth_extra(users=(VERA, CARL)),
    authorization={
        "bindings": [
            # flytepropeller, by client id: project admin of alpha and beta only.
            {"role": "projectAdmin", "clients": ["flytepropeller"], "projects": ["alpha", "beta"], "domains": ["*"]},
            {"role": "viewer", "groups": ["analysts"], "projects": ["alpha"], "domains": ["*"]},
            {"role": "contributor", "groups": ["ml-team"], "projects": ["beta"], "domains": ["development"]},
        ]
    },
)


def propeller(server) -> SynchronousFlyteClient:
    return SynchronousFlyteClient(
        PlatformConfig(
            endpoint=server.endpoint,
            insecure=True,
            auth_mode="ClientSecret",
            client_id="flytepropeller",
            client_credentials_secret=generated_propeller_secret(server),
            rpc_retries=1,
        )
    )


def pkce_client(server) -> SynchronousFlyteClient:
    return SynchronousFlyteClient(PlatformConfig(endpoint=server.endpoint, insecure=True, auth_mode="Pkce", rpc_retries=1))


@pytest.fixture
def pkce(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", CALLBACK_PORT))
        except OSError as e:
            pytest.fail(f"flytekit's PKCE callback port {CALLBACK_PORT} is in use: {e}", pytrace=False)
    flytekit_auth_client._SingletonPerEndpoint._instances.clear()
    watchdog = threading.Timer(90, send_dummy_callback)
    watchdog.daemon = True
    watchdog.start()

    def install(browser: LoginWalkerBrowser):
        monkeypatch.setattr(webbrowser, "open_new_tab", browser.open_new_tab)
        return browser

    yield install
    watchdog.cancel()
    flytekit_auth_client._SingletonPerEndpoint._instances.clear()


def project_ids(client: SynchronousFlyteClient):
    projects, _ = client.list_projects_paginated(limit=100)
    return sorted(p.id for p in projects)


def get_project(client: SynchronousFlyteClient, pid: str):
    """AdminService.GetProject through flytekit's authenticated channel (flytekit has no helper)."""
    stub = admin_pb2_grpc.AdminServiceStub(client._channel)
    return stub.GetProject(project_pb2.ProjectGetRequest(id=pid), timeout=RPC_TIMEOUT_S)


def denied(exc_info) -> str:
    """The PERMISSION_DENIED message of a refused call (flytekit passes the grpc error on)."""
    e = exc_info.value
    text = str(e)
    if isinstance(e, grpc.RpcError):
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        return e.details()
    assert "PERMISSION_DENIED" in text or "permission denied" in text, text
    return text


@pytest.fixture(scope="module")
def registered(as_server):
    """alpha and beta registered by flytepropeller (bound there); gamma refused to it."""
    client = propeller(as_server)
    for pid in ("alpha", "beta"):
        client.register_project(Project(id=pid, name=pid, description=f"{pid} project"))
    return client


def test_propeller_works_where_bound_and_only_there(as_server, registered):
    assert project_ids(registered) == ["alpha", "beta"]
    with pytest.raises(Exception) as exc_info:
        registered.register_project(Project(id="gamma", name="gamma", description="not bound"))
    msg = denied(exc_info)
    assert "ADMINISTER_PROJECT" in msg and "gamma" in msg, msg
    assert "flytepropeller" not in msg.split("gamma")[-1], msg  # never names bindings


def test_viewer_lists_and_gets_its_project_and_cannot_register(as_server, registered, pkce):
    browser = pkce(LoginWalkerBrowser(as_server, VERA))
    client = pkce_client(as_server)
    try:
        assert project_ids(client) == ["alpha"]
    finally:
        browser.join()
    assert not browser.errors, browser.errors
    assert get_project(client, "alpha").id == "alpha"
    with pytest.raises(Exception) as exc_info:
        get_project(client, "beta")
    msg = denied(exc_info)
    assert "VIEW_FLYTE_INVENTORY" in msg and "beta" in msg, msg
    with pytest.raises(Exception) as exc_info:
        client.register_project(Project(id="vera-project", name="v", description="v"))
    assert "ADMINISTER_PROJECT" in denied(exc_info)
    with pytest.raises(Exception) as exc_info:
        client.update_project(Project(id="alpha", name="alpha", description="changed by a viewer"))
    denied(exc_info)
    assert get_project(registered, "alpha").description == "alpha project", "a refused update changed nothing"


def test_contributor_in_beta_is_refused_in_alpha(as_server, registered, pkce):
    browser = pkce(LoginWalkerBrowser(as_server, CARL))
    client = pkce_client(as_server)
    try:
        assert project_ids(client) == ["beta"]
    finally:
        browser.join()
    assert not browser.errors, browser.errors
    assert get_project(client, "beta").id == "beta"
    with pytest.raises(Exception) as exc_info:
        get_project(client, "alpha")
    assert "alpha" in denied(exc_info)
    with pytest.raises(Exception) as exc_info:
        client.update_project(Project(id="beta", name="beta", description="contributors do not administer"))
    assert "ADMINISTER_PROJECT" in denied(exc_info)


def test_me_lists_the_callers_roles(as_server, registered):
    secret = generated_propeller_secret(as_server)
    tok = requests.post(
        f"{as_server.url}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "all"},
        auth=("flytepropeller", secret),
        timeout=10,
    ).json()["access_token"]
    me = requests.get(f"{as_server.url}/me", headers={"Authorization": f"Bearer {tok}"}, timeout=10).json()
    assert [(r["role"], r["projects"], r["domains"]) for r in me["roles"]] == [("projectAdmin", ["alpha", "beta"], ["*"])]


@pytest.mark.parametrize(
    "authorization,key",
    [
        ("bindings: [{role: owner, groups: [g], projects: ['*'], domains: ['*']}]", "auth.authorization.bindings[0].role"),
        ("roles: {auditor: [VIEW_ALL_THE_THINGS]}", "auth.authorization.roles.auditor[0]"),
        ("bindings: [{role: viewer, projects: ['*'], domains: ['*']}]", "auth.authorization.bindings[0]"),
        ("bindings: [{role: viewer, groups: [g], projects: [], domains: ['*']}]", "auth.authorization.bindings[0].projects"),
    ],
)
def test_bad_bindings_exit_64_naming_the_key(tmp_path, authorization, key):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"auth:\n  authorization:\n    {authorization}\n")
    for cmd in ("check-config", "serve"):
        p = subprocess.run([FLYTEAUTH_BIN, cmd, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 64, (cmd, p.stderr)
        assert key in p.stderr, (cmd, p.stderr)
