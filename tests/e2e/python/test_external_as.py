"""`authServerType: External` with panva's oidc-provider@9 (`browser/external_as.mjs`) as the
authorization server: resource indicators give RS256 JWT access tokens (`typ: at+jwt`, `aud` =
flyteauth's public URL, `scope` "all ..." as a space string, `client_id`).

flytekit `ClientSecret` and `Pkce` run against the AS through flyteauth's proxied metadata;
flytekit `DeviceFlow` cannot (oidc-provider's device response has no `interval`: flytekit raises
KeyError) — that is asserted, and the device grant is walked with requests instead; flytekit's
DeviceFlow is tested against the built-in AS in test_device_flow.py.
"""

import json
import secrets
import time

import grpc
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc

from conftest import FlyteAuthServer, free_port
from external_as import (
    EXTRA_AUDIENCE,
    ASLoginBrowser,
    external_auth_extra,
    flytekit_client,
    pkce_browser,  # noqa: F401 - fixture
    start_external_as,
    user_info_via,
    wait_for_metadata,
    walk_as,
)
from helpers import RPC_TIMEOUT_S, b64url, bearer, call_code, tamper_payload
from oauth import FLYTEKIT_REDIRECT_URI, HTTP_TIMEOUT_S

pytestmark = pytest.mark.timeout(120)

U = grpc.StatusCode.UNAUTHENTICATED
OK = grpc.StatusCode.OK
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
METADATA_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "response_types_supported",
    "scopes_supported",
    "token_endpoint_auth_methods_supported",
    "jwks_uri",
    "code_challenge_methods_supported",
    "grant_types_supported",
    "device_authorization_endpoint",
)


def _ext_server(tmp_path_factory, name, *, as_kwargs=None, **extra_kwargs):
    tmp = tmp_path_factory.mktemp(name)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ext_as = start_external_as(tmp / "as", url, **(as_kwargs or {}))
    srv = FlyteAuthServer(tmp_dir=tmp, port=port, auth_extra=external_auth_extra(url, ext_as.issuer, **extra_kwargs))
    try:
        srv.start()
        wait_for_metadata(srv)
    except BaseException:
        srv.stop()
        ext_as.stop()
        raise
    return srv, ext_as


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    srv, ext_as = _ext_server(tmp_path_factory, "ext")
    yield srv, ext_as
    srv.stop()
    ext_as.stop()


@pytest.fixture(scope="module")
def admin_stub(ext):
    ch = grpc.insecure_channel(ext[0].endpoint)
    yield admin_pb2_grpc.AdminServiceStub(ch)
    ch.close()


def list_projects(stub, token):
    return call_code(stub.ListProjects, project_pb2.ProjectListRequest(limit=5), bearer(token))


def _on_failure(ext_as):
    return f"\n--- AS log ---\n{ext_as.log_tail()}"


# --------------------------------------------------------------------------- metadata


