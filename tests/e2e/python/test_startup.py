"""First start: generated secrets; bad configuration fails loudly."""

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import FLYTEAUTH_BIN, FlyteAuthServer, free_port

pytestmark = pytest.mark.timeout(60)


def test_signing_key_generated_as_pkcs1_pem(server):
    pem = server.signing_key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----"), pem[:40]
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size >= 2048


def test_database_file_created(server):
    assert server.db_file.exists()


@pytest.mark.parametrize(
    "mutate,key_path",
    [
        (lambda c: c.replace("server:\n", "server:\n  bogusKey: 1\n", 1), "server.bogusKey"),
        (lambda c: c + "notASection: {}\n", "notASection"),
        (lambda c: c.replace("  grpc: { port: 0 }", "  grpc: { port: 0, colour: blue }"), "server.grpc.colour"),
    ],
    ids=["unknown_server_key", "unknown_top_level_key", "unknown_nested_key"],
)
def test_unknown_config_key_fails_with_its_path(tmp_path, mutate, key_path):
    srv = FlyteAuthServer(tmp_dir=tmp_path, port=free_port())
    srv.write_config()
    srv.config_file.write_text(mutate(srv.config_file.read_text()))
    p = subprocess.run(
        [FLYTEAUTH_BIN, "serve", "--config", str(srv.config_file)],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
    )
    assert p.returncode != 0, f"started with an unknown key:\n{p.stdout}\n{p.stderr}"
    assert key_path in (p.stdout + p.stderr), p.stdout + p.stderr


def test_check_config_accepts_the_fixture_config(tmp_path):
    srv = FlyteAuthServer(tmp_dir=tmp_path, port=free_port())
    srv.write_config()
    p = subprocess.run(
        [FLYTEAUTH_BIN, "check-config", "--config", str(srv.config_file)],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_config_rejects_an_unknown_key_with_its_path(tmp_path):
    srv = FlyteAuthServer(tmp_dir=tmp_path, port=free_port())
    srv.write_config()
    srv.config_file.write_text(srv.config_file.read_text().replace("auth:\n", "auth:\n  notAnAuthKey: true\n", 1))
    p = subprocess.run(
        [FLYTEAUTH_BIN, "check-config", "--config", str(srv.config_file)],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
    )
    assert p.returncode != 0, p.stdout + p.stderr
    assert "auth.notAnAuthKey" in p.stdout + p.stderr, p.stdout + p.stderr


def test_separate_grpc_port_serves_grpc_only(server_factory):
    """server.grpc.port (Flyte parity): a second listener with gRPC only, same auth rules."""
    import grpc
    import requests
    from flyteidl.service import auth_pb2, auth_pb2_grpc, identity_pb2, identity_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from helpers import RPC_TIMEOUT_S, bearer, call_code, mint_token

    grpc_port = free_port()

    def prepare(srv):
        srv.write_config()
        srv.config_file.write_text(
            srv.config_file.read_text().replace("grpc: { port: 0 }", f"grpc: {{ port: {grpc_port} }}")
        )

    srv = server_factory(prepare)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        cfg = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetPublicClientConfig(
            auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_S
        )
        assert cfg.client_id == "flytectl"
        ident = identity_pb2_grpc.IdentityServiceStub(ch)
        code, details = call_code(ident.UserInfo, identity_pb2.UserInfoRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED, details
        # Tokens carry the public URL (authorizedUris[0]) as audience on this port too.
        resp = ident.UserInfo(identity_pb2.UserInfoRequest(), metadata=bearer(mint_token(srv)), timeout=RPC_TIMEOUT_S)
        assert resp.subject == "alice"
    # gRPC only: no HTTP routes there.
    s = requests.Session()
    s.trust_env = False
    try:
        r = s.get(f"http://127.0.0.1:{grpc_port}/healthcheck", timeout=5)
    except requests.exceptions.ConnectionError:
        pass
    else:
        # HTTP/1.1 to an h2-only listener: a client error, never the healthcheck's 200
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
