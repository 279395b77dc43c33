"""The built-in authorization server over plain HTTP: metadata, JWKS, /oauth2/authorize and
/oauth2/token for every grant, and the negatives (each with its exact RFC 6749 error), checked
end to end: tokens it issues (or revokes) are presented to the gRPC services afterwards."""

import base64
import secrets
import time
import urllib.parse

import grpc
import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, identity_pb2, identity_pb2_grpc

from helpers import RPC_TIMEOUT_S, call_code, load_signing_key, rsa_jwk_thumbprint
from oauth import (
    ALICE,
    BOB,
    FLYTEKIT_REDIRECT_URI,
    HTTP_TIMEOUT_S,
    OTHER_DEFAULT_REDIRECT_URI,
    assert_oauth_error,
    assert_token_response,
    authorize_params,
    authorize_url,
    exchange_code,
    generated_propeller_secret,
    get_code,
    jwks,
    logged_in_session,
    pkce_pair,
    query_of,
    refresh,
    token,
    unverified_claims,
    verify_access_token,
)

pytestmark = pytest.mark.timeout(90)

# Strict rotation: a reuse right after a rotation revokes the family. The grace period
# (refreshTokenGracePeriod, 5 s by default) is tested in test_hostile.py.
import oauth as _oauth  # noqa: E402

AS_AUTH_EXTRA = _oauth.auth_extra(self_auth_server={"refreshTokenGracePeriod": "0s"})

U = grpc.StatusCode.UNAUTHENTICATED


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def channel(as_server):
    ch = grpc.insecure_channel(as_server.endpoint)
    grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT_S)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def identity(channel):
    return identity_pb2_grpc.IdentityServiceStub(channel)


@pytest.fixture(scope="module")
def admin(channel):
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture(scope="module")
def alice(as_server):
    """A browser session logged in as alice."""
    return logged_in_session(as_server, ALICE)


@pytest.fixture(scope="module")
def propeller_secret(as_server):
    return generated_propeller_secret(as_server)


def md(tok):
    return (("flyte-authorization", f"Bearer {tok}"),)


def user_info(identity, tok):
    return identity.UserInfo(identity_pb2.UserInfoRequest(), metadata=md(tok), timeout=RPC_TIMEOUT_S)


def code_tokens(as_server, sess, **kw):
    code, verifier, params = get_code(as_server, sess, **kw)
    r = exchange_code(as_server, code, verifier, params)
    return assert_token_response(r, refresh="offline" in params["scope"].split()), (code, verifier, params)


def authorize_no_follow(as_server, sess, params):
    return sess.get(authorize_url(as_server, **params), allow_redirects=False, timeout=HTTP_TIMEOUT_S)


# --------------------------------------------------------------------------- metadata, JWKS


