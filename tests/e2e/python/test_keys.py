"""Signing keys: JWKS, Flyte's key files (PKCS#1 / PKCS#8, token_rsa_key_old.pem rotation)."""

import base64

import grpc
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flyteidl.service import identity_pb2, identity_pb2_grpc

from helpers import RPC_TIMEOUT_S, bearer, call_code, load_signing_key, mint_token, rsa_jwk_thumbprint

pytestmark = pytest.mark.timeout(60)


def _b64url_int(s: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")


def _jwks(srv) -> dict:
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{srv.url}/oauth2/jwks", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/"), r.headers["Content-Type"]
    return r.json()


def _user_info(srv, token):
    with grpc.insecure_channel(srv.endpoint) as ch:
        stub = identity_pb2_grpc.IdentityServiceStub(ch)
        return stub.UserInfo(identity_pb2.UserInfoRequest(), metadata=bearer(token), timeout=RPC_TIMEOUT_S)


def _user_info_code(srv, token):
    with grpc.insecure_channel(srv.endpoint) as ch:
        stub = identity_pb2_grpc.IdentityServiceStub(ch)
        return call_code(stub.UserInfo, identity_pb2.UserInfoRequest(), bearer(token))


def _rsa_pem(key: rsa.RSAPrivateKey, fmt) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def test_jwks_lists_the_signing_key_under_its_thumbprint(server):
    key = load_signing_key(server)
    kid = rsa_jwk_thumbprint(key.public_key())
    keys = _jwks(server)["keys"]
    by_kid = {k["kid"]: k for k in keys}
    assert kid in by_kid, list(by_kid)
    jwk = by_kid[kid]
    assert jwk["kty"] == "RSA"
    assert jwk.get("alg", "RS256") == "RS256"
    assert jwk.get("use", "sig") == "sig"
    nums = key.public_key().public_numbers()
    assert (_b64url_int(jwk["n"]), _b64url_int(jwk["e"])) == (nums.n, nums.e)
    # public parts only
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_pkcs8_signing_key_is_used_as_is(server_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _rsa_pem(key, serialization.PrivateFormat.PKCS8)

    def prepare(srv):
        srv.secrets_dir.mkdir(parents=True, exist_ok=True)
        srv.signing_key_file.write_bytes(pem)

    srv = server_factory(prepare)
    assert srv.signing_key_file.read_bytes() == pem, "an existing key must not be replaced"
    assert _user_info(srv, mint_token(srv, key=key)).subject == "alice"


def test_old_key_rotation(server_factory):
    """token_rsa_key_old.pem: listed in the JWKS, its tokens validate when they name its kid."""
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old_kid = rsa_jwk_thumbprint(old.public_key())

    def prepare(srv):
        srv.secrets_dir.mkdir(parents=True, exist_ok=True)
        (srv.secrets_dir / "token_rsa_key_old.pem").write_bytes(
            _rsa_pem(old, serialization.PrivateFormat.TraditionalOpenSSL)
        )

    srv = server_factory(prepare)
    current_kid = rsa_jwk_thumbprint(load_signing_key(srv).public_key())
    kids = [k["kid"] for k in _jwks(srv)["keys"]]
    assert set(kids) == {current_kid, old_kid}, kids

    # A token of the old key naming its kid validates.
    assert _user_info(srv, mint_token(srv, key=old, kid=old_kid)).subject == "alice"
    # Without a kid only the current key is tried (never "any key that fits").
    code, details = _user_info_code(srv, mint_token(srv, key=old, kid=None))
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    # Old key's token naming the current kid: wrong signature.
    code, details = _user_info_code(srv, mint_token(srv, key=old, kid=current_kid))
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    # The current key still works with and without kid.
    assert _user_info(srv, mint_token(srv)).subject == "alice"
    assert _user_info(srv, mint_token(srv, kid=None)).subject == "alice"
