"""flytekit's Pkce login against the built-in authorization server (Self mode) whose user is
proven at an external OpenID Provider: oidc-provider@9 (`browser/idp.mjs`, devInteractions
login + consent) is `auth.userAuth.openId`, and flyteauth has NO local users.

The browser is a thread with a `requests.Session` that walks the real pages:

    /oauth2/authorize?...                      (flytekit's URL, client flytectl, S256)
      303 /login?redirect_url=/oauth2/authorize_callback?...
      303 <IdP>/auth?...                       (state, nonce, S256 PKCE, client flyteauth)
      IdP devInteractions: login form (any login) + consent form
      303 http://127.0.0.1:<port>/callback?code=...&state=...&iss=...
      303 /oauth2/authorize_callback?...       (now with flyte_session)
      303 http://localhost:53593/callback?code=...&state=...   (flytekit's one-shot listener)

Negatives run against the real IdP: the user aborts at the IdP (access_denied), a replayed
/callback (with and without the sealed pending-login cookie), a forged or missing state.

flytekit's Pkce tests share the fixed callback port 53593: never run them in parallel.
Every flytekit call is bounded: the browser stand-in sends a dummy callback on any failure and
`external_as.pkce_browser` arms a watchdog that unblocks flytekit's listener.
"""

from __future__ import annotations

import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import grpc
import pytest
import requests
from flyteidl.service import identity_pb2, identity_pb2_grpc

from browser import Idp
from conftest import FlyteAuthServer, free_port
from external_as import flytekit_client, pkce_browser, user_info_via  # noqa: F401 (fixture)
from helpers import RPC_TIMEOUT_S, bearer
from oauth import (
    FLYTEKIT_REDIRECT_URI,
    HTTP_TIMEOUT_S,
    WalkError,
    authorize_params,
    authorize_url,
    parse_forms,
    pkce_pair,
    query_of,
    send_dummy_callback,
    verify_access_token,
)

pytestmark = pytest.mark.timeout(120)

IDP_LOGIN = "dave"
OTHER_IDP_LOGIN = "erin"
SCOPES = ["openid", "profile", "email"]
REDIRECTS = (301, 302, 303, 307, 308)


# --------------------------------------------------------------------------- environment


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """oidc-provider (the IdP) + flyteauth in Self mode with `userAuth.openId` and no local users.
    `shared` carries the walker session from the first login to the second."""
    tmp = tmp_path_factory.mktemp("oidc_pkce")
    port = free_port()
    idp = Idp.start(tmp, redirect_uris=[f"http://127.0.0.1:{port}/callback"])
    srv = None
    try:
        (tmp / "flyteauth").mkdir()
        srv = FlyteAuthServer(
            tmp_dir=tmp / "flyteauth",
            port=port,
            auth_extra={
                "userAuth": {
                    "openId": {
                        "clientId": idp.client_id,
                        "clientSecretName": "oidc_client_secret",
                        "baseUrl": idp.issuer,
                        "scopes": list(SCOPES),
                    }
                }
            },
        )
        srv.secrets_dir.mkdir(parents=True, exist_ok=True)
        secret_file = srv.secrets_dir / "oidc_client_secret"
        secret_file.write_text(idp.client_secret)
        secret_file.chmod(0o600)
        srv.start()
        r = requests.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        yield {"srv": srv, "idp": idp, "idp_md": r.json(), "shared": {}}
    finally:
        if srv is not None:
            srv.stop()
        idp.stop()


@pytest.fixture
def server(env) -> FlyteAuthServer:
    """The module's flyteauth (named `server` so a failing test shows its output)."""
    return env["srv"]


@pytest.fixture
def idp(env) -> Idp:
    return env["idp"]


# --------------------------------------------------------------------------- the walk


@dataclass
class OidcWalk:
    hops: List[Tuple[str, str, int]] = field(default_factory=list)  # (method, url, status)
    idp_authorize_url: Optional[str] = None  # flyteauth's redirect to the IdP
    callback_url: Optional[str] = None  # the IdP's redirect back to flyteauth's /callback
    callback_response: Optional[requests.Response] = None
    final_url: Optional[str] = None  # first redirect that leaves both servers
    last: Optional[requests.Response] = None  # a non-redirect, non-IdP-form answer that ended the walk

    def trace(self) -> str:
        return "\n".join(f"  {m} {u} -> {s}" for m, u, s in self.hops)

    def idp_hops(self, issuer: str) -> List[str]:
        return [u for _, u, _ in self.hops if _on(issuer, u)]


