"""flytekit against the built-in authorization server: ClientSecret (client_credentials with
the generated flytepropeller secret, and a Flyte-shaped staticClients block) and Pkce (the
browser replaced by a thread that walks the real login pages with requests).

Pkce tests use flytekit's fixed callback port (localhost:53593): they run one at a time
(never under xdist) and always unblock flytekit's one-shot callback server.
"""

import socket
import threading
import time
import webbrowser

import pytest
import requests
from flyteidl.service import identity_pb2, identity_pb2_grpc
from flytekit.clients.auth import auth_client as flytekit_auth_client
from flytekit.clients.auth.exceptions import AuthenticationError
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.exceptions.base import FlyteException

from helpers import RPC_TIMEOUT_S
from oauth import (
    ALICE,
    HTTP_TIMEOUT_S,
    LoginWalkerBrowser,
    assert_oauth_error,
    auth_extra,
    flyte_client_secret,
    generated_propeller_secret,
    send_dummy_callback,
    token,
)

pytestmark = pytest.mark.timeout(120)

CALLBACK_PORT = 53593


def client_secret_client(server, client_id, secret, scopes=None) -> SynchronousFlyteClient:
    return SynchronousFlyteClient(
        PlatformConfig(
            endpoint=server.endpoint,
            insecure=True,
            auth_mode="ClientSecret",
            client_id=client_id,
            client_credentials_secret=secret,
            scopes=scopes,
            rpc_retries=1,
        )
    )


def user_info_via(client: SynchronousFlyteClient):
    """IdentityService.UserInfo through flytekit's own authenticated channel."""
    stub = identity_pb2_grpc.IdentityServiceStub(client._channel)
    return stub.UserInfo(identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_S)


# --------------------------------------------------------------------------- ClientSecret


def test_client_secret_with_generated_propeller_secret(as_server):
    secret = generated_propeller_secret(as_server)
    client = client_secret_client(as_server, "flytepropeller", secret)
    projects, _ = client.list_projects_paginated(limit=10)
    assert isinstance(projects, list)
    info = user_info_via(client)
    assert info.subject == "flytepropeller", info


