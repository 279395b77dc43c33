"""The built-in AS over time and across restarts: expiry of codes, access and refresh tokens
(clockSkew 0s), sessions and codes and refresh tokens that survive a restart, key rotation
that keeps refresh tokens alive, logout, the per-address login limit, and no credential in the
server's log."""

import shutil
import time

import grpc
import pytest
import requests
from flyteidl.service import identity_pb2, identity_pb2_grpc

from helpers import RPC_TIMEOUT_S, call_code, load_signing_key, rsa_jwk_thumbprint
from oauth import (
    ALICE,
    BOB,
    HTTP_TIMEOUT_S,
    LocalUser,
    assert_oauth_error,
    assert_token_response,
    auth_extra,
    authorize_params,
    authorize_url,
    exchange_code,
    generated_propeller_secret,
    get_code,
    logged_in_session,
    login,
    login_form,
    pkce_pair,
    query_of,
    refresh,
    token,
    verify_access_token,
)

pytestmark = pytest.mark.timeout(120)

U = grpc.StatusCode.UNAUTHENTICATED


def user_info_code(server, tok):
    with grpc.insecure_channel(server.endpoint) as ch:
        stub = identity_pb2_grpc.IdentityServiceStub(ch)
        return call_code(stub.UserInfo, identity_pb2.UserInfoRequest(), (("flyte-authorization", f"Bearer {tok}"),))


def tokens_for(server, sess, **kw):
    code, verifier, params = get_code(server, sess, **kw)
    return assert_token_response(exchange_code(server, code, verifier, params), refresh=True)


def test_short_lifespans_expire(server_factory):
    srv = server_factory(
        auth_extra=auth_extra(
            clock_skew="0s",
            self_auth_server={
                "authorizationCodeLifespan": "1s",
                "accessTokenLifespan": "2s",
                "refreshTokenLifespan": "6s",
            },
        )
    )
    sess = logged_in_session(srv, ALICE)
    body = tokens_for(srv, sess)
    assert body["expires_in"] in (1, 2), body
    code, verifier, params = get_code(srv, sess)
    t0 = time.monotonic()
    assert user_info_code(srv, body["access_token"])[0] == grpc.StatusCode.OK
    time.sleep(3.3)
    # code (1 s) and access token (2 s) are past; the refresh token (6 s) is not
    assert_oauth_error(exchange_code(srv, code, verifier, params), "invalid_grant", 400)
    c, details = user_info_code(srv, body["access_token"])
    assert c == U and "expired" in details.lower(), (c, details)
    fresh = assert_token_response(refresh(srv, body["refresh_token"]), refresh=True)
    t_fresh = time.monotonic()
    assert time.monotonic() - t0 < 5, "too slow to test the refresh lifetime"
    assert user_info_code(srv, fresh["access_token"])[0] == grpc.StatusCode.OK
    time.sleep(max(0.0, t_fresh + 7.2 - time.monotonic()))
    assert_oauth_error(refresh(srv, fresh["refresh_token"]), "invalid_grant", 400)


def test_codes_sessions_and_refresh_tokens_survive_restart(server_factory):
    srv = server_factory(auth_extra=auth_extra())
    sess = logged_in_session(srv, ALICE)
    body = tokens_for(srv, sess)
    code, verifier, params = get_code(srv, sess)

    srv.restart()

    assert user_info_code(srv, body["access_token"])[0] == grpc.StatusCode.OK
    assert_token_response(exchange_code(srv, code, verifier, params), refresh=True)
    assert_token_response(refresh(srv, body["refresh_token"]), refresh=True)
    # the browser session is still logged in: authorize answers with a code, not the login page
    get_code(srv, sess)


def test_key_rotation_keeps_refresh_tokens_and_old_access_tokens(server_factory):
    srv = server_factory(auth_extra=auth_extra())
    sess = logged_in_session(srv, ALICE)
    body = tokens_for(srv, sess)
    old_kid = rsa_jwk_thumbprint(load_signing_key(srv).public_key())

    srv.stop()
    shutil.move(str(srv.signing_key_file), str(srv.secrets_dir / "token_rsa_key_old.pem"))
    srv.start()  # generates a new token_rsa_key.pem
    new_kid = rsa_jwk_thumbprint(load_signing_key(srv).public_key())
    assert new_kid != old_kid

    assert user_info_code(srv, body["access_token"])[0] == grpc.StatusCode.OK
    fresh = assert_token_response(refresh(srv, body["refresh_token"]), refresh=True)
    header, claims = verify_access_token(srv, fresh["access_token"])
    assert header["kid"] == new_kid, header
    assert claims["sub"] == "alice"


