"""Helpers for the built-in OAuth2 authorization server: users, PKCE, the login walk, token calls.

The "browser" here is a `requests.Session` with a cookie jar that follows the server's real
pages: /oauth2/authorize -> /login (HTML form, csrf_token parsed from it) -> POST /login ->
back to /oauth2/authorize -> 303 to the client's redirect URI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple

import bcrypt
import jwt
import requests

HTTP_TIMEOUT_S = 15

FLYTEKIT_REDIRECT_URI = "http://localhost:53593/callback"
OTHER_DEFAULT_REDIRECT_URI = "http://localhost:12345/callback"
PUBLIC_CLIENTS = ("flytectl", "flyte-cli")


# --------------------------------------------------------------------------- users / config


@dataclass(frozen=True)
class LocalUser:
    username: str
    password: str
    name: str
    email: str
    groups: Tuple[str, ...] = ()

    def config(self) -> dict:
        # bcrypt cost 4: the debug build verifies it quickly; the format is the ordinary $2b$.
        pw_hash = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        return {
            "username": self.username,
            "passwordHash": pw_hash,
            "name": self.name,
            "email": self.email,
            "groups": list(self.groups),
        }


ALICE = LocalUser("alice", "alice-" + secrets.token_urlsafe(12), "Alice Example", "alice@example.com", ("dev",))
BOB = LocalUser("bob", "bob-" + secrets.token_urlsafe(12), "Bob Example", "bob@example.com", ("ops",))


def auth_extra(
    users=(ALICE, BOB),
    *,
    clock_skew: Optional[str] = "0s",
    self_auth_server: Optional[dict] = None,
) -> dict:
    """`auth:` keys for a server with local users and the built-in AS."""
    extra: dict = {}
    if clock_skew is not None:
        extra["clockSkew"] = clock_skew
    extra["userAuth"] = {"localUsers": [u.config() for u in users]}
    if self_auth_server:
        extra["appAuth"] = {"selfAuthServer": dict(self_auth_server)}
    return extra


def flyte_client_secret(secret: str, rounds: int = 6) -> str:
    """A static client's `client_secret` the way Flyte's config wants it: base64(bcrypt(secret))."""
    return base64.b64encode(bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=rounds))).decode()


def generated_propeller_secret(server) -> str:
    path = server.secrets_dir / "flytepropeller_client_secret"
    assert path.exists(), f"{path} was not generated at first start"
    secret = path.read_text().strip()
    assert secret, f"{path} is empty"
    return secret


# --------------------------------------------------------------------------- PKCE


def pkce_pair() -> Tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# --------------------------------------------------------------------------- HTML forms


@dataclass
class Form:
    action: str
    method: str
    inputs: Dict[str, str] = field(default_factory=dict)
    input_types: Dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: List[Form] = []
        self._current: Optional[Form] = None

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            self._current.inputs[a["name"]] = a.get("value", "")
            self._current.input_types[a["name"]] = a.get("type", "text").lower()

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def parse_forms(html: str) -> List[Form]:
    p = _FormParser()
    p.feed(html)
    return p.forms


def login_form(html: str) -> Form:
    for f in parse_forms(html):
        if "username" in f.inputs and "password" in f.inputs:
            return f
    raise AssertionError(f"no login form (username + password inputs) in page:\n{html[:2000]}")


# --------------------------------------------------------------------------- the login walk


class WalkError(AssertionError):
    pass


@dataclass
class Walk:
    """What a browser walk saw: every URL requested and the final off-server redirect."""

    hops: List[Tuple[str, str, int]] = field(default_factory=list)  # (method, url, status)
    final_url: Optional[str] = None

    def trace(self) -> str:
        return "\n".join(f"  {m} {u} -> {s}" for m, u, s in self.hops)


def is_on_server(server, url: str) -> bool:
    return url.startswith(server.url + "/") or url == server.url


def walk_authorize(
    server,
    sess: requests.Session,
    url: str,
    user: Optional[LocalUser] = None,
    *,
    max_hops: int = 12,
) -> Walk:
    """Follow redirects from `url` like a browser, filling in the login form as `user` when shown.
    Stops at the first redirect that leaves the server (the client's redirect URI) and returns it."""
    walk = Walk()
    current, method, data = url, "GET", None
    logged_in = False
    for _ in range(max_hops):
        if method == "GET":
            r = sess.get(current, allow_redirects=False, timeout=HTTP_TIMEOUT_S, verify=server.verify)
        else:
            r = sess.post(current, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_S, verify=server.verify)
        walk.hops.append((method, current, r.status_code))
        if r.status_code in (301, 302, 303, 307, 308):
            loc = r.headers.get("Location")
            if not loc:
                raise WalkError(f"redirect without Location\n{walk.trace()}")
            nxt = urllib.parse.urljoin(current, loc)
            if not is_on_server(server, nxt):
                walk.final_url = nxt
                return walk
            current, method, data = nxt, "GET", None
            continue
        if r.status_code == 200 and "text/html" in r.headers.get("Content-Type", ""):
            if user is None or logged_in:
                raise WalkError(f"unexpected page (logged_in={logged_in})\n{walk.trace()}\n{r.text[:1500]}")
            form = login_form(r.text)
            fields = dict(form.inputs)
            fields["username"] = user.username
            fields["password"] = user.password
            current = urllib.parse.urljoin(current, form.action or current)
            method, data = "POST", fields
            logged_in = True
            continue
        raise WalkError(f"unexpected {r.status_code} {r.headers.get('Content-Type')}\n{walk.trace()}\n{r.text[:1500]}")
    raise WalkError(f"more than {max_hops} hops\n{walk.trace()}")


def login(server, sess: requests.Session, user: LocalUser, redirect_url: Optional[str] = None) -> requests.Response:
    """GET /login, POST the form as `user`; returns the POST response (no redirects followed)."""
    q = "" if redirect_url is None else "?" + urllib.parse.urlencode({"redirect_url": redirect_url})
    r = sess.get(f"{server.url}/login{q}", allow_redirects=False, timeout=HTTP_TIMEOUT_S, verify=server.verify)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    form = login_form(r.text)
    fields = dict(form.inputs, username=user.username, password=user.password)
    return sess.post(
        urllib.parse.urljoin(r.url, form.action or "/login"),
        data=fields,
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
        verify=server.verify,
    )


def logged_in_session(server, user: LocalUser) -> requests.Session:
    sess = requests.Session()
    r = login(server, sess, user)
    assert r.status_code == 303, (r.status_code, r.headers, r.text[:500])
    assert "flyte_session" in sess.cookies, dict(sess.cookies)
    return sess


# --------------------------------------------------------------------------- authorize / token


def authorize_url(server, **params) -> str:
    return f"{server.url}/oauth2/authorize?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def authorize_params(
    client_id: str = "flytectl",
    redirect_uri: str = FLYTEKIT_REDIRECT_URI,
    scope: str = "all offline",
    challenge: Optional[str] = None,
    method: Optional[str] = "S256",
    state: Optional[str] = None,
    response_type: str = "code",
) -> dict:
    return {
        "response_type": response_type,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state or secrets.token_urlsafe(24),
        "code_challenge": challenge,
        "code_challenge_method": method if challenge is not None else None,
    }