def test_metadata_document(as_server):
    r = requests.get(f"{as_server.url}/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    m = r.json()
    u = as_server.url
    assert m["issuer"] == u
    assert m["authorization_endpoint"] == u + "/oauth2/authorize"
    assert m["token_endpoint"] == u + "/oauth2/token"
    assert m["jwks_uri"] == u + "/oauth2/jwks"
    assert set(m["grant_types_supported"]) >= {"authorization_code", "client_credentials", "refresh_token"}, m
    assert m["response_types_supported"] == ["code"], m
    assert m["code_challenge_methods_supported"] == ["S256"], m
    assert "client_secret_basic" in m["token_endpoint_auth_methods_supported"], m


def test_jwks_lists_the_signing_key(as_server):
    keys = jwks(as_server)["keys"]
    want = rsa_jwk_thumbprint(load_signing_key(as_server).public_key())
    assert want in [k.get("kid") for k in keys], keys
    for k in keys:
        assert "d" not in k and "p" not in k, "private key material in the JWKS"


# --------------------------------------------------------------------------- client_credentials


@pytest.mark.parametrize("how", ["basic", "form"])
def test_client_credentials_with_generated_secret(as_server, identity, admin, propeller_secret, how):
    data = {"grant_type": "client_credentials", "scope": "all"}
    auth = None
    if how == "basic":
        auth = (urllib.parse.quote_plus("flytepropeller"), urllib.parse.quote_plus(propeller_secret))
    else:
        data.update(client_id="flytepropeller", client_secret=propeller_secret)
    body = assert_token_response(token(as_server, data, auth=auth), refresh=False)
    header, claims = verify_access_token(as_server, body["access_token"])
    assert claims["sub"] == "flytepropeller", claims
    assert claims["client_id"] == "flytepropeller", claims
    assert isinstance(claims["scp"], list) and "all" in claims["scp"], claims
    assert claims["exp"] - time.time() > 60, claims
    assert body["expires_in"] > 60, body
    # the token works on gRPC
    info = user_info(identity, body["access_token"])
    assert info.subject == "flytepropeller", info
    admin.ListProjects(project_pb2.ProjectListRequest(limit=10), metadata=md(body["access_token"]), timeout=RPC_TIMEOUT_S)


def test_client_credentials_without_scope_still_passes_admin(as_server, admin, propeller_secret):
    body = assert_token_response(
        token(as_server, {"grant_type": "client_credentials"}, auth=("flytepropeller", propeller_secret)), refresh=False
    )
    admin.ListProjects(project_pb2.ProjectListRequest(limit=10), metadata=md(body["access_token"]), timeout=RPC_TIMEOUT_S)


@pytest.mark.parametrize("how", ["basic_wrong", "form_wrong", "no_secret", "unknown_client"])
def test_client_credentials_bad_client_is_invalid_client_401(as_server, propeller_secret, how):
    data = {"grant_type": "client_credentials", "scope": "all"}
    auth = None
    if how == "basic_wrong":
        auth = ("flytepropeller", propeller_secret + "x")
    elif how == "form_wrong":
        data.update(client_id="flytepropeller", client_secret="not-" + propeller_secret)
    elif how == "no_secret":
        data.update(client_id="flytepropeller")
    else:
        auth = ("no-such-client", "whatever")
    body = assert_oauth_error(token(as_server, data, auth=auth), "invalid_client", 401)
    assert propeller_secret not in str(body)


def test_client_credentials_by_public_client_is_unauthorized_client(as_server):
    r = token(as_server, {"grant_type": "client_credentials", "client_id": "flytectl", "scope": "all"})
    assert_oauth_error(r, "unauthorized_client", 400)


def test_client_credentials_unknown_scope_is_invalid_scope(as_server, propeller_secret):
    r = token(as_server, {"grant_type": "client_credentials", "scope": "all root"}, auth=("flytepropeller", propeller_secret))
    assert_oauth_error(r, "invalid_scope", 400)


def test_unknown_grant_type(as_server, propeller_secret):
    r = token(as_server, {"grant_type": "password", "username": "alice", "password": "x"}, auth=("flytepropeller", propeller_secret))
    assert_oauth_error(r, "unsupported_grant_type", 400)


def test_missing_grant_type_is_invalid_request(as_server, propeller_secret):
    r = token(as_server, {"scope": "all"}, auth=("flytepropeller", propeller_secret))
    assert_oauth_error(r, "invalid_request", 400)


def test_oversized_token_request_is_413(as_server, propeller_secret):
    data = {"grant_type": "client_credentials", "scope": "all", "pad": "x" * (2 * 1024 * 1024)}
    r = token(as_server, data, auth=("flytepropeller", propeller_secret))
    assert r.status_code == 413, (r.status_code, r.text[:300])


# --------------------------------------------------------------------------- authorization_code


def test_authorization_code_flow_issues_user_tokens(as_server, alice, identity, admin):
    code, verifier, params = get_code(as_server, alice)
    # flytekit echoes every authorize parameter back: they must be ignored
    echoed = {k: v for k, v in params.items() if v is not None and k != "redirect_uri"}
    r = exchange_code(as_server, code, verifier, params, **echoed)
    body = assert_token_response(r, refresh=True)
    header, claims = verify_access_token(as_server, body["access_token"])
    assert header.get("kid") == rsa_jwk_thumbprint(load_signing_key(as_server).public_key()), header
    assert claims["sub"] == "alice", claims
    assert claims["client_id"] == "flytectl", claims
    assert isinstance(claims["scp"], list) and "all" in claims["scp"], claims
    ui = claims.get("user_info")
    assert isinstance(ui, dict), claims
    assert ui.get("email") == ALICE.email and ui.get("name") == ALICE.name, ui
    assert body["refresh_token"] != body["access_token"]

    info = user_info(identity, body["access_token"])
    assert info.subject == "alice", info
    assert info.name == ALICE.name and info.email == ALICE.email, info
    admin.ListProjects(project_pb2.ProjectListRequest(limit=10), metadata=md(body["access_token"]), timeout=RPC_TIMEOUT_S)
    # a refresh token is not an access token
    assert call_code(identity.UserInfo, identity_pb2.UserInfoRequest(), md(body["refresh_token"]))[0] == U


def test_authorization_code_without_offline_has_no_refresh_token(as_server, alice):
    code, verifier, params = get_code(as_server, alice, scope="all")
    assert_token_response(exchange_code(as_server, code, verifier, params), refresh=False)


def test_public_client_with_basic_and_empty_secret(as_server, alice):
    """flytectl (Go oauth2) authenticates a public client with Basic `flytectl:`."""
    code, verifier, params = get_code(as_server, alice)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"], "code_verifier": verifier}
    basic = "Basic " + base64.b64encode(b"flytectl:").decode()
    assert_token_response(token(as_server, data, headers={"Authorization": basic}), refresh=True)


def test_loopback_redirect_any_port(as_server, alice):
    code, verifier, params = get_code(as_server, alice, redirect_uri="http://localhost:40123/callback")
    assert_token_response(exchange_code(as_server, code, verifier, params))


def test_second_public_client_flyte_cli(as_server, alice):
    code, verifier, params = get_code(as_server, alice, client_id="flyte-cli", redirect_uri=OTHER_DEFAULT_REDIRECT_URI)
    body = assert_token_response(exchange_code(as_server, code, verifier, params), refresh=True)
    assert verify_access_token(as_server, body["access_token"])[1]["client_id"] == "flyte-cli"


def test_replayed_code_is_refused_and_its_tokens_revoked(as_server, alice, identity):
    code, verifier, params = get_code(as_server, alice)
    first = assert_token_response(exchange_code(as_server, code, verifier, params), refresh=True)
    assert user_info(identity, first["access_token"]).subject == "alice"
    assert_oauth_error(exchange_code(as_server, code, verifier, params), "invalid_grant", 400)
    # RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked
    c, details = call_code(identity.UserInfo, identity_pb2.UserInfoRequest(), md(first["access_token"]))
    assert c == U, (c, details)
    assert_oauth_error(refresh(as_server, first["refresh_token"]), "invalid_grant", 400)


def test_wrong_verifier_is_invalid_grant(as_server, alice):
    code, verifier, params = get_code(as_server, alice)
    other, _ = pkce_pair()
    assert_oauth_error(exchange_code(as_server, code, other, params), "invalid_grant", 400)


def test_missing_verifier_is_invalid_request(as_server, alice):
    code, verifier, params = get_code(as_server, alice)
    assert_oauth_error(exchange_code(as_server, code, None, params), "invalid_request", 400)


def test_redirect_uri_mismatch_at_token_endpoint(as_server, alice):
    code, verifier, params = get_code(as_server, alice)
    r = exchange_code(as_server, code, verifier, params, redirect_uri=OTHER_DEFAULT_REDIRECT_URI)
    assert_oauth_error(r, "invalid_grant", 400)


def test_code_of_another_client_is_invalid_grant(as_server, alice):
    code, verifier, params = get_code(as_server, alice, client_id="flytectl")
    r = exchange_code(as_server, code, verifier, params, client_id="flyte-cli")
    assert_oauth_error(r, "invalid_grant", 400)
    # and it was not consumed by the wrong client... or if it was, it fails cleanly either way
    r2 = exchange_code(as_server, code, verifier, params)
    assert r2.status_code in (200, 400), (r2.status_code, r2.text)


@pytest.mark.parametrize("code", ["garbage", "", "A" * 43])
def test_unknown_code_is_invalid_grant(as_server, code):
    params = authorize_params()
    verifier, _ = pkce_pair()
    r = exchange_code(as_server, code, verifier, params)
    if code == "":  # an empty code is a missing parameter (invalid_request); invalid_grant is tolerable
        assert r.status_code == 400 and r.json().get("error") in ("invalid_request", "invalid_grant"), r.text
    else:
        assert_oauth_error(r, "invalid_grant", 400)


def test_access_token_is_not_a_code(as_server, alice):
    body, (code, verifier, params) = code_tokens(as_server, alice)
    r = exchange_code(as_server, body["access_token"], verifier, params)
    assert_oauth_error(r, "invalid_grant", 400)


# --------------------------------------------------------------------------- authorize errors


def _error_redirect(r, params):
    assert r.status_code == 303, (r.status_code, r.headers, r.text[:500])
    loc = r.headers["Location"]
    assert loc.startswith(params["redirect_uri"] + "?"), loc
    q = query_of(loc)
    assert "code" not in q, q
    assert q.get("state") == params["state"], q
    # RFC 9207: error responses are authorization responses too
    assert q.get("iss") == as_server_url(r), q
    return q


def as_server_url(r):
    u = urllib.parse.urlsplit(r.url)
    return f"{u.scheme}://{u.netloc}"


def test_authorize_plain_pkce_is_refused(as_server, alice):
    verifier, _ = pkce_pair()
    params = authorize_params(challenge=verifier, method="plain")
    q = _error_redirect(authorize_no_follow(as_server, alice, params), params)
    assert q["error"] == "invalid_request", q


def test_authorize_missing_pkce_for_public_client_is_refused(as_server, alice):
    params = authorize_params(challenge=None)
    q = _error_redirect(authorize_no_follow(as_server, alice, params), params)
    assert q["error"] == "invalid_request", q


def test_authorize_response_type_token_is_unsupported(as_server, alice):
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, response_type="token")
    q = _error_redirect(authorize_no_follow(as_server, alice, params), params)
    assert q["error"] == "unsupported_response_type", q


