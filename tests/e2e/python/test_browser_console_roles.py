"""The console in headless Chromium with auth.authorization.bindings: it lists the signed-in
user's roles per project (from /me), only the projects the user may view, and says that
registering a project needs a role the user lacks (the button is disabled)."""

from __future__ import annotations

import pytest

from browser import assert_page_clean, console_server, run_browser
from oauth import LocalUser

VERA = LocalUser("vera", "vera-pw-0123456789", "Vera Viewer", "vera@example.com", ("analysts",))
ROOT = LocalUser("root", "root-pw-0123456789", "Root Admin", "root@example.com", ("admins",))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_roles")
    (tmp / "flyteauth").mkdir()
    srv = console_server(
        tmp / "flyteauth",
        {
            "userAuth": {"localUsers": [VERA.config(), ROOT.config()]},
            "authorization": {
                "bindings": [
                    {"role": "admin", "groups": ["admins"], "projects": ["*"], "domains": ["*"]},
                    {"role": "viewer", "groups": ["analysts"], "projects": ["alpha"], "domains": ["development", "staging"]},
                ]
            },
        },
    )
    yield {"srv": srv, "tmp": tmp}
    srv.stop()


def test_admin_registers_and_viewer_sees_roles_and_why_it_cannot_register(env):
    srv, tmp = env["srv"], env["tmp"]
    _, signed_in, _, registered = run_browser(
        srv,
        [
            {"do": "open"},
            {"do": "signIn", "kind": "local", "username": ROOT.username, "password": ROOT.password},
            {"do": "register", "id": "alpha", "name": "alpha", "description": ""},
            {"do": "register", "id": "beta", "name": "beta", "description": ""},
        ],
        storage_out=tmp / "root.json",
    )
    assert signed_in["console"]["roles"] == [{"role": "admin", "projects": "*", "domains": "*"}], signed_in
    assert signed_in["console"]["registerDisabled"] is False
    assert sorted(p["id"] for p in registered["projects"]) == ["alpha", "beta"], registered

    _, vera, diagnostics = run_browser(
        srv,
        [
            {"do": "open"},
            {"do": "signIn", "kind": "local", "username": VERA.username, "password": VERA.password},
            {"do": "diagnostics"},
        ],
        storage_out=tmp / "vera.json",
    )
    page = vera["console"]
    assert page["state"] == "signed-in", page
    assert page["roles"] == [{"role": "viewer", "projects": "alpha", "domains": "development, staging"}], page
    assert [p["id"] for p in page["projects"]] == ["alpha"], page
    assert page["registerDisabled"] is True, page
    assert "needs the projectAdmin or admin role" in (page["registerNote"] or ""), page
    assert_page_clean(diagnostics)