def query_of(url: str) -> Dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def get_code(server, sess: requests.Session, **kw) -> Tuple[str, str, dict]:
    """Authorization code for a logged-in session. Returns (code, verifier, params)."""
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge=challenge, **kw)
    r = sess.get(authorize_url(server, **params), allow_redirects=False, timeout=HTTP_TIMEOUT_S, verify=server.verify)
    assert r.status_code == 303, (r.status_code, r.headers, r.text[:800])
    loc = r.headers["Location"]
    assert loc.startswith(params["redirect_uri"] + "?"), loc
    q = query_of(loc)
    assert "code" in q, q
    assert q.get("state") == params["state"], q
    return q["code"], verifier, params


def token(server, data: dict, auth=None, headers=None) -> requests.Response:
    return requests.post(
        f"{server.url}/oauth2/token",
        data=data,
        auth=auth,
        headers=headers,
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
        verify=server.verify,
    )


def exchange_code(server, code: str, verifier: Optional[str], params: dict, **overrides) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
        "client_id": params["client_id"],
        "code_verifier": verifier,
    }
    data.update(overrides)
    return token(server, {k: v for k, v in data.items() if v is not None})


def refresh(server, refresh_token: str, client_id: str = "flytectl", **extra) -> requests.Response:
    return token(server, dict({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}, **extra))