def test_authorize_unknown_scope_is_invalid_scope(as_server, alice):
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, scope="all admin:root")
    q = _error_redirect(authorize_no_follow(as_server, alice, params), params)
    assert q["error"] == "invalid_scope", q


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "http://localhost:53593/elsewhere",
        "http://localhost.evil.example:53593/callback",
        "https://localhost:53593/callback",
        "http://localhost:53593/callback/../evil",
        "http://localhost:53593/callback?x=1",
    ],
)
def test_authorize_unregistered_redirect_uri_is_a_400_page(as_server, alice, redirect_uri):
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, redirect_uri=redirect_uri)
    r = authorize_no_follow(as_server, alice, params)
    assert r.status_code == 400, (redirect_uri, r.status_code, r.headers, r.text[:500])
    assert "Location" not in r.headers, r.headers
    assert r.headers.get("Content-Type", "").startswith("text/html"), r.headers


def test_authorize_unknown_client_is_a_400_page(as_server, alice):
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, client_id="no-such-client")
    r = authorize_no_follow(as_server, alice, params)
    assert r.status_code == 400, (r.status_code, r.headers, r.text[:500])
    assert "Location" not in r.headers, r.headers


def test_authorize_unregistered_redirect_uri_without_session_is_refused_too(as_server):
    """The redirect URI is checked before sending the user to log in."""
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, redirect_uri="https://evil.example/callback")
    r = requests.get(authorize_url(as_server, **params), allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 400, (r.status_code, r.headers, r.text[:500])


# --------------------------------------------------------------------------- refresh_token


def test_refresh_rotates_and_issues_working_tokens(as_server, alice, identity):
    body, _ = code_tokens(as_server, alice)
    r1 = assert_token_response(refresh(as_server, body["refresh_token"]), refresh=True)
    assert r1["refresh_token"] != body["refresh_token"]
    assert r1["access_token"] != body["access_token"]
    _, claims = verify_access_token(as_server, r1["access_token"])
    assert claims["sub"] == "alice" and claims["client_id"] == "flytectl", claims
    assert user_info(identity, r1["access_token"]).subject == "alice"
    r2 = assert_token_response(refresh(as_server, r1["refresh_token"]), refresh=True)
    assert r2["refresh_token"] not in (r1["refresh_token"], body["refresh_token"])


def test_refresh_with_narrower_scope(as_server, alice):
    body, _ = code_tokens(as_server, alice)
    r = assert_token_response(refresh(as_server, body["refresh_token"], scope="all"), refresh=True)
    _, claims = verify_access_token(as_server, r["access_token"])
    assert "all" in claims["scp"], claims


def test_refresh_with_wider_scope_is_invalid_scope(as_server, alice):
    body, _ = code_tokens(as_server, alice, scope="offline")
    r = refresh(as_server, body["refresh_token"], scope="offline all")
    assert_oauth_error(r, "invalid_scope", 400)


def test_reused_refresh_token_revokes_the_family(as_server, alice, identity):
    body, _ = code_tokens(as_server, alice)
    rt0 = body["refresh_token"]
    r1 = assert_token_response(refresh(as_server, rt0), refresh=True)
    rt1 = r1["refresh_token"]
    r2 = assert_token_response(refresh(as_server, rt1), refresh=True)
    rt2 = r2["refresh_token"]
    # reuse of an old one: refused ...
    assert_oauth_error(refresh(as_server, rt0), "invalid_grant", 400)
    # ... and the newest of the family is dead too
    assert_oauth_error(refresh(as_server, rt2), "invalid_grant", 400)
    assert_oauth_error(refresh(as_server, rt1), "invalid_grant", 400)


def test_refresh_token_of_another_client(as_server, alice):
    body, _ = code_tokens(as_server, alice)
    assert_oauth_error(refresh(as_server, body["refresh_token"], client_id="flyte-cli"), "invalid_grant", 400)


@pytest.mark.parametrize("what", ["garbage", "access_token"])
def test_refresh_with_a_non_refresh_token(as_server, alice, what):
    body, _ = code_tokens(as_server, alice)
    tok = "x" * 43 if what == "garbage" else body["access_token"]
    assert_oauth_error(refresh(as_server, tok), "invalid_grant", 400)


def test_refresh_grant_by_confidential_client_with_wrong_secret(as_server, alice, propeller_secret):
    body, _ = code_tokens(as_server, alice)
    r = token(
        as_server,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=("flytepropeller", "wrong-" + propeller_secret),
    )
    assert_oauth_error(r, "invalid_client", 401)


# --------------------------------------------------------------------------- more edges


def test_token_lifetimes_and_unique_jti(as_server, alice, propeller_secret):
    body, _ = code_tokens(as_server, alice)
    _, c1 = verify_access_token(as_server, body["access_token"])
    assert body["expires_in"] in (1799, 1800), body  # accessTokenLifespan default 30m
    assert c1["exp"] - c1["iat"] == 1800, c1
    cc = assert_token_response(token(as_server, {"grant_type": "client_credentials", "scope": "all"}, auth=("flytepropeller", propeller_secret)))
    _, c2 = verify_access_token(as_server, cc["access_token"])
    r = assert_token_response(refresh(as_server, body["refresh_token"]), refresh=True)
    _, c3 = verify_access_token(as_server, r["access_token"])
    assert len({c1["jti"], c2["jti"], c3["jti"]}) == 3, (c1, c2, c3)


def test_client_credentials_with_offline_scope_gets_no_refresh_token(as_server, propeller_secret):
    """flytekit's ClientSecret asks for the PublicClientConfig scopes ("all offline")."""
    r = token(as_server, {"grant_type": "client_credentials", "scope": "all offline"}, auth=("flytepropeller", propeller_secret))
    assert_token_response(r, refresh=False)


def test_authorization_code_by_a_client_without_that_grant(as_server, propeller_secret):
    r = token(
        as_server,
        {"grant_type": "authorization_code", "code": "x" * 43, "redirect_uri": FLYTEKIT_REDIRECT_URI, "code_verifier": "y" * 43},
        auth=("flytepropeller", propeller_secret),
    )
    assert_oauth_error(r, "unauthorized_client", 400)


def test_go_client_extra_authorize_params_are_tolerated(as_server, alice):
    """flytectl sends nonce; other clients send prompt, audience: ignored, not errors."""
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge=challenge)
    params.update(nonce=secrets.token_urlsafe(16))
    r = authorize_no_follow(as_server, alice, params)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    q = query_of(r.headers["Location"])
    assert q.get("code"), q
    assert_token_response(exchange_code(as_server, q["code"], verifier, params))


