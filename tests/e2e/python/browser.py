"""Browser end-to-end helpers: oidc-provider as the IdP, headless Chromium through
playwright-core (tests/e2e/browser/browser.mjs), flyteauth configured for the console, and
raw gRPC-web calls with `requests` for the negatives.

Node scripts and their packages live in tests/e2e/browser/ (run.sh runs `npm ci` there).
Chromium is the system's /usr/bin/chromium (`apt-get install -y chromium`); never downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import requests
import yaml

from conftest import FlyteAuthServer, free_port

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
IDP_START_TIMEOUT_S = 20.0
BROWSER_RUN_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10

GRPC_WEB = "application/grpc-web+proto"
USER_INFO = "/flyteidl.service.IdentityService/UserInfo"
LIST_PROJECTS = "/flyteidl.service.AdminService/ListProjects"


def require_node_and_chromium() -> str:
    """The node binary; fails (never skips) with a clear message when a peer is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the browser e2e tests need Node.js >= 20", pytrace=False)
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            f"{BROWSER_DIR}/node_modules is missing: run `npm ci` there (tests/e2e/run.sh does it)",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(CI does; set CHROMIUM_PATH for another location)",
            pytrace=False,
        )
    return node


# --------------------------------------------------------------------------- the IdP


@dataclass
class Idp:
    """oidc-provider (tests/e2e/browser/idp.mjs) in a subprocess."""

    issuer: str
    client_id: str
    client_secret: str
    proc: subprocess.Popen = field(repr=False)
    log_file: Path = field(repr=False)

    @classmethod
    def start(cls, tmp_dir: Path, redirect_uris: List[str], client_id: str = "flyteauth") -> "Idp":
        node = require_node_and_chromium()
        client_secret = secrets.token_urlsafe(32)
        log_file = tmp_dir / "idp.log"
        arg = json.dumps({"clientId": client_id, "clientSecret": client_secret, "redirectUris": redirect_uris})
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [node, str(BROWSER_DIR / "idp.mjs"), arg],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=str(BROWSER_DIR),
            )
        deadline = time.monotonic() + IDP_START_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
            elif proc.poll() is not None:
                break
        try:
            issuer = json.loads(line.decode())["issuer"]
        except (ValueError, KeyError):
            proc.kill()
            proc.wait(timeout=5)
            pytest.fail(
                f"oidc-provider did not start within {IDP_START_TIMEOUT_S}s (stdout {line!r}):\n"
                + log_file.read_text(errors="replace")[-4000:],
                pytrace=False,
            )
        return cls(issuer=issuer, client_id=client_id, client_secret=client_secret, proc=proc, log_file=log_file)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def log_tail(self, max_chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-max_chars:] if self.log_file.exists() else ""


# --------------------------------------------------------------------------- flyteauth for the console


class ConsoleServer(FlyteAuthServer):
    """A flyteauth whose config also lists its own origin in server.security.allowedOrigins."""

    def write_config(self) -> None:
        super().write_config()
        cfg = yaml.safe_load(self.config_file.read_text())
        cfg["server"]["security"]["allowedOrigins"] = [self.url]
        self.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


def console_server(tmp_dir: Path, auth_extra: dict, port: Optional[int] = None, prepare=None) -> ConsoleServer:
    srv = ConsoleServer(tmp_dir=tmp_dir, port=port or free_port(), auth_extra=dict(auth_extra))
    if prepare is not None:
        prepare(srv)
    srv.start()
    return srv


def openid_auth_extra(idp: Idp) -> dict:
    return {
        "userAuth": {
            "openId": {
                "clientId": idp.client_id,
                "clientSecretName": "oidc_client_secret",
                "baseUrl": idp.issuer,
                "scopes": ["openid", "profile", "email", "offline_access"],
            }
        }
    }


def write_oidc_secret(srv: FlyteAuthServer, idp: Idp) -> None:
    srv.secrets_dir.mkdir(parents=True, exist_ok=True)
    path = srv.secrets_dir / "oidc_client_secret"
    path.write_text(idp.client_secret)
    path.chmod(0o600)


# --------------------------------------------------------------------------- Chromium


class BrowserRunError(AssertionError):
    pass


