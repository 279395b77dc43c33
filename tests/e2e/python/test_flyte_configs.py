"""A Flyte operator's existing config loads unchanged (issue 18).

The fixtures under tests/fixtures/flyte-configs/ are written in the shapes the flyte-binary and
flyte-core Helm charts render (a folder of files, other components' sections beside FlyteAdmin's,
the client secret's hash in a file of its own), plus a single-file Azure AD config and an
External-mode (Okta-style) config. Each is given to flyteauth UNCHANGED, followed by one small
file of this test's own (ports, secrets directory, database, the IdP / AS URLs of the local
oidc-provider) — exactly how an operator layers an override over the chart's files. For each:
`check-config` exits 0 and names the skipped sections, `serve` starts, and flytekit
(ClientSecret as flytepropeller) lists projects and reads UserInfo through it.
"""

import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import FLYTEAUTH_BIN, REPO_DIR, free_port
from external_as import flytekit_client, start_external_as, user_info_via, wait_for_metadata
from replicas import PgDatabase

pytestmark = pytest.mark.timeout(120)

FIXTURES = REPO_DIR / "tests" / "fixtures" / "flyte-configs"
# The clear text of the bcrypt hash in the Self-mode fixtures (flyte-binary's
# 014-auth-secrets.yaml, flyte-core's server.yaml): a test fixture, not a deployable secret.
PROPELLER_SECRET = "fixture-propeller-secret-not-for-production"
STARTUP_TIMEOUT_S = 30


class Served:
    """flyteauth serving `--config <fixture> --config <override>`."""

    def __init__(self, tmp: Path, fixture: Path, override: dict, port: int):
        self.tmp = tmp
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.endpoint = f"127.0.0.1:{port}"
        self.override = tmp / "999-test-override.yaml"
        self.override.write_text(yaml.safe_dump(override, sort_keys=False))
        self.args = ["--config", str(fixture), "--config", str(self.override)]
        self.log_file = tmp / "flyteauth.log"
        self.proc = None

    def check_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [FLYTEAUTH_BIN, "check-config", *self.args],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=str(self.tmp),
        )

    def start(self) -> None:
        log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            [FLYTEAUTH_BIN, "serve", *self.args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(self.tmp),
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"flyteauth exited with {self.proc.returncode}:\n{self.log()}", pytrace=False)
            try:
                if requests.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"flyteauth did not start within {STARTUP_TIMEOUT_S}s:\n{self.log()}", pytrace=False)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """oidc-provider standing in for Okta / Keycloak / Azure AD (discovery) and, for the
    External fixture, the authorization server itself. Its resource (token audience) is set per
    server below, so each External test starts its own."""
    as_ = start_external_as(tmp_path_factory.mktemp("idp"), "http://127.0.0.1:1")
    yield as_
    as_.stop()


def _base_override(tmp: Path, port: int, idp_url: str) -> dict:
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    # The IdP client secret the charts mount from a Kubernetes Secret.
    (secrets_dir / "oidc_client_secret").write_text("fixture-oidc-client-secret\n")
    return {
        "server": {"httpPort": port, "grpc": {"port": 0}, "security": {"insecureCookieHeader": True}},
        "secrets": {"secrets-prefix": str(secrets_dir)},
        "auth": {
            "authorizedUris": [f"http://127.0.0.1:{port}"],
            "userAuth": {"openId": {"baseUrl": idp_url}},
        },
    }


def _postgres(override: dict, db: PgDatabase, tmp: Path) -> None:
    pw = tmp / "db-password"
    pw.write_text("unused-with-trust-auth\n")
    override["database"] = {
        "postgres": {"host": db.host, "port": db.port, "dbname": db.name, "username": "postgres",
                     "passwordPath": str(pw)},
    }


def _login_and_call(srv: Served, secret: str) -> None:
    client = flytekit_client(srv, "ClientSecret", client_id="flytepropeller",
                             client_credentials_secret=secret, scopes=["all"])
    projects, _ = client.list_projects_paginated(limit=10)
    assert isinstance(projects, list)
    assert user_info_via(client).subject == "flytepropeller"