def test_loopback_port_must_match_between_authorize_and_token(as_server, alice):
    code, verifier, params = get_code(as_server, alice, redirect_uri="http://localhost:40123/callback")
    r = exchange_code(as_server, code, verifier, params, redirect_uri="http://localhost:40124/callback")
    assert_oauth_error(r, "invalid_grant", 400)


def test_error_page_does_not_reflect_markup(as_server, alice):
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, redirect_uri="https://evil.example/<script>alert(1)</script>")
    params["state"] = "<script>alert(2)</script>"
    r = authorize_no_follow(as_server, alice, params)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "<script>alert" not in r.text, r.text


def test_concurrent_redemption_of_one_code_succeeds_once(as_server, alice):
    from concurrent.futures import ThreadPoolExecutor

    code, verifier, params = get_code(as_server, alice)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: exchange_code(as_server, code, verifier, params), range(8)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, [(r.status_code, r.text[:120]) for r in results]
    for r in results:
        if r.status_code != 200:
            assert_oauth_error(r, "invalid_grant", 400)


def test_concurrent_use_of_one_refresh_token_succeeds_at_most_once(as_server, alice):
    from concurrent.futures import ThreadPoolExecutor

    body, _ = code_tokens(as_server, alice)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: refresh(as_server, body["refresh_token"]), range(8)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) <= 1, [(r.status_code, r.text[:120]) for r in results]
    for r in results:
        if r.status_code != 200:
            assert_oauth_error(r, "invalid_grant", 400)


