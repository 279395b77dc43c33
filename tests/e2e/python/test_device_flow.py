"""Device authorization grant (RFC 8628) of the built-in AS: flytekit `DeviceFlow` with the user's
side walked by a thread (login as a local user at /login, enter the code at /oauth2/device,
approve) while flytekit polls; the raw polling answers (authorization_pending, slow_down,
access_denied, used codes, other clients) and the user-code pages (session, CSRF, unknown code).

Expiry (`expired_token`) is not reachable in an e2e run: the device code lifetime is a constant
600 s (no config key), so the test only checks that a fresh code is NOT expired; expiry is left
to the Rust tests with an injected clock.
"""

import re
import threading
import time
import urllib.parse

import grpc
import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc

from external_as import flytekit_client, user_info_via
from helpers import bearer, call_code
from oauth import (
    ALICE,
    BOB,
    HTTP_TIMEOUT_S,
    assert_oauth_error,
    assert_token_response,
    login_form,
    parse_forms,
    verify_access_token,
)

pytestmark = pytest.mark.timeout(120)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE_RE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def device_authorization(server, client_id="flytectl", scope="all offline") -> requests.Response:
    return requests.post(f"{server.url}/oauth2/device_authorization", data={"client_id": client_id, "scope": scope},
                         timeout=HTTP_TIMEOUT_S)


def poll(server, device_code, client_id="flytectl") -> requests.Response:
    return requests.post(f"{server.url}/oauth2/token",
                         data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
                         timeout=HTTP_TIMEOUT_S)


def start(server, **kw) -> dict:
    r = device_authorization(server, **kw)
    assert r.status_code == 200, (r.status_code, r.text)
    assert "no-store" in r.headers.get("Cache-Control", "")
    return r.json()


