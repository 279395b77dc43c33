"""Machine identities without shared secrets (DESIGN §13): Kubernetes service-account tokens
exchanged for flyteauth access tokens (RFC 8693), with the real clients.

The issuer stand-in is a Kubernetes API server's OIDC side: discovery at
`/.well-known/openid-configuration`, keys at `/openid/v1/jwks`, and service-account tokens
minted with PyJWT + cryptography (ES256) in the shape a projected token volume holds (`iss`,
`sub: system:serviceaccount:<ns>:<name>`, `aud`, `exp`, `iat`, `nbf`, `jti`, `kubernetes.io`).
flytekit runs `flyteauth token --subject-token-file F` as its ExternalCommand.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.models.project import Project

from conftest import FLYTEAUTH_BIN, free_port
from replica_util import user_info
from replicas import Cluster, PgDatabase

pytestmark = pytest.mark.timeout(120)

PROPELLER_SA = "system:serviceaccount:flyte:flytepropeller"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"


class K8sIssuer:
    """A cluster's service-account token issuer on 127.0.0.1:<free port>."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = uuid.uuid4().hex
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "ES256"})
        docs = {
            "/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            },
            "/openid/v1/jwks": {"keys": [jwk]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                doc = docs.get(self.path)
                body = json.dumps(doc).encode() if doc else b"{}"
                self.send_response(200 if doc else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def mint(self, sub: str = PROPELLER_SA, aud=("flyteauth",), iss=None, key=None, **over) -> str:
        now = int(time.time())
        ns, sa = sub.split(":")[2:4] if sub.startswith("system:serviceaccount:") else ("x", "y")
        claims = {
            "iss": iss or self.url, "sub": sub, "aud": list(aud), "iat": now, "nbf": now,
            "exp": now + 3600, "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": str(uuid.uuid4())},
                              "pod": {"name": f"{sa}-0", "uid": str(uuid.uuid4())}},
        }
        claims.update(over)
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": self.kid})

    def close(self):
        self.httpd.shutdown()


def trusted(issuer: K8sIssuer) -> dict:
    """The `auth:` keys trusting the stand-in's tokens for audience `flyteauth`."""
    return {
        "appAuth": {
            "selfAuthServer": {
                "trustedIssuers": [
                    {
                        "issuer": issuer.url,  # jwksUri found by discovery
                        "audiences": ["flyteauth"],
                        "subjects": {PROPELLER_SA: {"clientId": "flytepropeller", "scopes": ["all"]}},
                    }
                ]
            }
        }
    }


@pytest.fixture(scope="module")
def issuer():
    i = K8sIssuer()
    yield i
    i.close()


@pytest.fixture
def srv(server_factory, issuer):
    return server_factory(auth_extra=trusted(issuer))


def exchange(server, token: str) -> requests.Response:
    return requests.post(
        f"{server.url}/oauth2/token",
        data={"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": TYPE_JWT},
        timeout=10,
    )


def token_command(server, token_file) -> list:
    return [FLYTEAUTH_BIN, "token", "--endpoint", server.url, "--subject-token-file", str(token_file)]


def assert_refused(r: requests.Response, error: str, why: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["error"] == error, body
    assert why in body["error_description"], body
    assert "access_token" not in body


def test_flytekit_external_command_exchanges_a_service_account_token(srv, issuer, tmp_path):
    # The projected token volume: kubelet writes the token to a file.
    token_file = tmp_path / "flyteauth"
    token_file.write_text(issuer.mint())
    cfg = PlatformConfig(endpoint=srv.endpoint, insecure=True, auth_mode="ExternalCommand",
                         command=token_command(srv, token_file), rpc_retries=1)
    client = SynchronousFlyteClient(cfg)
    projects, _ = client.list_projects_paginated(limit=100)
    assert isinstance(projects, list)
    client.register_project(Project(id="exchanged", name="Exchanged", description="registered with a k8s token"))
    projects, _ = client.list_projects_paginated(limit=100)
    assert "exchanged" in [p.id for p in projects]

    # The same token again (the file did not change): a replay, refused by the CLI with the
    # reason on stderr and nothing on stdout.
    p = subprocess.run(token_command(srv, token_file), capture_output=True, text=True, timeout=30)
    assert p.returncode == 69, p
    assert p.stdout == ""
    assert "invalid_request" in p.stderr and "already exchanged" in p.stderr, p.stderr


def test_the_access_token_says_who_it_came_from(srv, issuer):
    r = exchange(srv, issuer.mint())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    at = body["access_token"]
    claims = jwt.decode(at, options={"verify_signature": False})
    assert claims["act"] == {"sub": PROPELLER_SA, "iss": issuer.url}
    assert claims["client_id"] == "flytepropeller" and claims["scp"] == ["all"]
    secret = (srv.secrets_dir / "flytepropeller_client_secret").read_text().strip()
    i = requests.post(f"{srv.url}/oauth2/introspect", data={"token": at},
                      auth=("flytepropeller", secret), timeout=10).json()
    assert i["active"] is True and i["act"]["sub"] == PROPELLER_SA
    md = requests.get(f"{srv.url}/.well-known/oauth-authorization-server", timeout=10).json()
    assert EXCHANGE in md["grant_types_supported"]
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in md["grant_types_supported"]


def test_replayed_wrong_audience_and_untrusted_issuer_are_refused(srv, issuer):
    token = issuer.mint()
    assert exchange(srv, token).status_code == 200
    assert_refused(exchange(srv, token), "invalid_request", "already exchanged")
    assert_refused(exchange(srv, issuer.mint(aud=["https://kubernetes.default.svc"])),
                   "invalid_request", "audience mismatch")
    # Another cluster (its own key and issuer URL) is not trusted.
    other = ec.generate_private_key(ec.SECP256R1())
    assert_refused(exchange(srv, issuer.mint(iss="https://other-cluster.example.com", key=other)),
                   "invalid_request", "is not trusted")
    # The trusted issuer's URL with another key: the signature does not verify.
    assert_refused(exchange(srv, issuer.mint(key=other)), "invalid_request", "bad signature")
    # A service account that is not mapped.
    assert_refused(exchange(srv, issuer.mint(sub="system:serviceaccount:default:default")),
                   "invalid_request", "is not mapped")
    # RFC 7523: the same refusals are invalid_grant for the JWT bearer grant.
    r = requests.post(f"{srv.url}/oauth2/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": token})
    assert_refused(r, "invalid_grant", "already exchanged")


@pytest.fixture(scope="module")
def pgdb():
    db = PgDatabase.create("exchange")
    yield db
    db.drop()


def test_two_replicas_refuse_a_token_replayed_across_them(server_factory, pgdb, issuer, tmp_path):
    c = Cluster(tmp_path, pgdb.url(), n=2, auth_extra=trusted(issuer))
    server_factory.servers.extend(c.replicas)
    c.start()
    try:
        a, b = c.replicas
        token = issuer.mint()
        r = exchange(a, token)
        assert r.status_code == 200, r.text
        at = r.json()["access_token"]
        # Replayed at the other replica: refused there too (the jti is in the shared store).
        assert_refused(exchange(b, token), "invalid_request", "already exchanged")
        assert_refused(exchange(a, token), "invalid_request", "already exchanged")
        # The access token works at both.
        assert user_info(a, at) == (grpc.StatusCode.OK, "flytepropeller")
        assert user_info(b, at) == (grpc.StatusCode.OK, "flytepropeller")
        # Many presentations of one fresh token racing on both replicas: exactly one wins.
        fresh = issuer.mint()
        results = []
        threads = [threading.Thread(target=lambda r=r: results.append(exchange(r, fresh).status_code))
                   for r in (a, b) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200] + [400] * 7, results
    finally:
        c.stop()
