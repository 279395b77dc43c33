"""Revocation (RFC 7009, `/oauth2/revoke`) and introspection (RFC 7662, `/oauth2/introspect`) of the
built-in AS, end to end: flytekit's Pkce session loses its refresh token, a revoked access token is
refused on gRPC, introspection answers active/inactive and only to confidential clients."""

import time

import grpc
import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc
from flytekit.clients.auth import auth_client as flytekit_auth_client

from external_as import flytekit_client, pkce_browser, user_info_via  # noqa: F401 - fixture
from helpers import bearer, call_code
from oauth import (
    ALICE,
    HTTP_TIMEOUT_S,
    LoginWalkerBrowser,
    assert_oauth_error,
    assert_token_response,
    auth_extra,
    exchange_code,
    generated_propeller_secret,
    get_code,
    logged_in_session,
    refresh,
    token,
)

pytestmark = pytest.mark.timeout(120)

U = grpc.StatusCode.UNAUTHENTICATED
OK = grpc.StatusCode.OK


def revoke(server, tok, hint=None, client_id="flytectl", auth=None) -> requests.Response:
    data = {"token": tok}
    if hint:
        data["token_type_hint"] = hint
    if auth is None:
        data["client_id"] = client_id
    return requests.post(f"{server.url}/oauth2/revoke", data=data, auth=auth, timeout=HTTP_TIMEOUT_S)


def introspect(server, tok, auth=None, data_extra=None) -> requests.Response:
    return requests.post(f"{server.url}/oauth2/introspect", data=dict({"token": tok}, **(data_extra or {})),
                         auth=auth, timeout=HTTP_TIMEOUT_S)


def list_projects(server, tok):
    with grpc.insecure_channel(server.endpoint) as ch:
        return call_code(admin_pb2_grpc.AdminServiceStub(ch).ListProjects, project_pb2.ProjectListRequest(limit=5),
                         bearer(tok))


def code_flow_tokens(server, user=ALICE) -> dict:
    sess = logged_in_session(server, user)
    code, verifier, params = get_code(server, sess)
    return assert_token_response(exchange_code(server, code, verifier, params), refresh=True)


