#!/usr/bin/env python3
"""Browser side of the authorization-code phase of make bench (stdlib only).

    authcode.py login   <base> <flyteauth|peer> [username password]
        Walks authorize (PKCE S256) → login → code → token once, like a browser and a CLI.
        flyteauth: the local-users form at /login; peer: bench/peer/server.mjs's
        /interaction/<uid> route. Prints JSON: the session cookie header to reuse
        (`cookie`), the JWT header of the access token (`alg`, `typ`), the response's keys and
        a first refresh token.
    authcode.py refresh <base> <flyteauth|peer> <cookie>
        With an existing session: authorize → code → token; prints a fresh refresh token (the
        start of a refresh chain).

The client, redirect URI, scope and PKCE pair are the ones of bench/authcode.lua (exported by
`params`, below, as shell assignments for bench/run.sh).
"""
import base64
import hashlib
import html
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

REDIRECT = "http://localhost:53593/callback"
# A fixed PKCE pair: any connection may redeem any code (same client, same verifier).
VERIFIER = "bench-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")

PEERS = {
    # kind: authorize path, token path, client id, scope
    "flyteauth": ("/oauth2/authorize", "/oauth2/token", "flytectl", "all offline"),
    "peer": ("/auth", "/token", "bench-public", "all"),
}


def authorize_query(kind):
    _, _, client, scope = PEERS[kind]
    return urllib.parse.urlencode({
        "client_id": client,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "bench-state",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    })


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies by name (every cookie of these two servers is host-only), no auto-redirects."""

    def __init__(self, base, cookie=""):
        self.base = base
        self.cookies = {}
        for part in filter(None, (p.strip() for p in cookie.split(";"))):
            k, _, v = part.partition("=")
            self.cookies[k] = v
        self.opener = urllib.request.build_opener(NoRedirect)

    def request(self, url, data=None):
        url = urllib.parse.urljoin(self.base + "/", url)
        req = urllib.request.Request(url, data=data)
        if self.cookies:
            req.add_header("Cookie", self.header())
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            resp = self.opener.open(req, timeout=10)
        except urllib.error.HTTPError as e:
            resp = e
        for sc in resp.headers.get_all("Set-Cookie") or []:
            k, _, v = sc.split(";", 1)[0].partition("=")
            if re.search(r"(?i)expires=Thu, 01 Jan 1970|max-age=0", sc):
                self.cookies.pop(k.strip(), None)
            else:
                self.cookies[k.strip()] = v
        return resp.status, resp.headers.get("Location"), resp.read().decode("utf-8", "replace")

    def header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def code_from(location):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    if "code" not in q:
        sys.exit(f"authcode: the authorization ended without a code: {location}")
    return q["code"][0]


def walk(b, kind, user=None, password=None):
    """authorize → (login) → redirect to the client; returns the code."""
    url = PEERS[kind][0] + "?" + authorize_query(kind)
    for _ in range(10):
        status, location, body = b.request(url)
        if status in (302, 303) and location:
            if location.startswith(REDIRECT):
                return code_from(location)
            url = location
            continue
        if status == 200 and 'name="csrf_token"' in body and user:
            field = lambda n: html.unescape(re.search(f'name="{n}" value="([^"]*)"', body).group(1))
            form = urllib.parse.urlencode({
                "username": user,
                "password": password,
                "csrf_token": field("csrf_token"),
                "redirect_url": field("redirect_url"),
            }).encode()
            status, location, body = b.request("/login", form)
            if status != 303:
                sys.exit(f"authcode: login answered {status}: {body[:300]}")
            url = location
            continue
        sys.exit(f"authcode: {url} answered {status}: {body[:300]}")
    sys.exit("authcode: too many redirects")


def exchange(b, kind, code):
    _, token_path, client, _ = PEERS[kind]
    form = urllib.parse.urlencode({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": client,
    }).encode()
    status, _, body = b.request(token_path, form)
    if status != 200:
        sys.exit(f"authcode: token endpoint answered {status}: {body[:300]}")
    j = json.loads(body)
    if not j.get("refresh_token"):
        sys.exit(f"authcode: no refresh token in the token response (keys {sorted(j)})")
    return j


def jwt_header(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


def main():
    cmd, base, kind = sys.argv[1:4]
    if cmd == "params":
        _, token_path, client, scope = PEERS[kind]
        for k, v in {
            "AC_AUTHORIZE": PEERS[kind][0] + "?" + authorize_query(kind),
            "AC_TOKEN": token_path,
            "AC_CLIENT": client,
            "AC_REDIRECT": REDIRECT,
            "AC_VERIFIER": VERIFIER,
        }.items():
            print(f"{k}='{v}'")
    elif cmd == "login":
        user, password = (sys.argv[4:6] + [None, None])[:2]
        b = Browser(base)
        j = exchange(b, kind, walk(b, kind, user, password))
        # Only the session cookies go on: the login's one-shot cookies are spent.
        keep = {"flyteauth": ("flyte_session",), "peer": ("_session", "_session.sig")}[kind]
        cookie = "; ".join(f"{k}={v}" for k, v in b.cookies.items() if k in keep)
        if not cookie:
            sys.exit(f"authcode: no session cookie after login (cookies: {sorted(b.cookies)})")
        h = jwt_header(j["access_token"])
        print(json.dumps({
            "cookie": cookie,
            "alg": h.get("alg"),
            "typ": h.get("typ"),
            "keys": sorted(j),
            "scope": j.get("scope"),
            "refresh_token": j["refresh_token"],
        }))
    elif cmd == "refresh":
        b = Browser(base, sys.argv[4])
        print(exchange(b, kind, walk(b, kind))["refresh_token"])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
