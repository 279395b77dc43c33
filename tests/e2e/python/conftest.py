"""Fixtures that run the real flyteauth binary for the end-to-end tests.

Every test module gets its own server process on a free 127.0.0.1 port, with its own
temporary directory (config, secrets, SQLite file).  The binary comes from
$FLYTEAUTH_BIN (default <repo>/target/debug/flyteauth).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import requests

# flytekit caches tokens in the OS keyring; there is none on a headless machine.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
# Nothing between the tests and loopback.
for _k in ("NO_PROXY", "no_proxy"):
    _v = os.environ.get(_k, "")
    if "127.0.0.1" not in _v:
        os.environ[_k] = "127.0.0.1,localhost" + ("," + _v if _v else "")

sys.path.insert(0, str(Path(__file__).parent))

REPO_DIR = Path(__file__).resolve().parents[3]
FLYTEAUTH_BIN = os.environ.get("FLYTEAUTH_BIN", str(REPO_DIR / "target" / "debug" / "flyteauth"))

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


@dataclass
class FlyteAuthServer:
    """One flyteauth process (restartable) on a fixed port and directory."""

    tmp_dir: Path
    port: int
    tls: Optional[TlsFiles] = None
    # Extra keys under `auth:` (merged after authorizedUris), e.g. userAuth / appAuth / clockSkew.
    auth_extra: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    starts: int = 0

    # --- derived locations -------------------------------------------------
    @property
    def secure(self) -> bool:
        return self.tls is not None

    @property
    def host(self) -> str:
        # The TLS leaf is issued for "localhost"; plain mode uses the literal address.
        return "localhost" if self.secure else "127.0.0.1"

    @property
    def url(self) -> str:
        """The public URL (authorizedUris[0]); also the token issuer and audience."""
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """host:port for gRPC clients."""
        return f"{self.host}:{self.port}"

    @property
    def secrets_dir(self) -> Path:
        return self.tmp_dir / "secrets"

    @property
    def config_file(self) -> Path:
        return self.tmp_dir / "config.yaml"

    @property
    def db_file(self) -> Path:
        return self.tmp_dir / "flyteauth.db"

    @property
    def log_file(self) -> Path:
        return self.tmp_dir / f"flyteauth.{self.starts}.log"

    @property
    def signing_key_file(self) -> Path:
        return self.secrets_dir / "token_rsa_key.pem"

    @property
    def verify(self):
        """`verify=` argument for requests."""
        return str(self.tls.ca_cert) if self.tls else True

    # --- config --------------------------------------------------------------
    def write_config(self) -> None:
        security = "{ secure: false, useAuth: true, insecureCookieHeader: true }"
        if self.tls:
            security = (
                "\n    secure: true\n    useAuth: true\n    insecureCookieHeader: true\n"
                f"    ssl:\n      certificateFile: {self.tls.cert}\n      keyFile: {self.tls.key}"
            )
        self.config_file.write_text(
            f"""\
server:
  httpPort: {self.port}
  grpc: {{ port: 0 }}
  security: {security}
secrets:
  secrets-prefix: {self.secrets_dir}
database:
  sqlite: {{ file: {self.db_file} }}
auth:
  authorizedUris: ["{self.url}"]
{self._auth_extra_yaml()}admin:
  domains:
    - {{id: development, name: development}}
    - {{id: staging, name: staging}}
    - {{id: production, name: production}}