def run_browser(
    srv: FlyteAuthServer,
    steps: List[dict],
    *,
    storage_in: Optional[Path] = None,
    storage_out: Optional[Path] = None,
    timeout_s: float = BROWSER_RUN_TIMEOUT_S,
    idp: Optional[Idp] = None,
) -> List:
    """Runs browser.mjs with these steps in one fresh Chromium; returns one result per step.
    Raises BrowserRunError with the page, its console and the peers' logs on failure."""
    __tracebackhide__ = True
    node = require_node_and_chromium()
    arg = {"base": srv.url, "steps": steps, "timeoutMs": int(timeout_s * 1000)}
    if storage_in is not None:
        arg["storageIn"] = str(storage_in)
    if storage_out is not None:
        arg["storageOut"] = str(storage_out)
    try:
        p = subprocess.run(
            [node, str(BROWSER_DIR / "browser.mjs"), json.dumps(arg)],
            capture_output=True,
            timeout=timeout_s + 20,  # the script's own watchdog fires first
            cwd=str(BROWSER_DIR),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise BrowserRunError(f"browser.mjs did not finish within {timeout_s + 20}s: {e.stderr!r}") from None
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BrowserRunError(
            f"browser.mjs exited {p.returncode} without a JSON result:\nstdout: {p.stdout[-2000:]!r}\n"
            f"stderr: {p.stderr.decode(errors='replace')[-3000:]}"
        ) from None
    if not out.get("ok"):
        step = out.get("step")
        what = steps[step] if isinstance(step, int) and step < len(steps) else None
        detail = [
            f"browser step {step} {json.dumps(what)} failed: {out.get('error')}",
            f"page url: {out.get('url')}",
            f"page text: {out.get('text')}",
            "browser console:\n  " + "\n  ".join(out.get("console") or []),
            f"results so far: {json.dumps(out.get('results'))[:3000]}",
        ]
        if idp is not None:
            detail.append("oidc-provider log:\n" + idp.log_tail())
        raise BrowserRunError("\n".join(detail))
    return out["results"]


def assert_page_clean(diagnostics: List[str]) -> None:
    """No script error and no Content-Security-Policy violation in the browser's log."""
    bad = [d for d in diagnostics if d.startswith("pageerror") or "Content Security Policy" in d]
    assert not bad, "the console page logged:\n  " + "\n  ".join(bad)


# --------------------------------------------------------------------------- gRPC-web with requests


def grpc_web_frame(message: bytes = b"") -> bytes:
    """One gRPC-web data frame (flag 0, big-endian length) around an encoded message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass
class GrpcWebResult:
    http_status: int
    grpc_status: Optional[int]
    grpc_message: str
    headers: Dict[str, str]
    messages: List[bytes]


def parse_grpc_web(r: requests.Response) -> GrpcWebResult:
    body = r.content
    messages: List[bytes] = []
    trailers: Dict[str, str] = {}
    i = 0
    while i + 5 <= len(body):
        flag, length = body[i], int.from_bytes(body[i + 1 : i + 5], "big")
        chunk = body[i + 5 : i + 5 + length]
        if flag & 0x80:
            for line in chunk.decode(errors="replace").split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            messages.append(chunk)
        i += 5 + length
    status = r.headers.get("grpc-status", trailers.get("grpc-status"))
    message = r.headers.get("grpc-message", trailers.get("grpc-message", ""))
    return GrpcWebResult(
        http_status=r.status_code,
        grpc_status=int(status) if status is not None else None,
        grpc_message=requests.utils.unquote(message),
        headers={k.lower(): v for k, v in r.headers.items()},
        messages=messages,
    )


def grpc_web_call(
    srv: FlyteAuthServer,
    path: str,
    message: bytes = b"",
    *,
    cookies: Optional[Dict[str, str]] = None,
    csrf: Optional[str] = None,
    origin: Optional[str] = "same",
) -> GrpcWebResult:
    """A unary gRPC-web call the way a browser makes it. origin "same" sends the server's own
    origin, None sends no Origin header."""
    headers = {"content-type": GRPC_WEB, "x-grpc-web": "1", "accept": GRPC_WEB}
    if origin == "same":
        headers["origin"] = srv.url
    elif origin is not None:
        headers["origin"] = origin
    if csrf is not None:
        headers["x-csrf-token"] = csrf
    if cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    r = requests.post(srv.url + path, data=grpc_web_frame(message), headers=headers, timeout=HTTP_TIMEOUT_S)
    return parse_grpc_web(r)


def session_cookies(browser_cookies: List[dict]) -> Tuple[Dict[str, str], Dict[str, dict]]:
    """(name -> value, name -> full cookie) of flyteauth's cookies from the browser."""
    by_name = {c["name"]: c for c in browser_cookies}
    return {k: v["value"] for k, v in by_name.items()}, by_name
