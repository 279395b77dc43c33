"""The console in headless Chromium with the embedded local users as the identity source:
`/login` is flyteauth's own form (username, password), the rest is the same session.

Tests run in order and share one flyteauth and the browser's cookies.
"""

from __future__ import annotations

import secrets

import pytest

from browser import USER_INFO, assert_page_clean, console_server, grpc_web_call, run_browser, session_cookies
from oauth import LocalUser

ALICE = LocalUser("alice", "alice-" + secrets.token_urlsafe(12), "Alice Example", "alice@example.com")
UNAUTHENTICATED = 16


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_local")
    (tmp / "flyteauth").mkdir()
    srv = console_server(tmp / "flyteauth", {"userAuth": {"localUsers": [ALICE.config()]}})
    yield {"srv": srv, "state": tmp / "browser-state.json", "shared": {}}
    srv.stop()


@pytest.fixture
def server(env):
    return env["srv"]


def browse(env, steps):
    return run_browser(env["srv"], steps, storage_in=env["state"], storage_out=env["state"])


def test_local_login_through_flyteauths_form(server, env):
    opened, signed_in, cookies, diagnostics = browse(
        env,
        [
            {"do": "open"},
            {"do": "signIn", "kind": "local", "username": ALICE.username, "password": ALICE.password},
            {"do": "cookies"},
            {"do": "diagnostics"},
        ],
    )
    assert opened["state"] == "signed-out", opened
    assert signed_in["loginPage"].startswith(f"{server.url}/login?"), signed_in
    fields = {f["name"]: f["type"] for f in signed_in["loginFields"]}
    assert fields.get("username") == "text" and fields.get("password") == "password", fields
    assert (signed_in["loginFormMethod"] or "").lower() == "post"

    page = signed_in["console"]
    assert page["state"] == "signed-in", page
    assert page["userName"] == ALICE.name
    assert page["userSubject"] == ALICE.username
    assert page["userEmail"] == ALICE.email
    assert page["projects"] == [] and page["error"] is None, page

    values, by_name = session_cookies(cookies)
    assert by_name["flyte_session"]["httpOnly"] is True and by_name["flyte_csrf"]["httpOnly"] is False
    env["shared"]["cookies"] = values
    assert_page_clean(diagnostics)


def test_register_reload_logout(server, env):
    cookies = env["shared"].get("cookies")
    if not cookies:
        pytest.fail("no browser session: the login test did not succeed", pytrace=False)
    _, registered, reloaded, logged_out = browse(
        env,
        [
            {"do": "open"},
            {"do": "register", "id": "alice-project", "name": "Alice's project", "description": ""},
            {"do": "reload"},
            {"do": "logout"},
        ],
    )
    assert registered["error"] is None and "alice-project" in [p["id"] for p in registered["projects"]], registered
    assert reloaded["state"] == "signed-in" and reloaded["userName"] == ALICE.name, reloaded
    assert "alice-project" in [p["id"] for p in reloaded["projects"]]
    assert logged_out["state"] == "signed-out" and logged_out["url"] == f"{server.url}/console", logged_out

    res = grpc_web_call(
        server, USER_INFO, b"", cookies={"flyte_session": cookies["flyte_session"], "flyte_csrf": cookies["flyte_csrf"]},
        csrf=cookies["flyte_csrf"],
    )
    assert res.grpc_status == UNAUTHENTICATED, res
