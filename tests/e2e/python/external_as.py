"""oidc-provider@9 (`browser/external_as.mjs`) as flyteauth's external authorization server:
process control, its test-only admin port (JWKS request counter, key rotation), token requests,
the devInteractions login + consent walk, flytekit helpers, and the `auth:` block for
`authServerType: External`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest
import requests

from oauth import FLYTEKIT_REDIRECT_URI, HTTP_TIMEOUT_S, WalkError, parse_forms, query_of, send_dummy_callback

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
SCRIPT = BROWSER_DIR / "external_as.mjs"
START_TIMEOUT_S = 20
CALLBACK_PORT = 53593
EXTRA_AUDIENCE = "https://flyte.example/api"


@dataclass
class ExternalAS:
    proc: subprocess.Popen
    issuer: str
    admin: str
    log_file: Path
    propeller_secret: str
    resource: str

    # --- admin hooks (test-only port of the script) --------------------------
    def stats(self) -> dict:
        return requests.get(f"{self.admin}/stats", timeout=HTTP_TIMEOUT_S).json()

    def reset_stats(self) -> None:
        requests.post(f"{self.admin}/reset", timeout=HTTP_TIMEOUT_S).raise_for_status()

    def rotate(self) -> str:
        r = requests.post(f"{self.admin}/rotate", timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        return r.json()["kid"]

    def private_keys(self) -> list:
        return requests.get(f"{self.admin}/keys", timeout=HTTP_TIMEOUT_S).json()["keys"]

    # --- the AS itself ---------------------------------------------------------
    def metadata(self) -> dict:
        r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        return r.json()

    def client_credentials(self, scope: Optional[str] = "all", resource: Optional[str] = None) -> requests.Response:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        return requests.post(
            f"{self.issuer}/token", data=data, auth=("flytepropeller", self.propeller_secret), timeout=HTTP_TIMEOUT_S
        )

    def access_token(self, scope: Optional[str] = "all", resource: Optional[str] = None) -> str:
        r = self.client_credentials(scope, resource)
        assert r.status_code == 200, (r.status_code, r.text[:500], self.log_tail())
        return r.json()["access_token"]

    def log_tail(self, n: int = 6000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_external_as(
    tmp_dir: Path,
    resource: str,
    *,
    keys: Optional[list] = None,
    no_oauth_metadata: bool = False,
    port: Optional[int] = None,
    name: str = "as",
) -> ExternalAS:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: the external-AS tests need Node.js >= 20 (and npm ci in tests/e2e/browser)", pytrace=False)
    if not (BROWSER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"oidc-provider is not installed in {BROWSER_DIR}: run `npm ci` there (run.sh does)", pytrace=False)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    secret = "prop-" + secrets.token_urlsafe(18)
    opts = {"resource": resource, "propellerSecret": secret}
    if keys:
        opts["keys"] = keys
    if no_oauth_metadata:
        opts["noOAuthMetadata"] = True
    if port is not None:
        opts["port"] = port
    log_file = tmp_dir / f"{name}.{time.monotonic_ns()}.log"
    log = open(log_file, "wb")
    proc = subprocess.Popen(
        [node, str(SCRIPT), json.dumps(opts)],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd=str(BROWSER_DIR),
    )
    log.close()
    box: List[bytes] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(START_TIMEOUT_S)
    if not box or not box[0].strip():
        proc.kill()
        proc.wait(timeout=5)
        pytest.fail(f"external_as.mjs did not start within {START_TIMEOUT_S}s:\n{log_file.read_text(errors='replace')}", pytrace=False)
    line = json.loads(box[0])
    return ExternalAS(proc=proc, issuer=line["issuer"], admin=line["admin"], log_file=log_file,
                      propeller_secret=secret, resource=resource)


def external_auth_extra(
    server_url: str,
    as_issuer: str,
    *,
    metadata_url: Optional[str] = None,
    jwks_refresh_interval: Optional[str] = None,
    allowed_audience=(EXTRA_AUDIENCE,),
) -> dict:
    ext = {"baseUrl": as_issuer}
    if metadata_url is not None:
        ext["metadataUrl"] = metadata_url
    if allowed_audience:
        ext["allowedAudience"] = list(allowed_audience)
    if jwks_refresh_interval is not None:
        ext["jwksRefreshInterval"] = jwks_refresh_interval
    return {
        "appAuth": {
            "authServerType": "External",
            "externalAuthServer": ext,
            "thirdPartyConfig": {
                "flyteClient": {
                    "clientId": "flytectl",
                    "redirectUri": FLYTEKIT_REDIRECT_URI,
                    "scopes": ["all", "offline"],
                    "audience": server_url,
                }
            },
        }
    }


def wait_for_metadata(server, timeout: float = 20) -> dict:
    """Polls flyteauth's /.well-known/oauth-authorization-server until the AS's document is there."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = requests.get(f"{server.url}/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT_S)
        if r.status_code == 200:
            return r.json()
        last = (r.status_code, r.text[:300])
        time.sleep(0.2)
    raise AssertionError(f"flyteauth never served the external metadata within {timeout}s: {last}")