def propeller_token(server, secret) -> str:
    r = token(server, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", secret))
    return assert_token_response(r)["access_token"]


# --------------------------------------------------------------------------- flytekit Pkce


def test_revoked_refresh_token_makes_flytekits_next_refresh_fail(server_factory, pkce_browser, monkeypatch):
    srv = server_factory(auth_extra=auth_extra(clock_skew="0s", self_auth_server={"accessTokenLifespan": "3s"}))
    issued, refreshes = [], []
    real_request = flytekit_auth_client.AuthorizationClient._request_access_token
    real_refresh = flytekit_auth_client.AuthorizationClient.refresh_access_token

    def request_access_token(self, auth_code):
        creds = real_request(self, auth_code)
        issued.append(creds)
        return creds

    def refresh_access_token(self, credentials):
        try:
            out = real_refresh(self, credentials)
            refreshes.append("ok")
            return out
        except Exception as e:
            refreshes.append(type(e).__name__)
            raise

    monkeypatch.setattr(flytekit_auth_client.AuthorizationClient, "_request_access_token", request_access_token)
    monkeypatch.setattr(flytekit_auth_client.AuthorizationClient, "refresh_access_token", refresh_access_token)
    browser = pkce_browser(LoginWalkerBrowser(srv, ALICE))
    client = flytekit_client(srv, "Pkce")
    try:
        client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    assert not browser.errors, browser.errors
    assert browser.runs == 1 and len(issued) == 1
    rt = issued[0].refresh_token
    assert rt, issued

    r = revoke(srv, rt, hint="refresh_token")
    assert r.status_code == 200, (r.status_code, r.text)
    # the same refresh token at the token endpoint: dead
    assert_oauth_error(refresh(srv, rt), "invalid_grant", 400)
    # the access token of that family is dead too (revoking a refresh token revokes its family)
    assert list_projects(srv, issued[0].access_token)[0] == U

    time.sleep(3.5)  # past the 3 s access token: flytekit must refresh now
    # flytekit keeps the credentials of its last browser login for 60 s and would hand them out again
    # instead of opening the browser; age that cache so the fallback is a real new login.
    for inst in flytekit_auth_client._SingletonPerEndpoint._instances.values():
        inst._cached_credentials_ts = time.monotonic() - 3600
    try:
        client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    assert refreshes == ["AccessTokenNotFoundError"], refreshes
    assert not browser.errors, browser.errors
    assert browser.runs == 2, "after the failed refresh flytekit must log in again"
    assert user_info_via(client).subject == ALICE.username


# --------------------------------------------------------------------------- raw revocation


def test_revoked_access_token_is_refused_by_grpc(as_server):
    body = code_flow_tokens(as_server)
    at = body["access_token"]
    assert list_projects(as_server, at) == (OK, "")
    r = revoke(as_server, at, hint="access_token")
    assert r.status_code == 200 and "no-store" in r.headers.get("Cache-Control", ""), (r.status_code, r.text)
    code, details = list_projects(as_server, at)
    assert code == U, (code, details)
    # the refresh token of that grant still works (only the access token was revoked)
    new = assert_token_response(refresh(as_server, body["refresh_token"]), refresh=True)
    assert list_projects(as_server, new["access_token"]) == (OK, "")


def test_revoked_client_credentials_token_is_refused(as_server):
    secret = generated_propeller_secret(as_server)
    at = propeller_token(as_server, secret)
    assert list_projects(as_server, at) == (OK, "")
    r = revoke(as_server, at, auth=("flytepropeller", secret))
    assert r.status_code == 200, r.text
    assert list_projects(as_server, at)[0] == U


def test_access_token_revocation_by_another_client_is_ignored(as_server):
    """RFC 7009 §2.1: the token must have been issued to the revoking client; answer 200 anyway."""
    body = code_flow_tokens(as_server)
    r = revoke(as_server, body["access_token"], client_id="flyte-cli")
    assert r.status_code == 200, r.text
    assert list_projects(as_server, body["access_token"]) == (OK, "")


def test_refresh_token_revocation_by_another_client_is_ignored(as_server):
    """Same rule for refresh tokens: flyte-cli (public, no secret) must not be able to kill a
    flytectl session by 'revoking' its refresh token."""
    body = code_flow_tokens(as_server)
    r = revoke(as_server, body["refresh_token"], client_id="flyte-cli")
    assert r.status_code == 200, r.text
    assert_token_response(refresh(as_server, body["refresh_token"]), refresh=True)


def test_revoke_unknown_token_is_200_and_bad_client_is_401(as_server):
    assert revoke(as_server, "not-a-token").status_code == 200
    assert_oauth_error(revoke(as_server, "x", client_id="nobody"), "invalid_client", 401)
    assert_oauth_error(revoke(as_server, "x", auth=("flytepropeller", "wrong")), "invalid_client", 401)
    r = requests.post(f"{as_server.url}/oauth2/revoke", data={"client_id": "flytectl"}, timeout=HTTP_TIMEOUT_S)
    assert_oauth_error(r, "invalid_request", 400)


# --------------------------------------------------------------------------- introspection


def test_introspection_active_and_inactive(as_server):
    secret = generated_propeller_secret(as_server)
    auth = ("flytepropeller", secret)
    body = code_flow_tokens(as_server)
    r = introspect(as_server, body["access_token"], auth=auth)
    assert r.status_code == 200 and "no-store" in r.headers.get("Cache-Control", ""), (r.status_code, r.text)
    info = r.json()
    assert info["active"] is True, info
    assert info["sub"] == ALICE.username and info["client_id"] == "flytectl", info
    assert set(info["scope"].split()) == {"all", "offline"}, info
    assert info["iss"] == as_server.url and info["exp"] > time.time(), info
    assert info["token_type"] == "Bearer", info

    # refresh tokens are opaque: inactive (not disclosed)
    assert introspect(as_server, body["refresh_token"], auth=auth).json() == {"active": False}
    # garbage, tampered
    assert introspect(as_server, "a.b.c", auth=auth).json() == {"active": False}
    h, p, s = body["access_token"].split(".")
    assert introspect(as_server, f"{h}.{p}.{s[:-4]}AAAA", auth=auth).json() == {"active": False}
    # revoked
    assert revoke(as_server, body["access_token"], hint="access_token").status_code == 200
    assert introspect(as_server, body["access_token"], auth=auth).json() == {"active": False}


def test_introspection_refuses_public_and_unauthenticated_clients(as_server):
    body = code_flow_tokens(as_server)
    for cid in ("flytectl", "flyte-cli"):
        r = introspect(as_server, body["access_token"], data_extra={"client_id": cid})
        info = assert_oauth_error(r, "invalid_client")
        assert "active" not in info, info
    r = introspect(as_server, body["access_token"])
    assert_oauth_error(r, "invalid_client")
    r = introspect(as_server, body["access_token"], auth=("flytepropeller", "wrong"))
    assert_oauth_error(r, "invalid_client", 401)
