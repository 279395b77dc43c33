"""Hostile networks (DESIGN.md §14, issue 21) against real peers: Chromium following a logout
link on another site, and two replicas on PostgreSQL agreeing on the refresh grace period and
sharing failure counters. The rest of issue 21 is tested in tests/it/hostile.rs.
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests

import oauth
from browser import console_server, run_browser
from oauth import (
    ALICE,
    HTTP_TIMEOUT_S,
    LocalUser,
    assert_oauth_error,
    assert_token_response,
    login,
    refresh,
)
from replica_util import user_tokens
from replicas import Cluster, PgDatabase

pytestmark = pytest.mark.timeout(150)

CAROL = LocalUser("carol", "carol-" + secrets.token_urlsafe(12), "Carol Example", "carol@example.com")


# --------------------------------------------------------------------------- logout CSRF


def test_a_logout_link_on_another_site_does_not_sign_out_in_chromium(tmp_path):
    (tmp_path / "flyteauth").mkdir()
    srv = console_server(tmp_path / "flyteauth", {"userAuth": {"localUsers": [CAROL.config()]}})
    try:
        state = tmp_path / "browser-state.json"

        def browse(steps):
            return run_browser(srv, steps, storage_in=state, storage_out=state)

        _, signed_in = browse(
            [{"do": "open"}, {"do": "signIn", "kind": "local", "username": CAROL.username, "password": CAROL.password}]
        )
        assert signed_in["console"]["state"] == "signed-in", signed_in

        # Chromium sends Sec-Fetch-Site: cross-site; flyteauth asks instead of signing out.
        landed, still = browse([{"do": "crossSiteLogout"}, {"do": "open"}])
        assert landed["url"].startswith(f"{srv.url}/logout"), landed
        assert [f["method"] for f in landed["forms"]] == ["post"], landed
        assert still["state"] == "signed-in", ("a cross-site link ended the session", still)

        # Confirming (a POST carrying the session's CSRF token) signs out.
        confirmed, after = browse([{"do": "crossSiteLogout", "confirm": True}, {"do": "open"}])
        assert confirmed["confirmedUrl"] == f"{srv.url}/console", confirmed
        assert after["state"] == "signed-out", after

        # Flyte's own logout link (same origin) still signs out at once.
        _, signed_in = browse(
            [{"do": "open"}, {"do": "signIn", "kind": "local", "username": CAROL.username, "password": CAROL.password}]
        )
        assert signed_in["console"]["state"] == "signed-in", signed_in
        (out,) = browse([{"do": "logout"}])
        assert out["state"] == "signed-out", out
    finally:
        srv.stop()


# --------------------------------------------------------------------------- replicas


@pytest.fixture
def grace_cluster(server_factory, tmp_path):
    db = PgDatabase.create("hostile")
    c = Cluster(
        tmp_path,
        db.url(),
        n=2,
        auth_extra=oauth.auth_extra(self_auth_server={"refreshTokenGracePeriod": "2s"}),
    )
    server_factory.servers.extend(c.replicas)
    c.start()
    yield c
    c.stop()
    db.drop()


def test_replicas_agree_on_the_refresh_grace_period(grace_cluster):
    a, b = grace_cluster.replicas
    t0 = user_tokens(a)
    t1 = assert_token_response(refresh(a, t0["refresh_token"]), refresh=True)
    # A second process of the same user, through the other replica, a moment later.
    t2 = assert_token_response(refresh(b, t0["refresh_token"]), refresh=True)
    assert t2["refresh_token"] != t1["refresh_token"]
    t3 = assert_token_response(refresh(b, t1["refresh_token"]), refresh=True)
    # After the grace period a reuse revokes the family on both.
    time.sleep(3.2)
    assert_oauth_error(refresh(b, t0["refresh_token"]), "invalid_grant", 400)
    assert_oauth_error(refresh(a, t2["refresh_token"]), "invalid_grant", 400)
    assert_oauth_error(refresh(b, t3["refresh_token"]), "invalid_grant", 400)


def test_replicas_share_failure_counters(grace_cluster):
    a, b = grace_cluster.replicas
    statuses = []
    for i in range(14):
        r = login((a, b)[i % 2], requests.Session(), LocalUser(ALICE.username, "wrong", "", ""))
        statuses.append(r.status_code)
    assert statuses == [401] * 10 + [429] * 4, statuses
    r = login(b, requests.Session(), ALICE)
    assert r.status_code == 429, "the right password too, while the window lasts"
    assert r.headers.get("Retry-After", "").isdigit(), r.headers
    # Client secrets: 20 failures in all, wherever they land.
    secret = oauth.generated_propeller_secret(a)
    statuses = []
    for i in range(24):
        r = requests.post(
            f"{(a, b)[i % 2].url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("flytepropeller", "guess"),
            timeout=HTTP_TIMEOUT_S,
        )
        statuses.append(r.status_code)
    assert statuses == [401] * 20 + [429] * 4, statuses
    r = requests.post(
        f"{b.url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=("flytepropeller", secret),
        timeout=HTTP_TIMEOUT_S,
    )
    assert r.status_code == 429, r.text