def test_token_endpoint_refuses_get(as_server):
    r = requests.get(f"{as_server.url}/oauth2/token?grant_type=client_credentials", timeout=HTTP_TIMEOUT_S)
    assert r.status_code in (400, 405), (r.status_code, r.text[:300])


def test_replayed_code_revokes_refreshed_descendants_too(as_server, alice, identity):
    code, verifier, params = get_code(as_server, alice)
    first = assert_token_response(exchange_code(as_server, code, verifier, params), refresh=True)
    later = assert_token_response(refresh(as_server, first["refresh_token"]), refresh=True)
    assert user_info(identity, later["access_token"]).subject == "alice"
    assert_oauth_error(exchange_code(as_server, code, verifier, params), "invalid_grant", 400)
    assert_oauth_error(refresh(as_server, later["refresh_token"]), "invalid_grant", 400)
    c, details = call_code(identity.UserInfo, identity_pb2.UserInfoRequest(), md(later["access_token"]))
    assert c == U, (c, details)


def test_confidential_client_cannot_use_a_public_clients_refresh_token(as_server, alice, propeller_secret):
    body, _ = code_tokens(as_server, alice)
    r = token(as_server, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=("flytepropeller", propeller_secret))
    assert_oauth_error(r, "invalid_grant", 400)


@pytest.mark.parametrize("missing", ["client_id", "redirect_uri"])
def test_authorize_without_client_id_or_redirect_uri_is_a_400_page(as_server, alice, missing):
    """flytectl has two registered redirect URIs: without one named, none can be trusted."""
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge)
    params[missing] = None
    r = authorize_no_follow(as_server, alice, params)
    assert r.status_code == 400, (missing, r.status_code, r.headers, r.text[:300])
    assert "Location" not in r.headers, r.headers