"""
        )

    def _auth_extra_yaml(self) -> str:
        if not self.auth_extra:
            return ""
        import yaml

        text = yaml.safe_dump(self.auth_extra, sort_keys=False, default_flow_style=False)
        return "".join("  " + line + "\n" for line in text.splitlines())

    # --- process -------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None, "already running"
        if not os.path.exists(FLYTEAUTH_BIN):
            pytest.fail(f"flyteauth binary not found at {FLYTEAUTH_BIN} (set FLYTEAUTH_BIN)", pytrace=False)
        self.starts += 1
        if not self.config_file.exists():
            self.write_config()
        log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            [FLYTEAUTH_BIN, "serve", "--config", str(self.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.tmp_dir),
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_err = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                out = self.log_tail()
                self.proc = None
                pytest.fail(f"flyteauth exited with code {rc} during start-up:\n{out}", pytrace=False)
            try:
                r = requests.get(f"{self.url}/healthcheck", timeout=1, verify=self.verify)
                if r.status_code == 200:
                    return
                last_err = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last_err = repr(e)
            time.sleep(0.1)
        out = self.log_tail()
        self.stop()
        pytest.fail(
            f"flyteauth did not answer 200 on {self.url}/healthcheck within {STARTUP_TIMEOUT_S}s "
            f"(last: {last_err}):\n{out}",
            pytrace=False,
        )

    def stop(self) -> Optional[int]:
        """SIGTERM (graceful), then SIGKILL after STOP_TIMEOUT_S. Returns the exit code."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=STOP_TIMEOUT_S)
                return None
        return p.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, max_chars: int = 8000) -> str:
        chunks = []
        for i in range(1, self.starts + 1):
            f = self.tmp_dir / f"flyteauth.{i}.log"
            if f.exists():
                chunks.append(f"--- start #{i} ---\n" + f.read_text(errors="replace"))
        text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(chunks))  # drop ANSI colours
        return text[-max_chars:]


def _make_server(tmp_path_factory, name: str, tls_factory=None):
    tmp = tmp_path_factory.mktemp(name)
    srv = FlyteAuthServer(tmp_dir=tmp, port=free_port())
    if tls_factory is not None:
        srv.tls = tls_factory(tmp)
    srv.start()
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """A plain-HTTP (h2c + HTTP/1.1) flyteauth on a fresh tmp dir, one per test module."""
    srv = _make_server(tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, request):
    """A TLS flyteauth (gRPC over TLS with ALPN h2, and HTTPS) with a test-made CA."""
    from helpers import make_tls_files

    srv = _make_server(
        tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1] + "_tls", tls_factory=make_tls_files
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def as_server(tmp_path_factory, request):
    """A flyteauth with local users (oauth.ALICE, oauth.BOB) and the built-in AS, one per module.
    A module can set AS_AUTH_EXTRA (a dict, see oauth.auth_extra) to change the `auth:` keys."""
    import oauth

    extra = getattr(request.module, "AS_AUTH_EXTRA", None)
    if extra is None:
        extra = oauth.auth_extra()
    tmp = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_as")
    srv = FlyteAuthServer(tmp_dir=tmp, port=free_port(), auth_extra=dict(extra))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path_factory, request):
    """Servers owned by one test: factory(prepare=None, tls=False, auth_extra=None) -> started server.
    `prepare(srv)` runs before the first start (write secrets, edit the config, ...)."""
    made = []

    def factory(prepare=None, tls=False, auth_extra=None):
        tmp = tmp_path_factory.mktemp(request.node.name[:40].replace("[", "_").replace("]", "_"))
        srv = FlyteAuthServer(tmp_dir=tmp, port=free_port(), auth_extra=dict(auth_extra or {}))
        if tls:
            from helpers import make_tls_files

            srv.tls = make_tls_files(tmp)
        made.append(srv)
        if prepare is not None:
            prepare(srv)
        srv.start()
        return srv

    factory.servers = made
    yield factory
    for srv in made:
        srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's output to every failing test that used a server."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = getattr(item, "funcargs", {}) or {}
        for name, srv in funcargs.items():
            if isinstance(srv, FlyteAuthServer):
                report.sections.append((f"flyteauth output ({name})", srv.log_tail()))
        factory = funcargs.get("server_factory")
        for i, srv in enumerate(getattr(factory, "servers", []) or []):
            report.sections.append((f"flyteauth output (server_factory #{i})", srv.log_tail()))
