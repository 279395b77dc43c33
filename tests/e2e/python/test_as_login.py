"""The local-users login form (`/login`) that the built-in AS sends browsers to.

Real HTTP with a requests.Session cookie jar: form parsing, CSRF, cookies, the redirect
allow-list, and the brute-force limit.
"""

import secrets
import urllib.parse

import bcrypt
import pytest
import requests

from oauth import (
    ALICE,
    BOB,
    FLYTEKIT_REDIRECT_URI,
    HTTP_TIMEOUT_S,
    LocalUser,
    auth_extra,
    authorize_params,
    authorize_url,
    login,
    login_form,
    pkce_pair,
    query_of,
    walk_authorize,
)

pytestmark = pytest.mark.timeout(90)


def _get_login(server, sess, redirect_url=None):
    q = "" if redirect_url is None else "?" + urllib.parse.urlencode({"redirect_url": redirect_url})
    return sess.get(f"{server.url}/login{q}", allow_redirects=False, timeout=HTTP_TIMEOUT_S)


def _set_cookie_headers(r: requests.Response):
    raw = getattr(r.raw, "headers", None)
    if raw is not None and hasattr(raw, "getlist"):
        return raw.getlist("Set-Cookie")
    return [r.headers.get("Set-Cookie", "")]


def _cookie_attrs(set_cookie: str):
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name, value, attrs


def test_login_page_is_a_plain_form_with_csrf(as_server):
    sess = requests.Session()
    r = _get_login(as_server, sess, "/console")
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("text/html"), r.headers
    form = login_form(r.text)
    assert form.method == "post", form
    assert urllib.parse.urljoin(r.url, form.action) == f"{as_server.url}/login", form
    assert form.input_types.get("password") == "password", form
    assert form.inputs.get("csrf_token"), form
    assert form.input_types.get("csrf_token") == "hidden", form
    assert form.inputs.get("redirect_url") == "/console", form
    assert form.input_types.get("redirect_url") == "hidden", form
    assert "flyte_login_csrf" in sess.cookies, _set_cookie_headers(r)


def test_login_success_sets_session_cookie_and_redirects(as_server):
    sess = requests.Session()
    r = login(as_server, sess, ALICE, redirect_url="/console")
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"] in ("/console", f"{as_server.url}/console"), r.headers
    cookies = {(_cookie_attrs(c)[0]): _cookie_attrs(c) for c in _set_cookie_headers(r)}
    assert "flyte_session" in cookies, cookies
    _, value, attrs = cookies["flyte_session"]
    assert value, cookies
    assert "httponly" in attrs, cookies["flyte_session"]
    assert attrs.get("samesite", "").lower() == "lax", cookies["flyte_session"]
    assert attrs.get("path") == "/", cookies["flyte_session"]
    assert "flyte_csrf" in cookies, cookies
    assert "httponly" not in cookies["flyte_csrf"][2], "flyte_csrf must be readable by the page"


def test_session_cookie_authenticates_me(as_server):
    """The session made by the login form is a real one: /me answers for alice (DESIGN §3, §6)."""
    sess = requests.Session()
    assert login(as_server, sess, ALICE).status_code == 303
    headers = {"x-csrf-token": sess.cookies.get("flyte_csrf", ""), "Origin": as_server.url}
    me = sess.get(f"{as_server.url}/me", headers=headers, timeout=HTTP_TIMEOUT_S)
    assert me.status_code == 200, (me.status_code, me.text[:500])
    body = me.json()
    assert body.get("subject") == "alice", body
    assert body.get("email") == ALICE.email, body


def test_login_without_redirect_url_goes_to_console(as_server):
    sess = requests.Session()
    r = login(as_server, sess, BOB)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"] in ("/console", f"{as_server.url}/console"), r.headers


def test_login_absolute_redirect_on_authorized_origin(as_server):
    sess = requests.Session()
    target = f"{as_server.url}/console?x=1"
    r = login(as_server, sess, BOB, redirect_url=target)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"] == target, r.headers