def test_client_secret_with_wrong_secret_fails_authentication(as_server):
    secret = generated_propeller_secret(as_server)
    client = client_secret_client(as_server, "flytepropeller", "wrong-" + secret)
    with pytest.raises((AuthenticationError, FlyteException)) as exc_info:
        client.list_projects_paginated(limit=10)
    msg = str(exc_info.value)
    assert "401" in msg and "invalid_client" in msg, repr(exc_info.value)
    assert secret not in msg
    # the body flytekit logged is RFC 6749 JSON
    r = token(as_server, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", "wrong-" + secret))
    assert_oauth_error(r, "invalid_client", 401)


# A secret with characters that flytekit's quote_plus and Basic's URL-decoding must round-trip.
STATIC_SECRET = "s3cr3t +/=&:%é-" + "x" * 8

STATIC_CLIENTS = {
    "flytepropeller": {
        "id": "flytepropeller",
        "client_secret": flyte_client_secret(STATIC_SECRET),
        "redirect_uris": ["http://localhost:3846/callback"],
        "grant_types": ["refresh_token", "client_credentials"],
        "response_types": ["token"],
        "scopes": ["all", "offline", "access_token"],
        "public": False,
    },
    "ci-bot": {
        "id": "ci-bot",
        "client_secret": flyte_client_secret("ci-bot-secret"),
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
        "scopes": ["all", "access_token"],
        "public": False,
    },
}


@pytest.fixture(scope="module")
def static_clients_server(tmp_path_factory):
    from conftest import FlyteAuthServer, free_port

    tmp = tmp_path_factory.mktemp("static_clients")
    srv = FlyteAuthServer(
        tmp_dir=tmp,
        port=free_port(),
        auth_extra=auth_extra(self_auth_server={"staticClients": STATIC_CLIENTS}),
    )
    srv.start()
    yield srv
    srv.stop()


def test_client_secret_with_flyte_shaped_static_clients(static_clients_server):
    srv = static_clients_server
    client = client_secret_client(srv, "flytepropeller", STATIC_SECRET)
    projects, _ = client.list_projects_paginated(limit=10)
    assert isinstance(projects, list)
    assert user_info_via(client).subject == "flytepropeller"

    bot = client_secret_client(srv, "ci-bot", "ci-bot-secret", scopes=["all"])
    bot.list_projects_paginated(limit=10)
    assert user_info_via(bot).subject == "ci-bot"


def test_static_clients_replace_the_defaults(static_clients_server):
    srv = static_clients_server
    r = token(srv, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", "wrong"))
    assert_oauth_error(r, "invalid_client", 401)
    # flytectl is a default client only: gone once staticClients is configured
    r = token(srv, {"grant_type": "refresh_token", "refresh_token": "x" * 43, "client_id": "flytectl"})
    assert_oauth_error(r, "invalid_client", 401)


# --------------------------------------------------------------------------- Pkce


@pytest.fixture
def pkce(monkeypatch):
    """Fresh flytekit AuthorizationClient singletons, the callback port free, a watchdog that
    unblocks flytekit's callback server if nothing else did."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as flytekit's HTTPServer does (allow_reuse_address): TIME_WAIT from the last test is fine
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


def pkce_client(server) -> SynchronousFlyteClient:
    return SynchronousFlyteClient(
        PlatformConfig(endpoint=server.endpoint, insecure=True, auth_mode="Pkce", rpc_retries=1)
    )


def _assert_walk_ok(browser: LoginWalkerBrowser, runs: int):
    browser.join()
    assert not browser.errors, f"login walk failed: {browser.errors!r}"
    assert browser.runs == runs, browser.runs


def test_pkce_login_lists_projects_as_alice(as_server, pkce):
    browser = pkce(LoginWalkerBrowser(as_server, ALICE))
    client = pkce_client(as_server)
    try:
        projects, _ = client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    assert not browser.errors, f"login walk failed: {browser.errors!r}"
    assert isinstance(projects, list)
    assert browser.runs == 1
    info = user_info_via(client)
    assert info.subject == "alice", info
    assert info.email == ALICE.email, info
    _assert_walk_ok(browser, 1)


@pytest.fixture(scope="module")
def short_token_server(tmp_path_factory):
    from conftest import FlyteAuthServer, free_port

    tmp = tmp_path_factory.mktemp("short_tokens")
    srv = FlyteAuthServer(
        tmp_dir=tmp,
        port=free_port(),
        auth_extra=auth_extra(clock_skew="0s", self_auth_server={"accessTokenLifespan": "3s", "refreshTokenLifespan": "1h"}),
    )
    srv.start()
    yield srv
    srv.stop()


def test_pkce_refreshes_after_access_token_expiry_without_browser(short_token_server, pkce, monkeypatch):
    srv = short_token_server
    refreshes = []
    real_refresh = flytekit_auth_client.AuthorizationClient.refresh_access_token

    def counting_refresh(self, credentials):
        refreshes.append(time.monotonic())
        return real_refresh(self, credentials)

    monkeypatch.setattr(flytekit_auth_client.AuthorizationClient, "refresh_access_token", counting_refresh)
    browser = pkce(LoginWalkerBrowser(srv, ALICE))
    client = pkce_client(srv)
    try:
        client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    _assert_walk_ok(browser, 1)
    assert user_info_via(client).subject == "alice"
    assert refreshes == []

    time.sleep(4.5)  # past the 3 s access token (clockSkew 0s)
    client.list_projects_paginated(limit=10)
    assert len(refreshes) == 1, refreshes
    assert user_info_via(client).subject == "alice"
    _assert_walk_ok(browser, 1)  # no second browser walk

    time.sleep(4.5)  # and again with the rotated refresh token
    client.list_projects_paginated(limit=10)
    assert len(refreshes) == 2, refreshes
    _assert_walk_ok(browser, 1)


def test_pkce_wrong_password_never_hangs(as_server, pkce):
    """A failed login walk sends a dummy callback: flytekit raises instead of waiting forever."""
    from oauth import LocalUser

    browser = pkce(LoginWalkerBrowser(as_server, LocalUser("alice", "not-her-password", "", "")))
    client = pkce_client(as_server)
    t0 = time.monotonic()
    with pytest.raises(Exception):
        client.list_projects_paginated(limit=10)
    browser.join()
    assert browser.errors, "the walk should have failed on the login page"
    assert time.monotonic() - t0 < 60


def test_hash_secret_cli_output_loads_as_a_static_client(server_factory):
    """`flyteauth hash-secret` prints Flyte's base64(bcrypt) form: Python's bcrypt verifies it,
    and a staticClients block using it authenticates flytekit."""
    import base64
    import subprocess

    import bcrypt

    from conftest import FLYTEAUTH_BIN

    secret = "cli-" + "s3cr3t/+=" + str(time.time_ns())
    p = subprocess.run([FLYTEAUTH_BIN, "hash-secret", "--cost", "6"], input=secret, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    encoded = p.stdout.strip().splitlines()[-1]
    assert bcrypt.checkpw(secret.encode(), base64.b64decode(encoded)), encoded
    clients = {"flytepropeller": dict(STATIC_CLIENTS["flytepropeller"], client_secret=encoded)}
    srv = server_factory(auth_extra=auth_extra(self_auth_server={"staticClients": clients}))
    client = client_secret_client(srv, "flytepropeller", secret)
    client.list_projects_paginated(limit=10)
    assert user_info_via(client).subject == "flytepropeller"
