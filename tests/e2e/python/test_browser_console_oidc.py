"""The console in headless Chromium with a real OpenID Provider (oidc-provider) as the
identity source: sign in through the IdP, see the user and the projects, register a project
from the page, reload, the CSRF and Origin checks on cookie-authenticated gRPC-web, open
redirects, logout.

The tests in this module run in order and share one flyteauth, one IdP and the browser's
cookies (saved by playwright between runs): a later test needs the session of the login test.
"""

from __future__ import annotations

import shutil
import urllib.parse

import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import identity_pb2

from browser import (
    LIST_PROJECTS,
    USER_INFO,
    Idp,
    assert_page_clean,
    console_server,
    grpc_web_call,
    openid_auth_extra,
    run_browser,
    session_cookies,
    write_oidc_secret,
)
from conftest import free_port
from helpers import mint_token

T = 10
IDP_LOGIN = "carol"
SEEDED = ("seeded-project", "Seeded by the test")
MADE_IN_BROWSER = ("browser-project", "Made in Chromium", "registered from the console page")
UNAUTHENTICATED = 16


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """flyteauth (OIDC identity source) + oidc-provider + a place for the browser's cookies."""
    tmp = tmp_path_factory.mktemp("browser_oidc")
    port = free_port()
    idp = Idp.start(tmp, redirect_uris=[f"http://127.0.0.1:{port}/callback"])
    srv = None
    try:
        (tmp / "flyteauth").mkdir()
        srv = console_server(
            tmp / "flyteauth", openid_auth_extra(idp), port=port, prepare=lambda s: write_oidc_secret(s, idp)
        )
        yield {"srv": srv, "idp": idp, "state": tmp / "browser-state.json", "shared": {}}
    finally:
        if srv is not None:
            srv.stop()
        idp.stop()


@pytest.fixture
def server(env):
    """The module's flyteauth (named `server` so a failing test shows its output)."""
    return env["srv"]


def browse(env, steps, *, save=True):
    return run_browser(
        env["srv"],
        steps,
        storage_in=env["state"],
        storage_out=env["state"] if save else None,
        idp=env["idp"],
    )


def bearer(srv):
    return {"authorization": f"Bearer {mint_token(srv)}"}


def logged_in_cookies(env):
    cookies = env["shared"].get("cookies")
    if not cookies:
        pytest.fail("no browser session: test_oidc_login_shows_user_and_projects did not succeed", pytrace=False)
    return cookies


# --------------------------------------------------------------------------- signed out


def test_console_page_and_bundle_are_served(server):
    r = requests.get(f"{server.url}/console", timeout=T)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert '<script type="module" src="/console/app.js">' in r.text
    js = requests.get(f"{server.url}/console/app.js", timeout=T)
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"], js.headers
    # The bundle reads the readable CSRF cookie and sends it as the header.
    assert "flyte_csrf" in js.text and "x-csrf-token" in js.text
    assert len(js.content) < 200_000, f"console bundle is {len(js.content)} bytes"


def test_signed_out_console_offers_only_sign_in(server, env):
    (snap,) = browse(env, [{"do": "open"}])
    assert snap["state"] == "signed-out", snap
    assert snap["signInHref"] == "/login?redirect_url=/console"
    assert snap["userName"] is None and not snap["hasRegisterForm"] and snap["logoutHref"] is None, snap
    assert snap["projects"] == []


# --------------------------------------------------------------------------- sign in through the IdP