@pytest.mark.parametrize("wrong", ["wrong-password", ""])
def test_login_bad_password_is_401_with_the_form_again(as_server, wrong):
    sess = requests.Session()
    r = _get_login(as_server, sess)
    form = login_form(r.text)
    fields = dict(form.inputs, username=BOB.username, password=wrong)
    r2 = sess.post(f"{as_server.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r2.status_code == 401, (r2.status_code, r2.text[:500])
    assert r2.headers["Content-Type"].startswith("text/html"), r2.headers
    login_form(r2.text)  # the form again
    assert "flyte_session" not in sess.cookies
    assert wrong not in r2.text or not wrong


def test_login_unknown_user_is_401(as_server):
    sess = requests.Session()
    form = login_form(_get_login(as_server, sess).text)
    fields = dict(form.inputs, username="nobody", password="x")
    r = sess.post(f"{as_server.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401, (r.status_code, r.text[:500])
    assert "flyte_session" not in sess.cookies


@pytest.mark.parametrize("case", ["missing", "wrong", "no_cookie"])
def test_login_without_valid_csrf_token_is_403(as_server, case):
    sess = requests.Session()
    form = login_form(_get_login(as_server, sess).text)
    fields = dict(form.inputs, username=BOB.username, password=BOB.password)
    if case == "missing":
        del fields["csrf_token"]
    elif case == "wrong":
        fields["csrf_token"] = secrets.token_urlsafe(32)
    elif case == "no_cookie":
        sess.cookies.clear()
    r = sess.post(f"{as_server.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 403, (case, r.status_code, r.text[:500])
    assert "flyte_session" not in sess.cookies


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "https://evil.example/console",
        "//evil.example/console",
        "http://127.0.0.1.evil.example/console",
        "javascript:alert(1)",
    ],
)
def test_login_refuses_foreign_redirect_url(as_server, target):
    sess = requests.Session()
    r = _get_login(as_server, sess, target)
    assert r.status_code == 400, (target, r.status_code, r.headers, r.text[:500])
    assert "evil.example" not in r.headers.get("Location", "")


def test_login_post_refuses_foreign_redirect_url(as_server):
    """The hidden field is client-controlled: POST must validate it again."""
    sess = requests.Session()
    form = login_form(_get_login(as_server, sess, "/console").text)
    fields = dict(form.inputs, username=BOB.username, password=BOB.password, redirect_url="https://evil.example/x")
    r = sess.post(f"{as_server.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 400 or (
        r.status_code == 303 and not r.headers.get("Location", "").startswith(("https://evil", "//"))
    ), (r.status_code, r.headers, r.text[:500])


def test_authorize_without_session_goes_to_login_and_comes_back(as_server):
    sess = requests.Session()
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge)
    url = authorize_url(as_server, **params)
    r = sess.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    loc = urllib.parse.urljoin(url, r.headers["Location"])
    assert loc.startswith(f"{as_server.url}/login?"), loc
    back = urllib.parse.urljoin(as_server.url + "/", query_of(loc)["redirect_url"])
    # back to the authorize request itself, or to Flyte's /oauth2/authorize_callback with it
    assert back.startswith((f"{as_server.url}/oauth2/authorize?", f"{as_server.url}/oauth2/authorize_callback?")), back
    assert query_of(back) == {k: v for k, v in params.items() if v is not None}, (back, params)

    walk = walk_authorize(as_server, sess, url, ALICE)
    assert walk.final_url.startswith(FLYTEKIT_REDIRECT_URI + "?"), walk.trace()
    q = query_of(walk.final_url)
    assert q["state"] == params["state"], q
    assert q.get("iss") == as_server.url, q
    assert q.get("code"), q
    methods = [(m, u.split("?")[0]) for m, u, _ in walk.hops]
    assert methods == [
        ("GET", f"{as_server.url}/oauth2/authorize"),
        ("GET", f"{as_server.url}/login"),
        ("POST", f"{as_server.url}/login"),
        ("GET", back.split("?")[0]),
    ], walk.trace()