def _on(base: str, url: str) -> bool:
    return url == base or url.startswith(base + "/")


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def walk(
    srv: FlyteAuthServer,
    idp: Idp,
    sess: requests.Session,
    url: str,
    login: str = IDP_LOGIN,
    *,
    stop_at_callback: bool = False,
    abort_at_idp: bool = False,
    max_hops: int = 24,
) -> OidcWalk:
    """Follows redirects through flyteauth and the IdP like a browser; fills the IdP's
    devInteractions login (as `login`) and consent forms. `stop_at_callback` returns before
    requesting the IdP's redirect to /callback; `abort_at_idp` takes the IdP's abort link
    instead of logging in."""
    w = OidcWalk()
    current, method, data = url, "GET", None
    for _ in range(max_hops):
        if method == "GET":
            r = sess.get(current, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        else:
            r = sess.post(current, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        w.hops.append((method, current, r.status_code))
        if _on(srv.url, current) and _path(current) == "/callback":
            w.callback_response = r
        if r.status_code in REDIRECTS:
            loc = r.headers.get("Location")
            if not loc:
                raise WalkError(f"redirect without Location\n{w.trace()}")
            nxt = urllib.parse.urljoin(current, loc)
            if _on(idp.issuer, nxt) and _on(srv.url, current) and w.idp_authorize_url is None:
                w.idp_authorize_url = nxt
            if _on(srv.url, nxt) and _on(idp.issuer, current) and _path(nxt) == "/callback":
                w.callback_url = nxt
                if stop_at_callback:
                    return w
            if not (_on(srv.url, nxt) or _on(idp.issuer, nxt)):
                w.final_url = nxt
                return w
            current, method, data = nxt, "GET", None
            continue
        if _on(idp.issuer, current) and r.status_code == 200 and "text/html" in r.headers.get("Content-Type", ""):
            forms = [f for f in parse_forms(r.text) if f.method == "post"]
            if not forms:
                raise WalkError(f"IdP page without a form\n{w.trace()}\n{r.text[:1500]}")
            form = forms[0]
            fields = dict(form.inputs)
            if abort_at_idp:
                # devInteractions' "[ Cancel ]" link: GET /interaction/<uid>/abort
                parts = _path(current).rstrip("/").split("/")
                assert parts[-2] == "interaction", current
                current, method, data = f"{idp.issuer}/interaction/{parts[-1]}/abort", "GET", None
                continue
            if "login" in form.inputs:
                fields.update(login=login, password="any")
            current = urllib.parse.urljoin(current, form.action or current)
            method, data = "POST", fields
            continue
        w.last = r
        return w
    raise WalkError(f"more than {max_hops} hops\n{w.trace()}")


def set_cookies(r: requests.Response) -> List[str]:
    """Every Set-Cookie header of a response, unmerged."""
    return list(r.raw.headers.getlist("Set-Cookie"))


def cookie_set(r: requests.Response, name: str) -> Optional[str]:
    """The value given to `name` by a Set-Cookie of this response (None when not set; "" when
    removed)."""
    for h in set_cookies(r):
        k, _, rest = h.partition("=")
        if k.strip() == name:
            return rest.split(";", 1)[0]
    return None


def issues_session(r: requests.Response) -> bool:
    v = cookie_set(r, "flyte_session")
    return bool(v)


def start_login(srv: FlyteAuthServer) -> str:
    """An authorize URL for flytectl (flytekit's client) with a fresh S256 challenge."""
    _, challenge = pkce_pair()
    return authorize_url(srv, **authorize_params(challenge=challenge))


def assert_no_session(srv: FlyteAuthServer, sess: requests.Session) -> None:
    """The cookie jar holds no session flyteauth accepts: authorize still sends it to /login."""
    r = sess.get(start_login(srv), allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"].startswith("/login?redirect_url="), r.headers["Location"]


def assert_error_page(r: requests.Response, status: int, *needles: str) -> None:
    detail = f"{r.status_code} {dict(r.headers)}\n{r.text[:1500]}"
    assert r.status_code == status, detail
    assert r.headers.get("Content-Type", "").startswith("text/html"), detail
    assert "no-store" in r.headers.get("Cache-Control", ""), detail
    assert "<html" in r.text.lower(), detail
    for n in needles:
        assert n in r.text, f"{n!r} not in the page:\n{detail}"
    assert not issues_session(r), detail


# --------------------------------------------------------------------------- flytekit's browser


class OidcLoginBrowser:
    """`webbrowser.open_new_tab` for flytekit's Pkce: returns True at once, walks flyteauth + the
    IdP in a thread with ONE requests.Session kept across runs, delivers flytekit's callback, or a
    dummy callback on any failure so flytekit raises instead of hanging."""

    def __init__(self, srv: FlyteAuthServer, idp: Idp, login: str, sess: Optional[requests.Session] = None):
        self.srv, self.idp, self.login = srv, idp, login
        self.sess = sess or requests.Session()
        self.runs = 0
        self.urls: List[str] = []
        self.walks: List[OidcWalk] = []
        self.errors: List[BaseException] = []
        self.threads: List[threading.Thread] = []

    def open_new_tab(self, url: str, *args, **kwargs) -> bool:
        self.runs += 1
        self.urls.append(url)
        t = threading.Thread(target=self._walk, args=(url,), daemon=True, name=f"oidc-walker-{self.runs}")
        self.threads.append(t)
        t.start()
        return True

    def _walk(self, url: str) -> None:
        try:
            w = walk(self.srv, self.idp, self.sess, url, self.login)
            self.walks.append(w)
            final = w.final_url or ""
            q = query_of(final)
            if not final.startswith(FLYTEKIT_REDIRECT_URI + "?") or "code" not in q or "state" not in q:
                last = "" if w.last is None else f"\n{w.last.status_code} {w.last.text[:1500]}"
                raise WalkError(f"no code at flytekit's callback: {final!r}\n{w.trace()}{last}")
            r = requests.get(final, timeout=HTTP_TIMEOUT_S)
            if r.status_code != 200:
                raise WalkError(f"flytekit's callback answered {r.status_code}")
        except BaseException as e:  # noqa: BLE001 - never leave flytekit hanging
            self.errors.append(e)
            send_dummy_callback()

    def check(self, runs: int, idp: Idp) -> None:
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "the login walk is still running"
        assert not self.errors, f"login walk failed: {self.errors!r}\nIdP log:\n{idp.log_tail()}"
        assert self.runs == runs, (self.runs, self.urls)


def flytekit_access_token(client) -> str:
    """The access token flytekit's PKCE authenticator holds (found through the channel's
    interceptors)."""
    from flytekit.clients.grpc_utils.auth_interceptor import AuthUnaryInterceptor

    seen, todo = set(), [client._channel]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, AuthUnaryInterceptor):
            creds = obj.authenticator.get_credentials()
            assert creds is not None and creds.access_token, "flytekit holds no credentials"
            return creds.access_token
        for attr in ("_channel", "_interceptor", "_interceptors"):
            v = getattr(obj, attr, None)
            if isinstance(v, (list, tuple)):
                todo.extend(v)
            elif v is not None:
                todo.append(v)
    raise AssertionError("no AuthUnaryInterceptor on flytekit's channel")


def user_info_with_token(srv: FlyteAuthServer, access_token: str):
    with grpc.insecure_channel(srv.endpoint) as ch:
        stub = identity_pb2_grpc.IdentityServiceStub(ch)
        return stub.UserInfo(identity_pb2.UserInfoRequest(), metadata=bearer(access_token), timeout=RPC_TIMEOUT_S)


# --------------------------------------------------------------------------- flytekit Pkce


def test_flyteauth_has_no_local_login_form(server, idp):
    """With openId (and no localUsers) /login goes straight to the IdP: no password form."""
    r = requests.get(f"{server.url}/login", allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"].startswith(idp.issuer + "/"), r.headers["Location"]


def test_pkce_login_through_the_idp(server, idp, env, pkce_browser):
    browser = pkce_browser(OidcLoginBrowser(server, idp, IDP_LOGIN))
    client = flytekit_client(server, "Pkce")
    try:
        projects, _ = client.list_projects_paginated(limit=10)
    finally:
        browser.check(1, idp)
    assert isinstance(projects, list)
    env["shared"]["sess"] = browser.sess
    (w,) = browser.walks

    # flytekit's authorize request: flytectl, its fixed redirect URI, S256.
    fk = query_of(browser.urls[0])
    assert _path(browser.urls[0]) == "/oauth2/authorize", browser.urls[0]
    assert fk["client_id"] == "flytectl" and fk["redirect_uri"] == FLYTEKIT_REDIRECT_URI, fk
    assert fk["code_challenge_method"] == "S256" and fk["code_challenge"], fk

    # authorize -> /login?redirect_url=/oauth2/authorize_callback?... -> the IdP
    assert w.hops[0][1] == browser.urls[0] and w.hops[0][2] == 303, w.trace()
    m, login_url, status = w.hops[1]
    assert _path(login_url) == "/login" and status == 303, w.trace()
    back = query_of(login_url)["redirect_url"]
    assert back.startswith("/oauth2/authorize_callback?"), back
    assert query_of(back)["state"] == fk["state"], (back, fk)

    # flyteauth's request at the IdP: the discovered endpoint, state, nonce, S256 PKCE.
    assert w.idp_authorize_url is not None, w.trace()
    assert w.hops[2][1] == w.idp_authorize_url, w.trace()
    ep = env["idp_md"]["authorization_endpoint"]
    assert w.idp_authorize_url.split("?", 1)[0] == ep, (w.idp_authorize_url, ep)
    a = query_of(w.idp_authorize_url)
    assert a["response_type"] == "code", a
    assert a["client_id"] == idp.client_id, a
    assert a["redirect_uri"] == f"{server.url}/callback", a
    assert set(a["scope"].split()) == set(SCOPES), a
    assert len(a.get("state", "")) >= 16 and len(a.get("nonce", "")) >= 16, a
    assert a["state"] != fk["state"], "flyteauth must not forward flytekit's state to the IdP"
    assert a["code_challenge_method"] == "S256" and len(a.get("code_challenge", "")) == 43, a
    assert "prompt" not in a, a  # no offline_access asked for

    # IdP -> /callback (its state back, and RFC 9207 iss) -> session -> authorize_callback
    assert w.callback_url is not None, w.trace()
    cb = query_of(w.callback_url)
    assert cb["state"] == a["state"] and cb.get("code"), cb
    assert cb.get("iss") == idp.issuer, cb
    r = w.callback_response
    assert r is not None and r.status_code == 303, w.trace()
    assert r.headers["Location"] == back, (r.headers["Location"], back)
    assert issues_session(r), set_cookies(r)
    assert cookie_set(r, "flyte_oidc_login") == "", set_cookies(r)  # pending login cleared
    # the authorize_callback hop went straight to flytekit's listener with a code and its state
    assert _path(w.hops[-1][1]) == "/oauth2/authorize_callback" and w.hops[-1][2] == 303, w.trace()
    q = query_of(w.final_url)
    assert w.final_url.startswith(FLYTEKIT_REDIRECT_URI + "?") and q["state"] == fk["state"] and q["code"], w.final_url

    # the user is the IdP's subject, on flytekit's channel and with flytekit's token
    info = user_info_via(client)
    assert info.subject == IDP_LOGIN, info
    assert info.email == f"{IDP_LOGIN}@idp.example.test", info
    assert info.name == f"IdP User {IDP_LOGIN}", info
    assert info.preferred_username == IDP_LOGIN, info
    access_token = flytekit_access_token(client)
    _, claims = verify_access_token(server, access_token)
    assert claims["sub"] == IDP_LOGIN, claims
    assert claims.get("client_id", claims.get("cid", "flytectl")) == "flytectl", claims
    assert user_info_with_token(server, access_token).subject == IDP_LOGIN


def test_second_pkce_login_reuses_the_session(server, idp, env, pkce_browser):
    sess = env["shared"].get("sess")
    if sess is None:
        pytest.fail("no walker session: test_pkce_login_through_the_idp did not succeed", pytrace=False)
    assert sess.cookies.get("flyte_session", domain="127.0.0.1"), dict(sess.cookies)
    browser = pkce_browser(OidcLoginBrowser(server, idp, "someone-else", sess=sess))
    client = flytekit_client(server, "Pkce")
    try:
        projects, _ = client.list_projects_paginated(limit=10)
    finally:
        browser.check(1, idp)
    assert isinstance(projects, list)
    (w,) = browser.walks
    assert w.idp_hops(idp.issuer) == [], "the IdP was visited again:\n" + w.trace()
    # authorize answers at once with a code for flytekit's listener
    assert [(m, _path(u), s) for m, u, s in w.hops] == [("GET", "/oauth2/authorize", 303)], w.trace()
    assert user_info_via(client).subject == IDP_LOGIN


def test_pkce_login_as_another_idp_user(server, idp, pkce_browser):
    """A fresh browser logging in as someone else at the IdP gets that subject."""
    browser = pkce_browser(OidcLoginBrowser(server, idp, OTHER_IDP_LOGIN))
    client = flytekit_client(server, "Pkce")
    try:
        client.list_projects_paginated(limit=10)
    finally:
        browser.check(1, idp)
    info = user_info_via(client)
    assert info.subject == OTHER_IDP_LOGIN, info
    assert info.email == f"{OTHER_IDP_LOGIN}@idp.example.test", info


# --------------------------------------------------------------------------- negatives at /callback


def test_user_aborts_at_the_idp_gives_a_401_page(server, idp):
    """devInteractions' abort: the IdP redirects to /callback?error=access_denied&state=..."""
    sess = requests.Session()
    w = walk(server, idp, sess, start_login(server), abort_at_idp=True)
    assert w.callback_url is not None, w.trace()
    cb = query_of(w.callback_url)
    assert cb.get("error") == "access_denied" and "code" not in cb, cb
    assert cb.get("state") == query_of(w.idp_authorize_url)["state"], (cb, w.idp_authorize_url)
    r = w.last
    assert r is not None and w.hops[-1][1] == w.callback_url, w.trace()
    assert_error_page(r, 401, "access_denied", "Sign-in was not completed")
    assert cookie_set(r, "flyte_oidc_login") == "", set_cookies(r)
    assert_no_session(server, sess)


def test_idp_error_with_markup_is_escaped(server):
    """The IdP's error text is shown, never interpreted as HTML."""
    r = requests.get(
        f"{server.url}/callback",
        params={"error": "access_denied", "error_description": "<script>alert(1)</script>", "state": "x"},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
    )
    assert_error_page(r, 401, "access_denied")
    assert "<script>alert(1)</script>" not in r.text, r.text[:1500]


def test_replayed_callback_is_rejected(server, idp):
    sess = requests.Session()
    w = walk(server, idp, sess, start_login(server), stop_at_callback=True)
    assert w.callback_url is not None, w.trace()
    pending = sess.cookies.get("flyte_oidc_login", domain="127.0.0.1")
    assert pending, dict(sess.cookies)

    first = sess.get(w.callback_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert first.status_code == 303 and issues_session(first), (first.status_code, set_cookies(first), first.text[:800])
    assert first.headers["Location"].startswith("/oauth2/authorize_callback?"), first.headers

    # 1. the same browser again: the pending login was spent with the first answer
    again = sess.get(w.callback_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert_error_page(again, 400, "sign-in state is missing")

    # 2. someone holding both the URL and the pending-login cookie: the IdP refuses the code
    thief = requests.Session()
    thief.cookies.set("flyte_oidc_login", pending, domain="127.0.0.1", path="/")
    replay = thief.get(w.callback_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    # 401 "Sign-in rejected": the code exchange at the IdP answered invalid_grant
    assert_error_page(replay, 401, "invalid_grant")
    assert "flyte_session" not in thief.cookies, dict(thief.cookies)
    assert_no_session(server, thief)
    assert "invalid_grant" in idp.log_tail(20000), idp.log_tail()


def test_forged_state_is_rejected(server, idp):
    sess = requests.Session()
    w = walk(server, idp, sess, start_login(server), stop_at_callback=True)
    assert w.callback_url is not None, w.trace()
    q = query_of(w.callback_url)
    forged = dict(q, state=secrets.token_urlsafe(32))
    url = f"{server.url}/callback?" + urllib.parse.urlencode(forged)
    r = sess.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert_error_page(r, 400, "state")
    assert_no_session(server, sess)


def test_missing_state_is_rejected(server, idp):
    sess = requests.Session()
    w = walk(server, idp, sess, start_login(server), stop_at_callback=True)
    assert w.callback_url is not None, w.trace()
    q = query_of(w.callback_url)
    q.pop("state")
    r = sess.get(f"{server.url}/callback?" + urllib.parse.urlencode(q), allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert_error_page(r, 400)
    assert_no_session(server, sess)


def test_callback_without_the_pending_login_cookie_is_rejected(server, idp):
    """The genuine IdP answer delivered to a browser that did not start the login."""
    sess = requests.Session()
    w = walk(server, idp, sess, start_login(server), stop_at_callback=True)
    assert w.callback_url is not None, w.trace()
    other = requests.Session()
    r = other.get(w.callback_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert_error_page(r, 400)
    assert_no_session(server, other)