def _run_self_mode(tmp: Path, fixture: str, idp, *, pg: bool, expect_skipped, expect_warnings=()):
    port = free_port()
    override = _base_override(tmp, port, idp.issuer)
    db = None
    if pg:
        db = PgDatabase.create("fixture")
        _postgres(override, db, tmp)
    else:
        override["database"] = {"sqlite": {"file": str(tmp / "flyteauth.db")}}
    srv = Served(tmp, FIXTURES / fixture, override, port)
    try:
        p = srv.check_config()
        assert p.returncode == 0, p.stdout + p.stderr
        skipped = [line for line in p.stderr.splitlines() if "skipped the settings of other Flyte components" in line]
        assert len(skipped) == 1, p.stderr
        for name in expect_skipped:
            assert name in skipped[0], skipped[0]
        for w in expect_warnings:
            assert w in p.stderr, p.stderr
        srv.start()
        # Without staticClients (the Azure file), flytepropeller's secret is generated per install.
        generated = tmp / "secrets" / "flytepropeller_client_secret"
        _login_and_call(srv, generated.read_text().strip() if generated.exists() else PROPELLER_SECRET)
        log = srv.log()
        assert "skipped the settings of other Flyte components" in log, log
        for w in expect_warnings:
            assert w in log, log
        assert PROPELLER_SECRET not in log
    finally:
        srv.stop()
        if db:
            db.drop()


def test_flyte_binary_folder_loads_and_flytekit_logs_in(tmp_path, idp):
    _run_self_mode(
        tmp_path, "flyte-binary", idp, pg=True,
        expect_skipped=["admin.endpoint", "catalog-cache", "cluster_resources", "logger", "plugins",
                        "propeller", "storage", "tasks", "webhook", "flyteadmin"],
    )


def test_flyte_core_folder_loads_and_flytekit_logs_in(tmp_path, idp):
    _run_self_mode(
        tmp_path, "flyte-core", idp, pg=True,
        expect_skipped=["admin.clientSecretLocation", "cluster_resources", "event", "logger", "namespace_mapping",
                        "plugins", "propeller", "remoteData", "storage", "task_resources", "tasks", "webhook"],
        expect_warnings=[
            'allowedOrigins contains "*"',
            "server.kube-config is accepted but ignored",
            "database.maxIdleConnections is accepted but ignored",
        ],
    )


def test_azure_single_file_loads_and_flytekit_logs_in(tmp_path, idp):
    _run_self_mode(
        tmp_path, "azure-single/flyteadmin.yaml", idp, pg=False,
        expect_skipped=["logger", "storage"],
        expect_warnings=[
            "server.dataProxy is accepted but ignored",
            "server.grpc.enable-grpc-latency-metrics is accepted but ignored",
            "server.security.auditAccess is accepted but ignored",
            "database.enableForeignKeyConstraintWhenMigrating is accepted but ignored",
        ],
    )


def test_external_okta_folder_loads_and_flytekit_logs_in(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The AS issues tokens for this flyteauth (its resource indicator = the public URL).
    ext_as = start_external_as(tmp_path / "as", url)
    override = _base_override(tmp_path, port, ext_as.issuer)
    override["database"] = {"sqlite": {"file": str(tmp_path / "flyteauth.db")}}
    override["auth"]["appAuth"] = {
        "externalAuthServer": {"baseUrl": ext_as.issuer},
        "thirdPartyConfig": {"flyteClient": {"audience": url}},
    }
    srv = Served(tmp_path, FIXTURES / "external-okta", override, port)
    try:
        p = srv.check_config()
        assert p.returncode == 0, p.stdout + p.stderr
        assert "skipped the settings of other Flyte components: logger, propeller, storage" in p.stderr, p.stderr
        assert 'allowedOrigins contains "*"' in p.stderr, p.stderr
        srv.start()
        wait_for_metadata(srv)
        client = flytekit_client(srv, "ClientSecret", client_id="flytepropeller",
                                 client_credentials_secret=ext_as.propeller_secret, scopes=["all"])
        projects, _ = client.list_projects_paginated(limit=10)
        assert isinstance(projects, list)
        assert user_info_via(client).subject == "flytepropeller"
    finally:
        srv.stop()
        ext_as.stop()


def test_check_config_refuses_what_serve_refuses_for_a_chart_folder(tmp_path, idp):
    """The chart's auth file alone (without 014-auth-secrets.yaml) leaves flytepropeller without
    a secret: check-config says so, with serve's message and exit code."""
    folder = tmp_path / "config.d"
    folder.mkdir()
    for f in (FIXTURES / "flyte-binary").iterdir():
        if f.name != "014-auth-secrets.yaml":
            (folder / f.name).write_text(f.read_text())
    port = free_port()
    override = _base_override(tmp_path, port, idp.issuer)
    override["database"] = {"postgres": {"host": "127.0.0.1", "port": 1}}
    srv = Served(tmp_path, folder, override, port)
    check = srv.check_config()
    serve = subprocess.run([FLYTEAUTH_BIN, "serve", *srv.args], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert check.returncode == 64 and serve.returncode == 64, (check.stderr, serve.stderr)
    last = lambda s: [line for line in s.splitlines() if line.startswith("flyteauth: ")][-1]  # noqa: E731
    assert last(check.stderr) == last(serve.stderr)
    assert "staticClients.flytepropeller" in last(check.stderr)
