"""openid-client@6 (Node, an OpenID-certified relying party) against the built-in AS.

tests/e2e/node/oidc_rp.mjs does the OAuth side (RFC 8414 discovery, client_credentials,
authorization code + PKCE, refresh) and verifies every access token with jose against the
server's JWKS (signature, typ, iss, aud). The browser part of the code flow is the same
requests-based login walk as the other tests: the script builds the authorization URL, Python
walks it as alice, the script redeems the callback URL.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oauth import ALICE, FLYTEKIT_REDIRECT_URI, generated_propeller_secret, query_of, walk_authorize

pytestmark = pytest.mark.timeout(120)

# Strict rotation (a reuse right after a rotation revokes); the grace period is tested in
# test_hostile.py.
import oauth as _oauth  # noqa: E402

AS_AUTH_EXTRA = _oauth.auth_extra(self_auth_server={"refreshTokenGracePeriod": "0s"})

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "oidc_rp.mjs"
NODE_TIMEOUT_S = 45


@pytest.fixture(scope="module", autouse=True)
def node_ready():
    if shutil.which("node") is None:
        pytest.fail("node is not installed (needed for openid-client)", pytrace=False)
    if not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run tests/e2e/run.sh (it runs npm ci)", pytrace=False)


def rp(server, op: str, **kw) -> dict:
    req = dict(op=op, issuer=server.url, **kw)
    env = dict(os.environ, NODE_NO_WARNINGS="1")
    p = subprocess.run(
        ["node", str(SCRIPT), json.dumps(req)],
        cwd=str(NODE_DIR),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        env=env,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert p.returncode == 0 and lines, f"node exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return json.loads(lines[-1])


def ok(res: dict) -> dict:
    assert res.get("ok") is True, json.dumps(res, indent=2)
    return res


def failed(res: dict, error: str) -> dict:
    assert res.get("ok") is False, json.dumps(res, indent=2)
    assert res["error"].get("error") == error, json.dumps(res, indent=2)
    return res["error"]


def assert_verified(server, res: dict, sub: str, client_id: str):
    v = res["verified"]
    assert v["header"]["typ"] == "at+jwt", v
    assert v["header"].get("kid"), v
    p = v["payload"]
    assert p["iss"] == server.url, p
    aud = p["aud"] if isinstance(p["aud"], list) else [p["aud"]]
    assert server.url in aud, p
    assert p["sub"] == sub and p["client_id"] == client_id, p
    assert isinstance(p["scp"], list), p
    assert res["token_type"].lower() == "bearer", res
    assert isinstance(res["expires_in"], int) and res["expires_in"] > 0, res


def test_discovery(as_server):
    md = ok(rp(as_server, "metadata"))["metadata"]
    assert md["issuer"] == as_server.url
    assert md["token_endpoint"] == as_server.url + "/oauth2/token"
    assert md["authorization_endpoint"] == as_server.url + "/oauth2/authorize"
    assert md["jwks_uri"] == as_server.url + "/oauth2/jwks"
    assert md["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_client_credentials(as_server, auth):
    secret = generated_propeller_secret(as_server)
    res = ok(rp(as_server, "client_credentials", client_id="flytepropeller", client_secret=secret, auth=auth, scope="all"))
    assert_verified(as_server, res, "flytepropeller", "flytepropeller")
    assert "all" in res["verified"]["payload"]["scp"]
    assert not res.get("refresh_token")


def test_client_credentials_wrong_secret(as_server):
    secret = generated_propeller_secret(as_server)
    err = failed(
        rp(as_server, "client_credentials", client_id="flytepropeller", client_secret="x" + secret, auth="basic", scope="all"),
        "invalid_client",
    )
    assert err.get("status") == 401, err
    assert err.get("body", {}).get("error") == "invalid_client", err


def _browser_callback(server, url: str) -> str:
    import requests

    walk = walk_authorize(server, requests.Session(), url, ALICE)
    assert walk.final_url and walk.final_url.startswith(FLYTEKIT_REDIRECT_URI + "?"), walk.trace()
    q = query_of(walk.final_url)
    assert "code" in q and q.get("iss") == server.url, q
    return walk.final_url


def test_authorization_code_pkce_refresh_and_replay(as_server):
    start = ok(rp(as_server, "auth_url", client_id="flytectl", redirect_uri=FLYTEKIT_REDIRECT_URI, scope="all offline"))
    callback = _browser_callback(as_server, start["url"])

    res = ok(rp(as_server, "code", client_id="flytectl", callback_url=callback,
                code_verifier=start["code_verifier"], state=start["state"]))
    assert_verified(as_server, res, "alice", "flytectl")
    assert res["verified"]["payload"]["user_info"]["email"] == ALICE.email
    rt0 = res["refresh_token"]
    assert rt0

    ref = ok(rp(as_server, "refresh", client_id="flytectl", refresh_token=rt0))
    assert_verified(as_server, ref, "alice", "flytectl")
    rt1 = ref["refresh_token"]
    assert rt1 and rt1 != rt0

    # replaying the code through openid-client: invalid_grant
    failed(rp(as_server, "code", client_id="flytectl", callback_url=callback,
              code_verifier=start["code_verifier"], state=start["state"]), "invalid_grant")


def test_refresh_token_reuse_through_openid_client(as_server):
    start = ok(rp(as_server, "auth_url", client_id="flyte-cli", redirect_uri=FLYTEKIT_REDIRECT_URI, scope="all offline"))
    callback = _browser_callback(as_server, start["url"])
    res = ok(rp(as_server, "code", client_id="flyte-cli", callback_url=callback,
                code_verifier=start["code_verifier"], state=start["state"]))
    rt0 = res["refresh_token"]
    rt1 = ok(rp(as_server, "refresh", client_id="flyte-cli", refresh_token=rt0))["refresh_token"]
    failed(rp(as_server, "refresh", client_id="flyte-cli", refresh_token=rt0), "invalid_grant")
    failed(rp(as_server, "refresh", client_id="flyte-cli", refresh_token=rt1), "invalid_grant")


def test_wrong_verifier_through_openid_client(as_server):
    start = ok(rp(as_server, "auth_url", client_id="flytectl", redirect_uri=FLYTEKIT_REDIRECT_URI, scope="all"))
    callback = _browser_callback(as_server, start["url"])
    other = ok(rp(as_server, "auth_url", client_id="flytectl", redirect_uri=FLYTEKIT_REDIRECT_URI, scope="all"))
    failed(rp(as_server, "code", client_id="flytectl", callback_url=callback,
              code_verifier=other["code_verifier"], state=start["state"]), "invalid_grant")