def assert_oauth_error(r: requests.Response, error: str, status: Optional[int] = None) -> dict:
    """RFC 6749 §5.2 error: JSON {error, error_description}, Cache-Control: no-store."""
    detail = f"{r.status_code} {dict(r.headers)} {r.text[:800]}"
    if status is not None:
        assert r.status_code == status, detail
    else:
        assert r.status_code in (400, 401), detail
    assert r.headers.get("Content-Type", "").startswith("application/json"), detail
    body = r.json()
    assert body.get("error") == error, detail
    assert isinstance(body.get("error_description", ""), str), detail
    assert "no-store" in r.headers.get("Cache-Control", ""), detail
    return body


def assert_token_response(r: requests.Response, *, refresh: Optional[bool] = None) -> dict:
    detail = f"{r.status_code} {dict(r.headers)} {r.text[:800]}"
    assert r.status_code == 200, detail
    assert r.headers.get("Content-Type", "").startswith("application/json"), detail
    assert "no-store" in r.headers.get("Cache-Control", ""), detail
    body = r.json()
    assert body.get("token_type") == "Bearer", detail
    assert isinstance(body.get("access_token"), str) and body["access_token"], detail
    assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, detail
    assert isinstance(body.get("scope"), str), detail
    if refresh is True:
        assert isinstance(body.get("refresh_token"), str) and body["refresh_token"], detail
    elif refresh is False:
        assert "refresh_token" not in body, detail
    return body


# --------------------------------------------------------------------------- JWTs


def jwks(server) -> dict:
    r = requests.get(f"{server.url}/oauth2/jwks", timeout=HTTP_TIMEOUT_S, verify=server.verify)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.json()


def verify_access_token(server, access_token: str) -> Tuple[dict, dict]:
    """Signature against the server's JWKS (by kid) and iss/aud/exp; returns (header, claims)."""
    header = jwt.get_unverified_header(access_token)
    assert header.get("typ") == "at+jwt", header
    kid = header.get("kid")
    assert kid, header
    keys = [k for k in jwks(server)["keys"] if k.get("kid") == kid]
    assert len(keys) == 1, (kid, jwks(server))
    key = jwt.PyJWK(keys[0])
    claims = jwt.decode(
        access_token,
        key.key,
        algorithms=[header["alg"]],
        audience=server.url,
        issuer=server.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        leeway=5,
    )
    return header, claims


def unverified_claims(token_str: str) -> dict:
    return jwt.decode(token_str, options={"verify_signature": False})


# --------------------------------------------------------------------------- flytekit PKCE browser


CALLBACK_DUMMY = FLYTEKIT_REDIRECT_URI + "?code=e2e-dummy&state=e2e-dummy"


def send_dummy_callback() -> None:
    """Unblock flytekit's one-shot callback server (it waits forever otherwise). A dummy with a
    code and a state that does not match makes flytekit raise instead of hanging."""
    try:
        requests.get(CALLBACK_DUMMY, timeout=5)
    except requests.RequestException:
        pass


class LoginWalkerBrowser:
    """Stands in for `webbrowser.open_new_tab`: returns True at once and walks the real login pages
    in a thread with a requests.Session, then delivers the callback to flytekit's listener."""

    def __init__(self, server, user: LocalUser):
        self.server = server
        self.user = user
        self.runs = 0
        self.walks: List[Walk] = []
        self.errors: List[BaseException] = []
        self.threads: List[threading.Thread] = []

    def open_new_tab(self, url: str, *args, **kwargs) -> bool:
        self.runs += 1
        t = threading.Thread(target=self._walk, args=(url,), daemon=True, name=f"login-walker-{self.runs}")
        self.threads.append(t)
        t.start()
        return True

    def _walk(self, url: str) -> None:
        try:
            sess = requests.Session()
            walk = walk_authorize(self.server, sess, url, self.user)
            self.walks.append(walk)
            final = walk.final_url or ""
            q = query_of(final)
            if not final.startswith(FLYTEKIT_REDIRECT_URI) or "code" not in q or "state" not in q:
                raise WalkError(f"authorize did not redirect to the callback with code+state: {final}\n{walk.trace()}")
            r = requests.get(final, timeout=HTTP_TIMEOUT_S)
            if r.status_code != 200:
                raise WalkError(f"flytekit callback answered {r.status_code}")
        except BaseException as e:  # noqa: BLE001 - anything: never leave flytekit hanging
            self.errors.append(e)
            send_dummy_callback()

    def join(self, timeout: float = 20) -> None:
        for t in self.threads:
            t.join(timeout)


def pretty(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
