"""The Connect protocol with real Connect clients.

- Flyte 2's SDK (`flyte` 2.12, in its own venv, run as a subprocess: flyte2_probe.py) over TLS
  with a test CA: discovery through its generated `flyteidl2.auth.auth_service_connect` client,
  then its auth flows (ClientSecret as flytepropeller; DeviceFlow and PKCE as local users) and an
  authenticated `flyteidl2.auth.IdentityService/UserInfo` over Connect.
- @connectrpc/connect-node (createConnectTransport, HTTP/1.1 and HTTP/2, binary and JSON) with a
  descriptor set of the published flyteidl protos: own services, refusals, and streamed
  (chunked) refused requests that must still get their Connect error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

import oauth
from helpers import make_tls_files, mint_token
from oauth import ALICE, BOB, FLYTEKIT_REDIRECT_URI, query_of, send_dummy_callback, walk_authorize

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
PROBE = HERE / "flyte2_probe.py"
NODE_DIR = HERE.parent / "node"


@pytest.fixture(scope="module")
def tls_as(tmp_path_factory):
    """flyteauth over TLS (test CA) with local users and the built-in AS."""
    from conftest import FlyteAuthServer, free_port

    tmp = tmp_path_factory.mktemp("connect_flyte2")
    srv = FlyteAuthServer(tmp_dir=tmp, port=free_port(), auth_extra=oauth.auth_extra())
    srv.tls = make_tls_files(tmp)
    srv.start()
    yield srv
    srv.stop()


def flyte2_python() -> str:
    py = os.environ.get("E2E_FLYTE2_PYTHON")
    if not py or not os.path.exists(py):
        pytest.fail("E2E_FLYTE2_PYTHON is not set: run the suite through tests/e2e/run.sh", pytrace=False)
    return py


def run_probe(server, *args: str, on_line=None, errors=None, timeout: float = 90) -> dict:
    """Runs flyte2_probe.py in the SDK's venv; `on_line(kind, value)` sees BROWSER/VERIFY lines.
    `errors`: a list the user-side threads append to; the probe is stopped at the first one."""
    ca = str(server.tls.ca_cert)
    env = dict(os.environ)
    # flyte 2.12.1 gives ca_cert_file_path to its Connect transport only; its token and device
    # requests use the default trust store, so point that at the CA (as a user with a private CA).
    env["SSL_CERT_FILE"] = ca
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env.setdefault("HOME", str(server.tmp_dir))
    proc = subprocess.Popen(
        [flyte2_python(), str(PROBE), args[0], server.url, ca, *args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(server.tmp_dir),
    )
    lines: list[str] = []
    err: list[str] = []

    def pump_out():
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            kind, _, value = line.partition(" ")
            if kind in ("BROWSER", "VERIFY") and on_line is not None:
                on_line(kind, value)

    def pump_err():
        for line in proc.stderr:
            err.append(line)

    threads = [threading.Thread(target=pump_out, daemon=True), threading.Thread(target=pump_err, daemon=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not errors:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        why = f"the user side failed: {errors!r}" if errors else "flyte2_probe timed out"
        pytest.fail(f"{why}\nstdout:\n{chr(10).join(lines)}\nstderr:\n{''.join(err)[-4000:]}")
    rc = proc.returncode
    for t in threads:
        t.join(5)
    results = [line[len("RESULT "):] for line in lines if line.startswith("RESULT ")]
    assert rc == 0 and results, f"flyte2_probe exited {rc}\nstdout:\n{chr(10).join(lines)}\nstderr:\n{''.join(err)[-4000:]}"
    return json.loads(results[-1])


def test_flyte2_sdk_discovers_the_metadata_over_connect(tls_as):
    r = run_probe(tls_as, "metadata")
    cfg = r["sdk_config"]
    assert cfg["token_endpoint"] == tls_as.url + "/oauth2/token", cfg
    assert cfg["authorization_endpoint"] == tls_as.url + "/oauth2/authorize", cfg
    assert cfg["device_authorization_endpoint"] == tls_as.url + "/oauth2/device_authorization", cfg
    assert cfg["client_id"] == "flytectl" and cfg["redirect_uri"] == FLYTEKIT_REDIRECT_URI, cfg
    assert cfg["header_key"] == "flyte-authorization", cfg
    assert "all" in cfg["scopes"], cfg
    # The same client with Connect's JSON codec.
    assert r["json_metadata"]["issuer"] == tls_as.url, r
    assert r["json_metadata"]["token_endpoint"] == tls_as.url + "/oauth2/token", r
    # A protected RPC without credentials: UNAUTHENTICATED, with the gRPC reason.
    assert r["anonymous_user_info"]["code"] == "UNAUTHENTICATED", r
    assert r["anonymous_user_info"]["message"] == "missing access token", r


def test_flyte2_sdk_client_secret_as_flytepropeller(tls_as):
    secret_file = tls_as.secrets_dir / "flytepropeller_client_secret"
    r = run_probe(tls_as, "login", "ClientSecret", "flytepropeller", str(secret_file))
    assert r["subject"] == "flytepropeller" and r["again"] == "flytepropeller", r


def test_flyte2_sdk_device_flow_as_a_local_user(tls_as):
    from test_device_flow import decide

    seen = {"decisions": [], "errors": []}

    def approve(kind, url):
        if kind != "VERIFY":
            return

        def walk():
            try:
                sess = requests.Session()
                # decide() passes no verify=: the session's CA applies (and no CA bundle from the
                # environment, which requests would prefer to it).
                sess.trust_env = False
                sess.verify = str(tls_as.tls.ca_cert)
                r = decide(tls_as, sess, url, BOB)
                seen["decisions"].append(r.status_code)
                assert r.status_code == 200 and "Device connected" in r.text, (r.status_code, r.text[:500])
            except BaseException as e:  # noqa: BLE001
                seen["errors"].append(e)

        threading.Thread(target=walk, daemon=True).start()

    r = run_probe(tls_as, "login", "DeviceFlow", on_line=approve, errors=seen["errors"])
    assert not seen["errors"], seen["errors"]
    assert seen["decisions"] == [200], seen
    assert r["subject"] == BOB.username and r["email"] == BOB.email, r
    assert r["again"] == BOB.username, r


def test_flyte2_sdk_pkce_as_a_local_user(tls_as):
    seen = {"walks": [], "errors": []}

    def browse(kind, url):
        if kind != "BROWSER":
            return

        def walk():
            try:
                assert url.startswith(tls_as.url + "/oauth2/authorize?"), url
                w = walk_authorize(tls_as, requests.Session(), url, ALICE)
                seen["walks"].append(w)
                final = w.final_url or ""
                q = query_of(final)
                assert final.startswith(FLYTEKIT_REDIRECT_URI) and "code" in q and "state" in q, final
                # The SDK's loopback listener (plain http on localhost:53593).
                r = requests.get(final, timeout=15)
                assert r.status_code == 200, r.status_code
            except BaseException as e:  # noqa: BLE001 - never leave the SDK waiting
                seen["errors"].append(e)
                send_dummy_callback()

        threading.Thread(target=walk, daemon=True).start()

    r = run_probe(tls_as, "login", "Pkce", on_line=browse, errors=seen["errors"])
    assert not seen["errors"], seen["errors"]
    assert len(seen["walks"]) == 1
    assert r["subject"] == ALICE.username and r["email"] == ALICE.email, r


# --------------------------------------------------------------------------- connect-node


def descriptor_set(path: Path) -> None:
    """A FileDescriptorSet of the published flyteidl (v1) auth, identity and admin protos."""
    from flyteidl.service import admin_pb2, auth_pb2, identity_pb2
    from google.protobuf import descriptor_pb2

    files: dict = {}

    def add(fd):
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        files[fd.name] = proto

    for module in (auth_pb2, identity_pb2, admin_pb2):
        add(module.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet(file=list(files.values()))
    path.write_bytes(fds.SerializeToString())


MAX_REQUEST_BYTES = 262144


def test_connect_node_client(server_factory, tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (NODE_DIR / "node_modules" / "@connectrpc" / "connect-node").is_dir(), (
        f"{NODE_DIR}/node_modules is missing: run `npm ci` there (tests/e2e/run.sh does it)"
    )

    def prepare(srv):
        srv.write_config()
        text = srv.config_file.read_text()
        srv.config_file.write_text(
            text.replace("  grpc: { port: 0 }\n", f"  grpc: {{ port: 0 }}\n  maxRequestBytes: {MAX_REQUEST_BYTES}\n", 1)
        )

    srv = server_factory(prepare=prepare)
    fds = tmp_path / "flyteidl.fds"
    descriptor_set(fds)
    token = mint_token(srv)
    started = time.monotonic()
    p = subprocess.run(
        [node, str(NODE_DIR / "connect_client.mjs"), srv.url, str(fds), token, str(MAX_REQUEST_BYTES)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(NODE_DIR),
    )
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for t in ("h1_binary", "h1_json", "h2_binary", "h2_json"):
        assert out[f"{t}_metadata"] == {"ok": True, "issuer": srv.url, "tokenEndpoint": srv.url + "/oauth2/token"}, out
        assert out[f"{t}_user_info"] == {"ok": True, "subject": "alice"}, out
        assert out[f"{t}_user_info_anonymous"] == {"code": "Unauthenticated", "message": "missing access token"}, out
        reg = out[f"{t}_register"]
        assert reg.get("ok") and reg["domains"] == 3, out
        assert out[f"{t}_unknown_method"]["code"] == "Unimplemented", out
    assert out["streamed_unauthenticated"] == {"code": "Unauthenticated", "message": "missing access token"}, out
    assert out["streamed_oversized"]["code"] == "ResourceExhausted", out
    assert out["after_refusals"] == {"ok": True, "domains": ["development", "staging", "production"]}, out
    assert time.monotonic() - started < 60
