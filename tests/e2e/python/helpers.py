"""Shared helpers: token minting with the server's signing key, TLS material, gRPC calls."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import ipaddress
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RPC_TIMEOUT_S = 10


# --------------------------------------------------------------------------- tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=16)
def _load_pem_key(pem: bytes):
    return serialization.load_pem_private_key(pem, password=None)


def load_signing_key(server) -> rsa.RSAPrivateKey:
    """The server's current signing key, read from <secrets>/token_rsa_key.pem."""
    pem = server.signing_key_file.read_bytes()
    key = _load_pem_key(pem)
    assert isinstance(key, rsa.RSAPrivateKey), f"{server.signing_key_file} is not an RSA key"
    return key


def rsa_jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 SHA-256 JWK thumbprint, base64url without padding."""
    nums = public_key.public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    canonical = json.dumps({"e": b64url(e), "kty": "RSA", "n": b64url(n)}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


_DEFAULT = object()


def mint_token(
    server,
    *,
    sub: str = "alice",
    iss=_DEFAULT,
    aud=_DEFAULT,
    scp=_DEFAULT,
    client_id=_DEFAULT,
    iat_offset: int = 0,
    exp_offset: int = 600,
    nbf_offset: Optional[int] = None,
    kid=_DEFAULT,
    key: Optional[rsa.RSAPrivateKey] = None,
    extra_claims: Optional[dict] = None,
    extra_headers: Optional[dict] = None,
) -> str:
    """An RS256 access token as the built-in AS would issue it (signed with the server's key)."""
    signing_key = key or load_signing_key(server)
    now = int(time.time())
    claims = {
        "iss": server.url if iss is _DEFAULT else iss,
        "aud": server.url if aud is _DEFAULT else aud,
        "sub": sub,
        "client_id": "flytectl" if client_id is _DEFAULT else client_id,
        "scp": ["all"] if scp is _DEFAULT else scp,
        "iat": now + iat_offset,
        "exp": now + exp_offset,
        "jti": secrets.token_hex(16),
    }
    for k in ("iss", "aud", "client_id", "scp"):
        if claims[k] is None:
            del claims[k]
    if nbf_offset is not None:
        claims["nbf"] = now + nbf_offset
    if extra_claims:
        claims.update(extra_claims)
    headers = {"typ": "at+jwt"}
    if kid is _DEFAULT:
        headers["kid"] = rsa_jwk_thumbprint(load_signing_key(server).public_key())
    elif kid is not None:
        headers["kid"] = kid
    if extra_headers:
        headers.update(extra_headers)
    return jwt.encode(claims, signing_key, algorithm="RS256", headers=headers)


def unsigned_token(server, **claim_overrides) -> str:
    """`alg: none` token with otherwise valid claims."""
    now = int(time.time())
    claims = {"iss": server.url, "aud": server.url, "sub": "alice", "client_id": "flytectl",
              "scp": ["all"], "iat": now, "exp": now + 600, "jti": secrets.token_hex(16)}
    claims.update(claim_overrides)
    header = {"alg": "none", "typ": "JWT"}
    return (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + ".")


def hs256_with_public_key_token(server) -> str:
    """HS256 token whose HMAC secret is the server's public key PEM (alg-confusion attack)."""
    pub_pem = load_signing_key(server).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    now = int(time.time())
    claims = {"iss": server.url, "aud": server.url, "sub": "alice", "client_id": "flytectl",
              "scp": ["all"], "iat": now, "exp": now + 600, "jti": secrets.token_hex(16)}
    signing_input = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(
        json.dumps(claims).encode()
    )
    sig = hmac.new(pub_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def tamper_payload(token: str, **changes) -> str:
    """Change claims of a signed token and keep its original signature."""
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(changes)
    return h + "." + b64url(json.dumps(claims).encode()) + "." + s


def token_command(token_file: Path) -> list:
    """An ExternalCommand for flytekit that prints the token stored in token_file."""
    return [sys.executable, "-c", f"print(open({str(token_file)!r}).read().strip())"]


# --------------------------------------------------------------------------- TLS


def make_tls_files(directory: Path):
    """A self-signed CA and a leaf for localhost / 127.0.0.1 signed by it (PEM files)."""
    from conftest import TlsFiles

    tls_dir = directory / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flyteauth e2e test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(ca_cert=tls_dir / "ca.pem", cert=tls_dir / "server.pem", key=tls_dir / "server-key.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# --------------------------------------------------------------------------- gRPC


def bearer(token: str, key: str = "authorization") -> Sequence[Tuple[str, str]]:
    return ((key, f"Bearer {token}"),)


def call_code(fn, request, metadata: Iterable[Tuple[str, str]] = ()) -> Tuple[grpc.StatusCode, str]:
    """Run a unary call expected to fail; return (code, details)."""
    try:
        fn(request, metadata=tuple(metadata), timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as e:  # noqa: PERF203
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


class TokenCommand:
    """An ExternalCommand for flytekit: prints the token in a file and counts its runs."""

    def __init__(self, directory: Path, token: str, name: str = "token_cmd"):
        directory.mkdir(parents=True, exist_ok=True)
        self.token_file = directory / f"{name}.token"
        self.calls_file = directory / f"{name}.calls"
        self.script = directory / f"{name}.py"
        self.set_token(token)
        self.calls_file.write_text("")
        self.script.write_text(
            "import sys\n"
            f"open({str(self.calls_file)!r}, 'a').write('x\\n')\n"
            f"sys.stdout.write(open({str(self.token_file)!r}).read())\n"
        )

    def set_token(self, token: str) -> None:
        self.token_file.write_text(token)

    @property
    def command(self) -> list:
        return [sys.executable, str(self.script)]

    @property
    def calls(self) -> int:
        return len(self.calls_file.read_text().splitlines())


# --------------------------------------------------------------------------- expected documents

DEFAULT_CLIENT_CONFIG = {
    "client_id": "flytectl",
    "redirect_uri": "http://localhost:53593/callback",
    "scopes": ["all", "offline"],
    "authorization_metadata_key": "flyte-authorization",
}

REQUIRED_GRANT_TYPES = {"client_credentials", "refresh_token", "authorization_code"}

DOMAINS = [("development", "development"), ("staging", "staging"), ("production", "production")]


def assert_oauth2_metadata(md: dict, url: str) -> None:
    """md: snake_case dict of OAuth2MetadataResponse (from proto or JSON)."""
    assert md["issuer"] == url
    assert md["authorization_endpoint"] == url + "/oauth2/authorize"
    assert md["token_endpoint"] == url + "/oauth2/token"
    assert md["jwks_uri"] == url + "/oauth2/jwks"
    assert list(md["code_challenge_methods_supported"]) == ["S256"]
    assert list(md["response_types_supported"]) == ["code"]
    assert REQUIRED_GRANT_TYPES <= set(md["grant_types_supported"]), md["grant_types_supported"]
    assert "client_secret_basic" in md["token_endpoint_auth_methods_supported"]