def test_oidc_login_shows_user_and_projects(server, env):
    r = requests.post(
        f"{server.url}/api/v1/projects",
        json={"project": {"id": SEEDED[0], "name": SEEDED[1]}},
        headers=bearer(server),
        timeout=T,
    )
    assert r.status_code == 200, r.text

    idp = env["idp"]
    opened, signed_in, cookies = browse(
        env,
        [
            {"do": "open"},
            {"do": "signIn", "kind": "oidc", "idpOrigin": idp.issuer, "username": IDP_LOGIN, "password": "any"},
            {"do": "cookies"},
        ],
    )
    assert opened["state"] == "signed-out", opened

    # /console -> /login?redirect_url=/console -> the IdP's authorize endpoint with state,
    # nonce and S256 PKCE -> the IdP's login and consent -> /callback -> /console.
    navs = signed_in["navigations"]
    assert navs[0] == f"{server.url}/login?redirect_url=/console", navs
    authorize = next((u for u in navs if u.startswith(idp.issuer + "/auth")), None)
    assert authorize, f"no navigation to the IdP's authorization endpoint: {navs}"
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert q.get("client_id") == "flyteauth", q
    assert q.get("response_type") == "code", q
    assert q.get("redirect_uri") == f"{server.url}/callback", q
    assert q.get("state") and q.get("nonce"), q
    assert q.get("code_challenge_method") == "S256" and q.get("code_challenge"), q
    assert {"openid", "profile", "email"} <= set(q.get("scope", "").split()), q
    assert signed_in["loginPage"] and signed_in["loginPage"].startswith(idp.issuer + "/interaction/"), signed_in
    assert any(u.startswith(f"{server.url}/callback?") for u in navs), navs

    page = signed_in["console"]
    assert page["url"] == f"{server.url}/console", page
    assert page["state"] == "signed-in", page
    assert page["userName"] == f"IdP User {IDP_LOGIN}"
    assert page["userSubject"] == IDP_LOGIN
    assert page["userEmail"] == f"{IDP_LOGIN}@idp.example.test"
    assert page["error"] is None, page
    assert page["logoutHref"] == "/logout?redirect_url=/console"
    ids = [p["id"] for p in page["projects"]]
    assert SEEDED[0] in ids, page["projects"]
    seeded = next(p for p in page["projects"] if p["id"] == SEEDED[0])
    assert SEEDED[1] in seeded["text"]

    values, by_name = session_cookies(cookies)
    assert {"flyte_session", "flyte_csrf"} <= set(values), sorted(values)
    assert by_name["flyte_session"]["httpOnly"] is True
    assert by_name["flyte_session"]["sameSite"] == "Lax"
    assert by_name["flyte_session"]["path"] == "/"
    assert by_name["flyte_csrf"]["httpOnly"] is False, "the page must be able to read flyte_csrf"
    env["shared"]["cookies"] = values


def test_me_with_the_session_cookie(server, env):
    cookies = logged_in_cookies(env)
    r = requests.get(
        f"{server.url}/me",
        headers={
            "cookie": f"flyte_session={cookies['flyte_session']}; flyte_csrf={cookies['flyte_csrf']}",
            "x-csrf-token": cookies["flyte_csrf"],
        },
        timeout=T,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject"] == IDP_LOGIN and body["name"] == f"IdP User {IDP_LOGIN}", body
    assert r.headers.get("x-user-subject") == IDP_LOGIN


# --------------------------------------------------------------------------- the console's operations


def test_register_project_from_the_page(server, env):
    logged_in_cookies(env)
    pid, name, desc = MADE_IN_BROWSER
    opened, registered, again, diagnostics = browse(
        env,
        [
            {"do": "open"},
            {"do": "register", "id": pid, "name": name, "description": desc},
            {"do": "register", "id": pid, "name": name, "description": desc},
            {"do": "diagnostics"},
        ],
    )
    assert opened["state"] == "signed-in", opened
    assert registered["error"] is None, registered
    listed = {p["id"]: p["text"] for p in registered["projects"]}
    assert pid in listed and name in listed[pid], registered["projects"]
    assert SEEDED[0] in listed

    # The server really has it (not just the page).
    r = requests.get(f"{server.url}/api/v1/projects/{pid}", headers=bearer(server), timeout=T)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["description"]) == (name, desc)

    # Registering it again fails, and the page says so in #error.
    assert again["state"] == "signed-in", again
    assert again["error"], f"a duplicate registration showed no error: {again}"
    assert [p["id"] for p in again["projects"]].count(pid) == 1
    # The page runs under the server's Content-Security-Policy without violations or errors.
    assert_page_clean(diagnostics)