def test_logout_kills_the_session(server_factory):
    srv = server_factory(auth_extra=auth_extra())
    sess = logged_in_session(srv, ALICE)
    old_cookie = sess.cookies.get("flyte_session")
    get_code(srv, sess)
    r = sess.get(f"{srv.url}/logout", allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code in (302, 303, 307, 200), (r.status_code, r.text[:300])
    # a cookie from a logged-out session, presented again, is no session
    replay = requests.Session()
    replay.cookies.set("flyte_session", old_cookie, domain="127.0.0.1", path="/")
    _, challenge = pkce_pair()
    r = replay.get(authorize_url(srv, **authorize_params(challenge=challenge)), allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    assert "/login" in r.headers["Location"] and "code=" not in r.headers["Location"], r.headers["Location"]


def test_per_address_login_limit(server_factory):
    srv = server_factory(auth_extra=auth_extra())
    sess = requests.Session()
    statuses_seen = []

    def attempt(username, password):
        form = login_form(sess.get(f"{srv.url}/login", timeout=HTTP_TIMEOUT_S).text)
        fields = dict(form.inputs, username=username, password=password)
        # a forged X-Forwarded-For must not give each attempt a fresh address
        spoof = {"X-Forwarded-For": f"203.0.113.{len(statuses_seen)}", "X-Real-IP": f"198.51.100.{len(statuses_seen)}"}
        statuses_seen.append(1)
        return sess.post(f"{srv.url}/login", data=fields, headers=spoof, allow_redirects=False, timeout=HTTP_TIMEOUT_S)

    statuses = [attempt(f"user{i}", "wrong").status_code for i in range(10)]
    assert statuses == [401] * 10, statuses
    r = attempt(BOB.username, BOB.password)  # a user with no failures, from the same address
    assert r.status_code == 429, (r.status_code, r.text[:300])
    assert r.headers.get("Retry-After", "").isdigit(), r.headers


def test_no_credentials_in_the_log(server_factory):
    srv = server_factory(auth_extra=auth_extra())
    secret = generated_propeller_secret(srv)
    sensitive = [ALICE.password, secret, "wrong-pass-" + ALICE.password[-6:]]

    sess = requests.Session()
    r = login(srv, sess, LocalUser("alice", sensitive[2], "", ""))
    assert r.status_code == 401
    sess = logged_in_session(srv, ALICE)
    sensitive += [sess.cookies["flyte_session"], sess.cookies["flyte_csrf"]]
    code, verifier, params = get_code(srv, sess)
    sensitive += [code, verifier]
    body = assert_token_response(exchange_code(srv, code, verifier, params), refresh=True)
    sensitive += [body["access_token"], body["refresh_token"]]
    exchange_code(srv, code, verifier, params)  # replay: revokes, logs a denial
    cc = assert_token_response(token(srv, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", secret)))
    sensitive.append(cc["access_token"])
    token(srv, {"grant_type": "client_credentials"}, auth=("flytepropeller", "wrong-" + secret))
    user_info_code(srv, cc["access_token"])
    user_info_code(srv, "garbage." + cc["access_token"].split(".")[1] + ".sig")

    # Revocation (RFC 7009) audits who revoked a token, never the token.
    for tok, auth, data in (
        (cc["access_token"], ("flytepropeller", secret), {}),
        (body["refresh_token"], None, {"client_id": "flytectl"}),
    ):
        r = requests.post(f"{srv.url}/oauth2/revoke", data={"token": tok, **data}, auth=auth, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, (r.status_code, r.text[:300])

    log = srv.log_tail(max_chars=10_000_000)
    assert "access_token_revoked" in log, "the revocation was not audited"
    leaked = [s[:8] + "…" for s in sensitive if s and s in log]
    # also the signature part of JWTs alone
    leaked += [t.split(".")[2][:8] + "…" for t in (body["access_token"], cc["access_token"]) if t.split(".")[2] in log]
    assert not leaked, f"credential values in the server log: {leaked}\n{log[-3000:]}"


def _authorize_outcome(srv, sess) -> str:
    _, challenge = pkce_pair()
    r = sess.get(authorize_url(srv, **authorize_params(challenge=challenge)), allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    loc = r.headers["Location"]
    if "code=" in loc:
        return "code"
    assert "/login" in loc, loc
    return "login"


def test_session_idle_timeout_counts_from_last_use(server_factory):
    extra = auth_extra()
    extra["userAuth"]["session"] = {"idleTimeout": "3s", "absoluteTimeout": "1h"}
    srv = server_factory(auth_extra=extra)

    idle = logged_in_session(srv, BOB)
    active = logged_in_session(srv, ALICE)
    t0 = time.monotonic()
    seen = []
    for at in (1.5, 3.0, 4.5, 6.0):  # used every 1.5 s: the 3 s idle timeout never fires
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        seen.append(_authorize_outcome(srv, active))
    assert seen == ["code"] * 4, f"an active session died (idle timeout measured from the last use?): {seen}"
    # bob's session has been idle for 6 s > 3 s
    assert _authorize_outcome(srv, idle) == "login"


def test_session_absolute_timeout(server_factory):
    extra = auth_extra()
    extra["userAuth"]["session"] = {"idleTimeout": "1h", "absoluteTimeout": "3s"}
    srv = server_factory(auth_extra=extra)
    sess = logged_in_session(srv, ALICE)
    t0 = time.monotonic()
    assert _authorize_outcome(srv, sess) == "code"
    time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
    assert _authorize_outcome(srv, sess) == "code"
    time.sleep(max(0.0, t0 + 4.5 - time.monotonic()))
    assert _authorize_outcome(srv, sess) == "login"