def test_brute_forced_login_is_429_with_retry_after(server_factory):
    victim = LocalUser("carol", "carol-right-password", "Carol", "carol@example.com")
    srv = server_factory(auth_extra=auth_extra(users=(victim, ALICE)))
    sess = requests.Session()

    def attempt(password):
        form = login_form(_get_login(srv, sess).text)
        fields = dict(form.inputs, username=victim.username, password=password)
        return sess.post(f"{srv.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)

    statuses = [attempt(f"wrong-{i}").status_code for i in range(10)]
    assert statuses == [401] * 10, statuses
    r = attempt("still-wrong")
    assert r.status_code == 429, (r.status_code, r.text[:500])
    retry = r.headers.get("Retry-After")
    assert retry and retry.isdigit() and 0 < int(retry) <= 15 * 60, r.headers
    # even the right password is refused while the window lasts
    r = attempt(victim.password)
    assert r.status_code == 429, (r.status_code, r.text[:500])
    assert r.headers.get("Retry-After"), r.headers
    assert "flyte_session" not in sess.cookies
    # spelling the user name differently must not open a fresh counter for the same account
    for variant in ("Carol", "CAROL", " carol ", "carol\t"):
        form = login_form(_get_login(srv, sess).text)
        fields = dict(form.inputs, username=variant, password=victim.password)
        r = sess.post(f"{srv.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        assert r.status_code in (401, 429), (repr(variant), r.status_code, r.headers)
    assert "flyte_session" not in sess.cookies


def test_csrf_token_is_bound_to_its_cookie(as_server):
    a, b = requests.Session(), requests.Session()
    form_a = login_form(_get_login(as_server, a).text)
    login_form(_get_login(as_server, b).text)
    fields = dict(form_a.inputs, username=BOB.username, password=BOB.password)
    r = b.post(f"{as_server.url}/login", data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 403, (r.status_code, r.text[:300])


def test_login_issues_a_fresh_session_id(as_server):
    """Session fixation: a session id planted before login is never adopted."""
    sess = requests.Session()
    planted = secrets.token_urlsafe(32)
    sess.cookies.set("flyte_session", planted, domain="127.0.0.1", path="/")
    r = login(as_server, sess, BOB)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    new = [_cookie_attrs(c) for c in _set_cookie_headers(r) if c.startswith("flyte_session=")]
    assert new and new[0][1] and new[0][1] != planted, new


def _cli_hash_password(password: str) -> str:
    import subprocess

    from conftest import FLYTEAUTH_BIN

    p = subprocess.run([FLYTEAUTH_BIN, "hash-password"], input=password, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_password_hash_formats(server_factory):
    import argon2

    users = {
        "bcrypt_2b": bcrypt.hashpw(b"pw-2b", bcrypt.gensalt(rounds=4)).decode(),
        "bcrypt_2y": "$2y$" + bcrypt.hashpw(b"pw-2y", bcrypt.gensalt(rounds=4)).decode()[4:],
        "argon2id_python": argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("pw-argon-py"),
        "argon2id_cli": _cli_hash_password("pw-argon-cli"),
    }
    passwords = {"bcrypt_2b": "pw-2b", "bcrypt_2y": "pw-2y", "argon2id_python": "pw-argon-py", "argon2id_cli": "pw-argon-cli"}
    assert users["argon2id_cli"].startswith("$argon2id$"), users["argon2id_cli"]
    extra = {
        "clockSkew": "0s",
        "userAuth": {
            "localUsers": [
                {"username": u, "passwordHash": h, "name": u, "email": f"{u}@example.com", "groups": []}
                for u, h in users.items()
            ]
        },
    }
    srv = server_factory(auth_extra=extra)
    results = {}
    for u, pw in passwords.items():
        good = login(srv, requests.Session(), LocalUser(u, pw, u, ""))
        bad = login(srv, requests.Session(), LocalUser(u, pw + "x", u, ""))
        results[u] = (good.status_code, bad.status_code)
    assert results == {u: (303, 401) for u in users}, results


def test_tls_cookies_are_secure_and_the_flow_works(server_factory):
    def prepare(srv):
        srv.write_config()
        text = srv.config_file.read_text()
        assert "insecureCookieHeader: true" in text
        srv.config_file.write_text(text.replace("insecureCookieHeader: true", "insecureCookieHeader: false"))

    srv = server_factory(prepare=prepare, tls=True, auth_extra=auth_extra())
    sess = requests.Session()
    sess.verify = srv.verify
    r = login(srv, sess, ALICE, redirect_url="/console")
    assert r.status_code == 303, (r.status_code, r.text[:300])
    cookies = {(_cookie_attrs(c)[0]): _cookie_attrs(c)[2] for c in _set_cookie_headers(r)}
    # Over TLS the names carry the __Host- prefix (DESIGN §14): Secure, Path=/, no Domain.
    for name in ("__Host-flyte_session", "__Host-flyte_csrf"):
        assert "secure" in cookies.get(name, {}), (name, cookies)
        assert cookies[name].get("path") == "/" and "domain" not in cookies[name], (name, cookies)
    assert "flyte_session" not in cookies and "flyte_csrf" not in cookies, cookies
    _, challenge = pkce_pair()
    params = authorize_params(challenge=challenge)
    walk = walk_authorize(srv, sess, authorize_url(srv, **params), ALICE)
    q = query_of(walk.final_url)
    assert q.get("code") and q.get("iss") == srv.url, (walk.final_url, walk.trace())


@pytest.mark.parametrize("target", ["https://evil.example/console", "//evil.example/console"])
def test_logged_in_login_still_refuses_foreign_redirect_url(as_server, target):
    """A logged-in browser at /login may be sent straight on: only to an allowed target."""
    sess = requests.Session()
    assert login(as_server, sess, BOB).status_code == 303
    r = _get_login(as_server, sess, target)
    assert r.status_code == 400, (target, r.status_code, r.headers, r.text[:300])
    assert "evil.example" not in r.headers.get("Location", "")


@pytest.mark.parametrize("target", ["https://evil.example/console", "//evil.example/console"])
def test_logout_refuses_foreign_redirect_url(as_server, target):
    sess = requests.Session()
    assert login(as_server, sess, BOB).status_code == 303
    r = sess.get(f"{as_server.url}/logout", params={"redirect_url": target}, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 400, (target, r.status_code, r.headers, r.text[:300])
    assert "evil.example" not in r.headers.get("Location", "")


def test_logout_follows_an_allowed_redirect_url(as_server):
    sess = requests.Session()
    assert login(as_server, sess, BOB).status_code == 303
    r = sess.get(f"{as_server.url}/logout", params={"redirect_url": "/console"}, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    assert r.status_code in (302, 303, 307), (r.status_code, r.text[:300])
    assert r.headers["Location"] in ("/console", f"{as_server.url}/console"), r.headers
