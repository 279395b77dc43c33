"""TLS on the single port: gRPC over TLS (ALPN h2) and HTTPS; plaintext must not work."""

import secrets

import grpc
import pytest
import requests
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.models.project import Project
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import DOMAINS, RPC_TIMEOUT_S, TokenCommand, assert_oauth2_metadata, mint_token

pytestmark = pytest.mark.timeout(60)


def _root(tls_server) -> bytes:
    return tls_server.tls.ca_cert.read_bytes()


def test_flytekit_over_tls_lists_and_registers_projects(tls_server, tmp_path):
    cmd = TokenCommand(tmp_path, mint_token(tls_server))
    cfg = PlatformConfig(
        endpoint=tls_server.endpoint,  # localhost:PORT, the name in the certificate
        insecure=False,
        ca_cert_file_path=str(tls_server.tls.ca_cert),
        auth_mode="ExternalCommand",
        command=cmd.command,
        rpc_retries=1,
    )
    client = SynchronousFlyteClient(cfg)
    projects, _ = client.list_projects_paginated(limit=100)
    assert isinstance(projects, list)
    assert cmd.calls == 1
    pid = "tls-" + secrets.token_hex(4)
    client.register_project(Project(id=pid, name="TLS project", description="over TLS"))
    projects, _ = client.list_projects_paginated(limit=100)
    assert pid in {p.id for p in projects}
    assert [(d.id, d.name) for d in client.get_domains()] == DOMAINS


def test_grpc_secure_channel_reaches_health(tls_server):
    creds = grpc.ssl_channel_credentials(root_certificates=_root(tls_server))
    with grpc.secure_channel(tls_server.endpoint, creds) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_secure_channel_by_ip_address(tls_server):
    """The leaf also names 127.0.0.1; the public URL stays https://localhost:PORT."""
    from flyteidl.service import auth_pb2, auth_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=_root(tls_server))
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", creds) as ch:
        md = auth_pb2_grpc.AuthMetadataServiceStub(ch).GetOAuth2Metadata(
            auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_S
        )
    assert md.issuer == tls_server.url


def test_grpc_secure_channel_without_the_ca_fails(tls_server):
    creds = grpc.ssl_channel_credentials()  # system roots only: our test CA is unknown
    with grpc.secure_channel(tls_server.endpoint, creds) as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()


def test_h2c_to_tls_port_fails(tls_server):
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, (e.value.code(), e.value.details())


def test_plain_http_to_tls_port_fails(tls_server):
    s = requests.Session()
    s.trust_env = False
    with pytest.raises(requests.exceptions.ConnectionError):
        s.get(f"http://127.0.0.1:{tls_server.port}/healthcheck", timeout=5)


def test_https_healthcheck_and_metadata(tls_server):
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{tls_server.url}/healthcheck", verify=str(tls_server.tls.ca_cert), timeout=5)
    assert r.status_code == 200
    r = s.get(f"{tls_server.url}/.well-known/oauth-authorization-server", verify=str(tls_server.tls.ca_cert), timeout=5)
    assert r.status_code == 200, r.text
    assert_oauth2_metadata(r.json(), tls_server.url)
    r = s.get(f"{tls_server.url}/api/v1/projects", verify=str(tls_server.tls.ca_cert), timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    r = s.get(
        f"{tls_server.url}/api/v1/domains",
        headers={"Authorization": f"Bearer {mint_token(tls_server)}"},
        verify=str(tls_server.tls.ca_cert),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert [(d["id"], d["name"]) for d in r.json()["domains"]] == DOMAINS