# --------------------------------------------------------------------------- devInteractions walk


def walk_as(issuer: str, sess: requests.Session, url: str, login: str, max_hops: int = 16):
    """Follows oidc-provider's pages like a browser: the login form (any login), the consent form,
    the device user-code forms. Returns (final_url_off_the_AS or None, last_response, hops)."""
    hops = []
    current, method, data = url, "GET", None
    for _ in range(max_hops):
        if method == "GET":
            r = sess.get(current, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        else:
            r = sess.post(current, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        hops.append(f"{method} {current} -> {r.status_code}")
        if r.status_code in (301, 302, 303, 307, 308):
            nxt = urllib.parse.urljoin(current, r.headers["Location"])
            if not nxt.startswith(issuer + "/"):
                return nxt, r, hops
            current, method, data = nxt, "GET", None
            continue
        if r.status_code == 200 and "text/html" in r.headers.get("Content-Type", ""):
            forms = [f for f in parse_forms(r.text) if f.method == "post"]
            if not forms:
                return None, r, hops  # a final page (e.g. the device flow's success page)
            form = forms[0]
            fields = dict(form.inputs)
            if "login" in form.inputs:
                fields.update(login=login, password="any")
            current = urllib.parse.urljoin(current, form.action or current)
            method, data = "POST", fields
            continue
        raise WalkError(f"unexpected {r.status_code} from the AS\n" + "\n".join(hops) + "\n" + r.text[:1000])
    raise WalkError("too many hops\n" + "\n".join(hops))


class ASLoginBrowser:
    """`webbrowser.open_new_tab` for flytekit's Pkce against the external AS: walks oidc-provider's
    devInteractions in a thread, delivers the callback, or a dummy callback on any failure."""

    def __init__(self, issuer: str, login: str):
        self.issuer = issuer
        self.login = login
        self.runs = 0
        self.errors: List[BaseException] = []
        self.urls: List[str] = []
        self.threads: List[threading.Thread] = []

    def open_new_tab(self, url: str, *args, **kwargs) -> bool:
        self.runs += 1
        self.urls.append(url)
        t = threading.Thread(target=self._walk, args=(url,), daemon=True)
        self.threads.append(t)
        t.start()
        return True

    def _walk(self, url: str) -> None:
        try:
            final, _, hops = walk_as(self.issuer, requests.Session(), url, self.login)
            q = query_of(final or "")
            if not (final or "").startswith(FLYTEKIT_REDIRECT_URI) or "code" not in q:
                raise WalkError(f"no code at the callback: {final}\n" + "\n".join(hops))
            r = requests.get(final, timeout=HTTP_TIMEOUT_S)
            if r.status_code != 200:
                raise WalkError(f"flytekit's callback answered {r.status_code}")
        except BaseException as e:  # noqa: BLE001 - never leave flytekit hanging
            self.errors.append(e)
            send_dummy_callback()

    def join(self, timeout: float = 30) -> None:
        for t in self.threads:
            t.join(timeout)


@pytest.fixture
def pkce_browser(monkeypatch):
    """Installs a browser stand-in for flytekit's Pkce; the callback port must be free; a watchdog
    unblocks flytekit's callback server; flytekit's AuthorizationClient singletons are cleared."""
    from flytekit.clients.auth import auth_client as flytekit_auth_client

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", CALLBACK_PORT))
        except OSError as e:
            pytest.fail(f"flytekit's PKCE callback port {CALLBACK_PORT} is in use: {e}", pytrace=False)
    flytekit_auth_client._SingletonPerEndpoint._instances.clear()
    watchdog = threading.Timer(90, send_dummy_callback)
    watchdog.daemon = True
    watchdog.start()

    def install(browser):
        monkeypatch.setattr(webbrowser, "open_new_tab", browser.open_new_tab)
        return browser

    yield install
    watchdog.cancel()
    flytekit_auth_client._SingletonPerEndpoint._instances.clear()


def flytekit_client(server, auth_mode: str, **kw):
    from flytekit.clients.friendly import SynchronousFlyteClient
    from flytekit.configuration import PlatformConfig

    return SynchronousFlyteClient(
        PlatformConfig(endpoint=server.endpoint, insecure=True, auth_mode=auth_mode, rpc_retries=1, **kw)
    )


def user_info_via(client):
    from flyteidl.service import identity_pb2, identity_pb2_grpc

    from helpers import RPC_TIMEOUT_S

    return identity_pb2_grpc.IdentityServiceStub(client._channel).UserInfo(
        identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_S
    )