def test_reload_keeps_the_session(server, env):
    logged_in_cookies(env)
    opened, reloaded = browse(env, [{"do": "open"}, {"do": "reload"}])
    for snap in (opened, reloaded):
        assert snap["state"] == "signed-in", snap
        assert snap["userName"] == f"IdP User {IDP_LOGIN}"
        assert {SEEDED[0], MADE_IN_BROWSER[0]} <= {p["id"] for p in snap["projects"]}, snap["projects"]


# --------------------------------------------------------------------------- CSRF and Origin


def test_grpc_web_from_the_page_needs_no_csrf_header_only_as_it_is_not_cors_simple(server, env):
    """DESIGN.md §6's exception: gRPC-web (not CORS-simple) from the console's own origin
    needs no x-csrf-token; a wrong one is still refused."""
    logged_in_cookies(env)
    frame = "AAAAAAA="  # an empty UserInfoRequest in one gRPC-web frame
    with_header, without, wrong = browse(
        env,
        [
            {"do": "grpcWeb", "path": USER_INFO, "csrf": "cookie", "frameB64": frame},
            {"do": "grpcWeb", "path": USER_INFO, "csrf": "none", "frameB64": frame},
            {"do": "grpcWeb", "path": USER_INFO, "csrf": "wrong", "frameB64": frame},
        ],
    )
    assert with_header.get("grpcStatus") == 0, with_header
    assert without.get("grpcStatus") == 0, without
    assert wrong.get("grpcStatus") == UNAUTHENTICATED, wrong


def test_grpc_web_csrf_and_origin_checks(server, env):
    cookies = logged_in_cookies(env)
    session = {"flyte_session": cookies["flyte_session"], "flyte_csrf": cookies["flyte_csrf"]}
    csrf = cookies["flyte_csrf"]
    ui = identity_pb2.UserInfoRequest().SerializeToString()
    lp = project_pb2.ProjectListRequest(limit=10).SerializeToString()

    ok = grpc_web_call(server, USER_INFO, ui, cookies=session, csrf=csrf)
    assert (ok.http_status, ok.grpc_status) == (200, 0), ok
    info = identity_pb2.UserInfoResponse.FromString(ok.messages[0])
    assert (info.subject, info.name) == (IDP_LOGIN, f"IdP User {IDP_LOGIN}")
    listed = grpc_web_call(server, LIST_PROJECTS, lp, cookies=session, csrf=csrf)
    assert listed.grpc_status == 0, listed

    # Not CORS-simple, from the allowed (own) Origin: no CSRF header needed (DESIGN.md §6).
    no_header = grpc_web_call(server, USER_INFO, ui, cookies=session, csrf=None)
    assert no_header.grpc_status == 0, no_header

    cases = {
        "no x-csrf-token, no Origin": dict(cookies=session, csrf=None, origin=None),
        "no x-csrf-token, origin not allowed": dict(cookies=session, csrf=None, origin="http://evil.example"),
        "wrong x-csrf-token": dict(cookies=session, csrf="x" + csrf),
        "origin not allowed": dict(cookies=session, csrf=csrf, origin="http://evil.example"),
        "other port of the same host": dict(cookies=session, csrf=csrf, origin="http://127.0.0.1:1"),
        "no session cookie": dict(cookies={"flyte_csrf": csrf}, csrf=csrf),
    }
    for what, kw in cases.items():
        for path, msg in ((USER_INFO, ui), (LIST_PROJECTS, lp)):
            res = grpc_web_call(server, path, msg, **kw)
            assert res.grpc_status == UNAUTHENTICATED, f"{what} {path}: {res}"
            assert not res.messages, f"{what} {path}: answered with data"