def open_code_page(server, sess, url, user):
    """GET the verification URI like a browser: no session → /login → back. Returns the code form."""
    r = sess.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    if r.status_code == 303:
        loc = urllib.parse.urljoin(url, r.headers["Location"])
        assert urllib.parse.urlsplit(loc).path == "/login", loc
        page = sess.get(loc, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        assert page.status_code == 200, page.status_code
        form = login_form(page.text)
        fields = dict(form.inputs, username=user.username, password=user.password)
        r = sess.post(urllib.parse.urljoin(loc, form.action or "/login"), data=fields, allow_redirects=False,
                      timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 303, (r.status_code, r.text[:500])
        back = urllib.parse.urljoin(loc, r.headers["Location"])
        assert back.startswith(server.url + "/oauth2/device?"), back
        r = sess.get(back, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    forms = [f for f in parse_forms(r.text) if "user_code" in f.inputs]
    assert len(forms) == 1, r.text[:1500]
    assert forms[0].input_types.get("csrf_token") == "hidden", forms[0]
    return forms[0]


def decide(server, sess, url, user, action="approve") -> requests.Response:
    """The user's whole side: open the page, submit the (prefilled) code, then approve or deny."""
    form = open_code_page(server, sess, url, user)
    r = sess.post(f"{server.url}/oauth2/device", data=form.inputs, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, (r.status_code, r.text[:800])
    confirm = [f for f in parse_forms(r.text) if "user_code" in f.inputs and "csrf_token" in f.inputs]
    assert len(confirm) == 1, r.text[:1500]
    assert 'name="action" value="approve"' in r.text and 'name="action" value="deny"' in r.text, r.text[:1500]
    return sess.post(f"{server.url}/oauth2/device", data=dict(confirm[0].inputs, action=action),
                     allow_redirects=False, timeout=HTTP_TIMEOUT_S)


# --------------------------------------------------------------------------- flytekit DeviceFlow


def test_flytekit_device_flow_as_bob(as_server, monkeypatch):
    from flytekit.clients.auth import token_client

    real_get_device_code = token_client.get_device_code
    real_get_token = token_client.get_token
    seen = {"device": [], "polls": [], "errors": [], "decisions": []}

    def walk_user_side(uri):
        try:
            r = decide(as_server, requests.Session(), uri, BOB)
            seen["decisions"].append(r.status_code)
            assert r.status_code == 200 and "Device connected" in r.text, (r.status_code, r.text[:500])
        except BaseException as e:  # noqa: BLE001
            seen["errors"].append(e)

    def get_device_code(*a, **kw):
        resp = real_get_device_code(*a, **kw)
        seen["device"].append(resp)
        # what flytekit prints for the user: verification_uri?user_code=...
        uri = f"{resp.verification_uri}?user_code={resp.user_code}"
        threading.Thread(target=walk_user_side, args=(uri,), daemon=True).start()
        return resp

    def get_token(*a, **kw):
        try:
            out = real_get_token(*a, **kw)
            seen["polls"].append((time.monotonic(), kw.get("grant_type"), "ok"))
            return out
        except Exception as e:
            seen["polls"].append((time.monotonic(), kw.get("grant_type"), type(e).__name__))
            raise

    monkeypatch.setattr(token_client, "get_device_code", get_device_code)
    monkeypatch.setattr(token_client, "get_token", get_token)
    client = flytekit_client(as_server, "DeviceFlow")
    projects, _ = client.list_projects_paginated(limit=10)
    assert not seen["errors"], seen["errors"]
    assert isinstance(projects, list)
    assert len(seen["device"]) == 1
    d = seen["device"][0]
    assert USER_CODE_RE.match(d.user_code), d.user_code
    assert d.verification_uri == as_server.url + "/oauth2/device"
    assert d.interval == 5 and d.expires_in == 600, d
    assert seen["polls"][-1][2] == "ok", seen["polls"]
    assert all(p[1] == token_client.GrantType.DEVICE_CODE for p in seen["polls"]), seen["polls"]
    info = user_info_via(client)
    assert info.subject == BOB.username and info.email == BOB.email, info


# --------------------------------------------------------------------------- raw protocol


def test_device_authorization_response_shape(as_server):
    d = start(as_server)
    assert set(d) >= {"device_code", "user_code", "verification_uri", "verification_uri_complete",
                      "expires_in", "interval"}, d
    assert USER_CODE_RE.match(d["user_code"]), d
    assert d["verification_uri"] == as_server.url + "/oauth2/device"
    assert d["verification_uri_complete"] == d["verification_uri"] + "?user_code=" + d["user_code"]
    assert d["expires_in"] == 600 and d["interval"] == 5, d
    assert len(d["device_code"]) >= 43


def test_device_authorization_refusals(as_server):
    # confidential client without its secret
    assert_oauth_error(device_authorization(as_server, client_id="flytepropeller"), "invalid_client", 401)
    assert_oauth_error(device_authorization(as_server, client_id="nobody"), "invalid_client", 401)
    assert_oauth_error(device_authorization(as_server, scope="all admin-everything"), "invalid_scope", 400)


def test_pending_then_slow_down_then_tokens(as_server):
    d = start(as_server)
    assert_oauth_error(poll(as_server, d["device_code"]), "authorization_pending", 400)
    # again at once, well inside the 5 s interval
    assert_oauth_error(poll(as_server, d["device_code"]), "slow_down", 400)
    r = decide(as_server, requests.Session(), d["verification_uri_complete"], ALICE)
    assert r.status_code == 200 and "Device connected" in r.text, r.text[:500]
    time.sleep(10.5)  # slow_down adds 5 s to the interval (RFC 8628 §3.5)
    body = assert_token_response(poll(as_server, d["device_code"]), refresh=True)
    _, claims = verify_access_token(as_server, body["access_token"])
    assert claims["sub"] == ALICE.username and claims["client_id"] == "flytectl", claims
    assert sorted(claims["scp"]) == ["all", "offline"], claims
    with grpc.insecure_channel(as_server.endpoint) as ch:
        code, details = call_code(admin_pb2_grpc.AdminServiceStub(ch).ListProjects,
                                  project_pb2.ProjectListRequest(limit=5), bearer(body["access_token"]))
    assert code == grpc.StatusCode.OK, details
    # the device code is spent
    time.sleep(5.5)
    assert_oauth_error(poll(as_server, d["device_code"]), "invalid_grant", 400)


def test_denied_is_access_denied(as_server):
    d = start(as_server)
    r = decide(as_server, requests.Session(), d["verification_uri_complete"], ALICE, action="deny")
    assert r.status_code == 200 and "denied" in r.text.lower(), r.text[:500]
    assert_oauth_error(poll(as_server, d["device_code"]), "access_denied", 400)


def test_unknown_device_code(as_server):
    assert_oauth_error(poll(as_server, "x" * 43), "invalid_grant", 400)


def test_pending_device_code_polled_by_another_client_is_invalid_grant(as_server):
    """RFC 6749 §5.2: a grant issued to another client is invalid_grant, whatever its state."""
    d = start(as_server)
    assert_oauth_error(poll(as_server, d["device_code"], client_id="flyte-cli"), "invalid_grant", 400)


def test_approved_device_code_polled_by_another_client_does_not_burn_it(as_server):
    d = start(as_server)
    r = decide(as_server, requests.Session(), d["verification_uri_complete"], ALICE)
    assert r.status_code == 200 and "Device connected" in r.text, r.text[:500]
    assert_oauth_error(poll(as_server, d["device_code"], client_id="flyte-cli"), "invalid_grant", 400)
    # the rightful client still gets its tokens
    body = assert_token_response(poll(as_server, d["device_code"]), refresh=True)
    assert verify_access_token(as_server, body["access_token"])[1]["sub"] == ALICE.username


def test_fresh_code_is_not_expired_early(as_server):
    """expired_token needs 600 s (not configurable): only 'not early' is checked here."""
    d = start(as_server)
    assert_oauth_error(poll(as_server, d["device_code"]), "authorization_pending", 400)
    time.sleep(5.5)
    body = assert_oauth_error(poll(as_server, d["device_code"]), "authorization_pending", 400)
    assert body["error"] != "expired_token"


# --------------------------------------------------------------------------- the user-code pages


def test_code_page_needs_a_session(as_server):
    d = start(as_server)
    r = requests.get(d["verification_uri_complete"], allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, r.status_code
    loc = urllib.parse.urlsplit(r.headers["Location"])
    assert loc.path == "/login", r.headers["Location"]
    back = urllib.parse.parse_qs(loc.query)["redirect_url"][0]
    assert back == "/oauth2/device?user_code=" + d["user_code"], back
    # POST without a session does not decide anything
    r = requests.post(f"{as_server.url}/oauth2/device", data={"user_code": d["user_code"], "action": "approve"},
                      allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401, r.status_code
    assert_oauth_error(poll(as_server, d["device_code"]), "authorization_pending", 400)


def test_code_page_csrf_and_unknown_code(as_server):
    d = start(as_server)
    sess = requests.Session()
    form = open_code_page(as_server, sess, d["verification_uri_complete"], ALICE)
    assert form.inputs["user_code"] == d["user_code"]
    # wrong CSRF token
    r = sess.post(f"{as_server.url}/oauth2/device", data=dict(form.inputs, csrf_token="x" * 43, action="approve"),
                  allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 403, r.status_code
    # missing CSRF token
    r = sess.post(f"{as_server.url}/oauth2/device", data={"user_code": d["user_code"], "action": "approve"},
                  allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 403, r.status_code
    # an unknown code re-shows the form with an error
    r = sess.post(f"{as_server.url}/oauth2/device", data=dict(form.inputs, user_code="BBBB-BBBB"),
                  allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 400 and "unknown" in r.text.lower(), (r.status_code, r.text[:500])
    # lower case and no dash still finds the real code (normalised)
    r = sess.post(f"{as_server.url}/oauth2/device",
                  data=dict(form.inputs, user_code=d["user_code"].replace("-", "").lower()),
                  allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200 and 'value="approve"' in r.text, (r.status_code, r.text[:500])
    assert_oauth_error(poll(as_server, d["device_code"]), "authorization_pending", 400)