def test_metadata_is_the_as_document_over_grpc_and_rest(ext):
    srv, ext_as = ext
    doc = ext_as.metadata()
    rest = wait_for_metadata(srv)
    with grpc.insecure_channel(srv.endpoint) as ch:
        md = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetOAuth2Metadata(
            auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_S
        )
        pcc = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetPublicClientConfig(
            auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_S
        )
    for f in METADATA_FIELDS:
        want = doc.get(f)
        if want is None:
            continue
        got_grpc = getattr(md, f)
        got_grpc = list(got_grpc) if isinstance(want, list) else got_grpc
        assert got_grpc == want, (f, got_grpc, want)
        assert rest.get(f) == want, (f, rest.get(f), want)
    assert md.issuer == ext_as.issuer
    assert md.token_endpoint == ext_as.issuer + "/token"
    assert md.device_authorization_endpoint == ext_as.issuer + "/device/auth"
    # thirdPartyConfig.flyteClient
    assert pcc.client_id == "flytectl"
    assert pcc.redirect_uri == FLYTEKIT_REDIRECT_URI
    assert list(pcc.scopes) == ["all", "offline"]
    assert pcc.audience == srv.url


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/oauth2/authorize"), ("POST", "/oauth2/token"), ("GET", "/oauth2/jwks"),
     ("POST", "/oauth2/device_authorization"), ("GET", "/oauth2/device"), ("POST", "/oauth2/revoke"),
     ("POST", "/oauth2/introspect")],
)
def test_builtin_as_endpoints_are_not_served(ext, method, path):
    srv, _ = ext
    r = requests.request(method, srv.url + path, data={"grant_type": "client_credentials"},
                         allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 404, (r.status_code, r.text[:300])


# --------------------------------------------------------------------------- flytekit


def test_flytekit_client_secret(ext):
    srv, ext_as = ext
    client = flytekit_client(srv, "ClientSecret", client_id="flytepropeller",
                             client_credentials_secret=ext_as.propeller_secret, scopes=["all"])
    projects, _ = client.list_projects_paginated(limit=10)
    assert isinstance(projects, list)
    assert user_info_via(client).subject == "flytepropeller"


def test_flytekit_pkce(ext, pkce_browser):
    srv, ext_as = ext
    login = "carol-" + secrets.token_hex(3)
    browser = pkce_browser(ASLoginBrowser(ext_as.issuer, login))
    client = flytekit_client(srv, "Pkce")
    try:
        projects, _ = client.list_projects_paginated(limit=10)
    finally:
        browser.join()
    assert not browser.errors, f"walk failed: {browser.errors!r}{_on_failure(ext_as)}"
    assert browser.runs == 1
    assert browser.urls[0].startswith(ext_as.issuer + "/auth?"), browser.urls
    assert isinstance(projects, list)
    assert user_info_via(client).subject == login


def test_oidc_provider_device_response_has_no_interval_and_flytekit_device_flow_crashes(ext, monkeypatch):
    """Documented peer limitation: flytekit's DeviceCodeResponse needs `interval`."""
    from flytekit.clients.auth import auth_client as flytekit_auth_client

    srv, ext_as = ext
    r = requests.post(ext_as.issuer + "/device/auth", data={"client_id": "flytectl", "scope": "all offline"},
                      timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "interval" not in body, body
    assert {"device_code", "user_code", "verification_uri", "expires_in"} <= set(body), body
    flytekit_auth_client._SingletonPerEndpoint._instances.clear()
    client = flytekit_client(srv, "DeviceFlow")
    with pytest.raises(Exception) as ei:
        client.list_projects_paginated(limit=10)
    chain, e = [], ei.value
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(x, KeyError) and x.args == ("interval",) for x in chain), repr(chain)


def test_device_grant_from_the_as_walked_with_requests_works_at_flyteauth(ext, admin_stub):
    srv, ext_as = ext
    r = requests.post(ext_as.issuer + "/device/auth", data={"client_id": "flytectl", "scope": "all offline"},
                      timeout=HTTP_TIMEOUT_S)
    dev = r.json()
    poll = {"grant_type": DEVICE_GRANT, "device_code": dev["device_code"], "client_id": "flytectl"}
    p = requests.post(ext_as.issuer + "/token", data=poll, timeout=HTTP_TIMEOUT_S)
    assert p.status_code == 400 and p.json()["error"] == "authorization_pending", p.text
    login = "dave-" + secrets.token_hex(3)
    final, last, hops = walk_as(ext_as.issuer, requests.Session(), dev["verification_uri_complete"], login)
    assert final is None and last.status_code == 200, "\n".join(hops)
    p = requests.post(ext_as.issuer + "/token", data=poll, timeout=HTTP_TIMEOUT_S)
    assert p.status_code == 200, p.text + _on_failure(ext_as)
    tok = p.json()["access_token"]
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert claims["aud"] == srv.url and claims["sub"] == login, claims
    assert list_projects(admin_stub, tok) == (OK, "")


# --------------------------------------------------------------------------- tokens: positives


def test_as_token_claims_and_extra_allowed_audience(ext, admin_stub):
    srv, ext_as = ext
    tok = ext_as.access_token("all")
    header = jwt.get_unverified_header(tok)
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt" and header["kid"], header
    assert claims["iss"] == ext_as.issuer and claims["aud"] == srv.url, claims
    assert claims["scope"] == "all" and claims["client_id"] == "flytepropeller", claims
    assert list_projects(admin_stub, tok) == (OK, "")
    # the extra allowedAudience value is accepted too
    tok2 = ext_as.access_token("all", resource=EXTRA_AUDIENCE)
    assert jwt.decode(tok2, options={"verify_signature": False})["aud"] == EXTRA_AUDIENCE
    assert list_projects(admin_stub, tok2) == (OK, "")


# --------------------------------------------------------------------------- tokens: negatives


def test_wrong_audience_is_unauthenticated(ext, admin_stub):
    _, ext_as = ext
    tok = ext_as.access_token("all", resource="https://other.example/api")
    assert jwt.decode(tok, options={"verify_signature": False})["aud"] == "https://other.example/api"
    code, details = list_projects(admin_stub, tok)
    assert code == U, (code, details)
    assert "aud" in details.lower(), details


def test_token_without_scope_all_is_unauthenticated(ext, admin_stub):
    _, ext_as = ext
    tok = ext_as.access_token("offline")
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert claims["scope"] == "offline" and claims["client_id"] == "flytepropeller", claims
    code, details = list_projects(admin_stub, tok)
    assert code == U, (code, details)
    assert "scope" in details.lower(), details


def test_tampered_as_token_is_unauthenticated(ext, admin_stub):
    _, ext_as = ext
    tok = ext_as.access_token("offline")
    code, details = list_projects(admin_stub, tamper_payload(tok, scope="all"))
    assert code == U, (code, details)


def test_token_from_another_issuer_with_the_same_key_is_unauthenticated(ext, admin_stub, tmp_path):
    """A second oidc-provider sharing the keys: the signature verifies, only `iss` is wrong."""
    srv, ext_as = ext
    other = start_external_as(tmp_path / "other", srv.url, keys=ext_as.private_keys(), name="other")
    try:
        tok = other.access_token("all")
        assert jwt.get_unverified_header(tok)["kid"] == jwt.get_unverified_header(ext_as.access_token())["kid"]
        code, details = list_projects(admin_stub, tok)
        assert code == U, (code, details)
        assert "iss" in details.lower(), details
    finally:
        other.stop()


def test_token_from_another_issuer_with_its_own_key_is_unauthenticated(ext, admin_stub, tmp_path):
    srv, _ = ext
    other = start_external_as(tmp_path / "other2", srv.url, name="other2")
    try:
        code, details = list_projects(admin_stub, other.access_token("all"))
        assert code == U, (code, details)
    finally:
        other.stop()


def test_unknown_kid_is_unauthenticated(ext, admin_stub):
    srv, ext_as = ext
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": ext_as.issuer, "aud": srv.url, "sub": "mallory", "client_id": "flytepropeller",
              "scope": "all", "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}
    tok = jwt.encode(claims, key, algorithm="RS256", headers={"typ": "at+jwt", "kid": "k-" + secrets.token_hex(6)})
    code, details = list_projects(admin_stub, tok)
    assert code == U, (code, details)
    # the real kid of the AS, but signed by another key
    real_kid = jwt.get_unverified_header(ext_as.access_token())["kid"]
    tok = jwt.encode(claims, key, algorithm="RS256", headers={"typ": "at+jwt", "kid": real_kid})
    code, details = list_projects(admin_stub, tok)
    assert code == U, (code, details)


# --------------------------------------------------------------------------- key rotation


def test_as_key_rotation_new_tokens_work_without_restart(tmp_path_factory):
    srv, ext_as = _ext_server(tmp_path_factory, "ext_rotation", jwks_refresh_interval="1s")
    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            stub = admin_pb2_grpc.AdminServiceStub(ch)
            old_tok = ext_as.access_token()
            assert list_projects(stub, old_tok) == (OK, "")
            old_kid = jwt.get_unverified_header(old_tok)["kid"]
            new_kid = ext_as.rotate()
            assert new_kid != old_kid
            time.sleep(1.5)  # past jwksRefreshInterval since flyteauth's last JWKS fetch
            new_tok = ext_as.access_token()
            assert jwt.get_unverified_header(new_tok)["kid"] == new_kid
            before = ext_as.stats()["jwks"]
            assert list_projects(stub, new_tok) == (OK, ""), srv.log_tail()
            assert ext_as.stats()["jwks"] == before + 1  # exactly one refetch for the new kid
            assert list_projects(stub, new_tok) == (OK, "")
            assert ext_as.stats()["jwks"] == before + 1  # cached now
            assert list_projects(stub, old_tok) == (OK, "")  # the old key is still published
    finally:
        srv.stop()
        ext_as.stop()


# --------------------------------------------------------------------------- metadataUrl / fallback


def test_metadata_url_openid_configuration(tmp_path_factory):
    srv, ext_as = _ext_server(tmp_path_factory, "ext_openid_cfg", metadata_url=".well-known/openid-configuration")
    try:
        stats = ext_as.stats()
        assert stats["openidMetadata"] >= 1 and stats["oauthMetadata"] == 0, stats
        assert wait_for_metadata(srv)["issuer"] == ext_as.issuer
        client = flytekit_client(srv, "ClientSecret", client_id="flytepropeller",
                                 client_credentials_secret=ext_as.propeller_secret, scopes=["all"])
        client.list_projects_paginated(limit=10)
    finally:
        srv.stop()
        ext_as.stop()


def test_fallback_to_openid_configuration_when_oauth_metadata_is_absent(tmp_path_factory):
    """The AS answers 404 on /.well-known/oauth-authorization-server (as many enterprise IdPs do);
    the default metadataUrl falls back to openid-configuration."""
    srv, ext_as = _ext_server(tmp_path_factory, "ext_fallback", as_kwargs={"no_oauth_metadata": True})
    try:
        r = requests.get(ext_as.issuer + "/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 404
        stats = ext_as.stats()
        assert stats["oauthMetadata"] >= 1 and stats["openidMetadata"] >= 1, stats
        md = wait_for_metadata(srv)
        assert md["issuer"] == ext_as.issuer and md["token_endpoint"] == ext_as.issuer + "/token"
        client = flytekit_client(srv, "ClientSecret", client_id="flytepropeller",
                                 client_credentials_secret=ext_as.propeller_secret, scopes=["all"])
        client.list_projects_paginated(limit=10)
    finally:
        srv.stop()
        ext_as.stop()


def test_as_down_at_start_then_up(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ext_down")
    port, as_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    as_issuer = f"http://127.0.0.1:{as_port}"
    srv = FlyteAuthServer(tmp_dir=tmp, port=port, auth_extra=external_auth_extra(url, as_issuer))
    ext_as = None
    try:
        srv.start()  # does not fail although nothing listens on the AS port
        r = requests.get(srv.url + "/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 503, (r.status_code, r.text[:300])
        with grpc.insecure_channel(srv.endpoint) as ch:
            code, details = call_code(auth_pb2_grpc.AuthMetadataServiceStub(ch).GetOAuth2Metadata,
                                      auth_pb2.OAuth2MetadataRequest())
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            ext_as = start_external_as(tmp / "as", url, port=as_port)
            assert ext_as.issuer == as_issuer
            md = wait_for_metadata(srv, timeout=45)
            assert md["issuer"] == as_issuer
            assert list_projects(admin_pb2_grpc.AdminServiceStub(ch), ext_as.access_token()) == (OK, "")
    finally:
        srv.stop()
        if ext_as:
            ext_as.stop()


# --------------------------------------------------------------------------- garbage kids


def _garbage_kid_token(issuer, aud) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": secrets.token_hex(8)}
    now = int(time.time())
    claims = {"iss": issuer, "aud": aud, "sub": "x", "scope": "all", "client_id": "flytepropeller",
              "iat": now, "exp": now + 300}
    return (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + "."
            + b64url(secrets.token_bytes(256)))


def test_500_tokens_with_random_kids_cause_at_most_two_jwks_fetches(tmp_path_factory):
    """jwksRefreshInterval 2s: once the interval has passed since the start-up fetch, a burst of 500
    unknown kids (serial, then 500 from 25 threads at once) may refetch the JWKS once, not 500 times."""
    from concurrent.futures import ThreadPoolExecutor

    srv, ext_as = _ext_server(tmp_path_factory, "ext_garbage", jwks_refresh_interval="2s")
    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            stub = admin_pb2_grpc.AdminServiceStub(ch)

            def one(_):
                return list_projects(stub, _garbage_kid_token(ext_as.issuer, srv.url))[0]

            for label, run in (("serial", lambda: [one(i) for i in range(500)]),
                               ("concurrent", lambda: list(ThreadPoolExecutor(25).map(one, range(500))))):
                time.sleep(2.5)  # past the interval since the last fetch: one refetch is allowed
                ext_as.reset_stats()
                t0 = time.monotonic()
                codes = run()
                elapsed = time.monotonic() - t0
                fetches = ext_as.stats()["jwks"]
                assert codes == [U] * 500, (label, {c: codes.count(c) for c in set(codes)})
                assert elapsed < 2, f"{label}: 500 calls took {elapsed:.1f}s, longer than the interval"
                assert 1 <= fetches <= 2, f"{label}: {fetches} JWKS fetches for 500 unknown kids in {elapsed:.2f}s"
            # and a real token still works afterwards
            assert list_projects(stub, ext_as.access_token()) == (OK, "")
    finally:
        srv.stop()
        ext_as.stop()