def test_page_on_another_origin_cannot_call_with_the_cookie(server, env):
    """A page on another port of 127.0.0.1 is same-site: the browser sends the cookies and
    the page can read flyte_csrf. The Origin allow-list (CORS + server check) must stop it."""
    logged_in_cookies(env)
    (res,) = browse(
        env,
        [{"do": "crossOrigin", "path": USER_INFO, "csrf": "cookie", "frameB64": "AAAAAAA="}],
        save=False,
    )
    assert res["origin"] != server.url
    assert res.get("fetchError") or res.get("grpcStatus") == UNAUTHENTICATED, res


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "target",
    ["https://evil.example", "https://evil.example/console", "//evil.example/console", "http://127.0.0.1:1/console"],
)
def test_login_refuses_open_redirects(server, target):
    r = requests.get(f"{server.url}/login", params={"redirect_url": target}, allow_redirects=False, timeout=T)
    assert r.status_code == 400, (r.status_code, r.headers.get("location"))
    assert "location" not in {k.lower() for k in r.headers}


def test_login_accepts_authorized_absolute_redirect(server, env):
    r = requests.get(
        f"{server.url}/login", params={"redirect_url": f"{server.url}/console"}, allow_redirects=False, timeout=T
    )
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    assert r.headers["location"].startswith(env["idp"].issuer + "/auth?"), r.headers["location"]


def test_callback_with_unknown_state_is_refused(server):
    r = requests.get(
        f"{server.url}/callback", params={"code": "forged", "state": "forged"}, allow_redirects=False, timeout=T
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "flyte_session=" not in r.headers.get("set-cookie", "").replace("flyte_session=;", "")


# --------------------------------------------------------------------------- logout


def test_logout_ends_the_session(server, env):
    cookies = logged_in_cookies(env)
    before_logout = env["state"].with_name("browser-state-before-logout.json")
    shutil.copyfile(env["state"], before_logout)
    opened, after = browse(env, [{"do": "open"}, {"do": "logout"}])
    assert opened["state"] == "signed-in", opened
    assert after["url"] == f"{server.url}/console", after
    assert after["state"] == "signed-out", after
    assert after["signInHref"] == "/login?redirect_url=/console"

    # A fresh browser with whatever cookies are left asks to sign in again.
    (again,) = browse(env, [{"do": "open"}])
    assert again["state"] == "signed-out", again

    # A browser that still holds the logged-out session's cookies gets UNAUTHENTICATED and
    # the page asks to sign in.
    stale_cookies, stale_open = run_browser(server, [{"do": "cookies"}, {"do": "open"}], storage_in=before_logout)
    assert session_cookies(stale_cookies)[0].get("flyte_csrf") == cookies["flyte_csrf"], "not the old cookies"
    assert stale_open["state"] == "signed-out", stale_open
    assert stale_open["userName"] is None and not stale_open["hasRegisterForm"]

    # The cookie of the logged-out session is dead everywhere.
    session = {"flyte_session": cookies["flyte_session"], "flyte_csrf": cookies["flyte_csrf"]}
    res = grpc_web_call(server, USER_INFO, b"", cookies=session, csrf=cookies["flyte_csrf"])
    assert res.grpc_status == UNAUTHENTICATED, res
    r = requests.get(
        f"{server.url}/me",
        headers={
            "cookie": f"flyte_session={cookies['flyte_session']}; flyte_csrf={cookies['flyte_csrf']}",
            "x-csrf-token": cookies["flyte_csrf"],
        },
        timeout=T,
    )
    assert r.status_code == 401, r.text


def test_logout_refuses_open_redirect(server):
    r = requests.get(
        f"{server.url}/logout", params={"redirect_url": "https://evil.example"}, allow_redirects=False, timeout=T
    )
    assert r.status_code == 400, (r.status_code, r.headers.get("location"))
