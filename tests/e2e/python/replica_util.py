"""Small client-side helpers shared by test_replicas.py and test_faults.py."""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import grpc
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, identity_pb2, identity_pb2_grpc

from oauth import ALICE, HTTP_TIMEOUT_S, assert_token_response, exchange_code, get_code, logged_in_session

T = HTTP_TIMEOUT_S


def md(tok: str):
    return (("flyte-authorization", f"Bearer {tok}"),)


def http_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def user_tokens(issuer, redeemer=None, sess: Optional[requests.Session] = None) -> dict:
    """alice logs in at `issuer` (or reuses `sess`), gets a code there, redeems it at `redeemer`."""
    sess = sess or logged_in_session(issuer, ALICE)
    code, verifier, params = get_code(issuer, sess)
    return assert_token_response(exchange_code(redeemer or issuer, code, verifier, params), refresh=True)


def propeller_token(server, secret: str) -> str:
    r = requests.post(f"{server.url}/oauth2/token", data={"grant_type": "client_credentials", "scope": "all"},
                      auth=("flytepropeller", secret), timeout=T)
    return assert_token_response(r)["access_token"]


def user_info(server, tok: str, timeout: float = 10) -> Tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(server.endpoint) as ch:
        try:
            resp = identity_pb2_grpc.IdentityServiceStub(ch).UserInfo(
                identity_pb2.UserInfoRequest(), metadata=md(tok), timeout=timeout)
            return grpc.StatusCode.OK, resp.subject
        except grpc.RpcError as e:
            return e.code(), e.details() or ""


def list_project_ids(server, tok: str, http: Optional[requests.Session] = None) -> Dict[str, dict]:
    """Every project (following the page token) over REST."""
    http = http or http_session()
    out: Dict[str, dict] = {}
    page = ""
    for _ in range(100):
        params = {"limit": 100}
        if page:
            params["token"] = page
        r = http.get(f"{server.url}/api/v1/projects", params=params,
                     headers={"Authorization": f"Bearer {tok}"}, timeout=T)
        assert r.status_code == 200, (server.url, r.status_code, r.text[:500])
        body = r.json()
        for p in body["projects"]:
            out[p["id"]] = p
        page = body.get("token") or ""
        if not page:
            return out
    raise AssertionError("more than 100 pages of projects")


def register_project_rest(server, tok: str, pid: str, http: Optional[requests.Session] = None,
                          timeout: float = T) -> requests.Response:
    http = http or http_session()
    return http.post(f"{server.url}/api/v1/projects",
                     json={"project": {"id": pid, "name": pid, "description": "e2e"}},
                     headers={"Authorization": f"Bearer {tok}"}, timeout=timeout)


def grpc_list_projects(server, tok: str, timeout: float = 10):
    with grpc.insecure_channel(server.endpoint) as ch:
        return admin_pb2_grpc.AdminServiceStub(ch).ListProjects(
            project_pb2.ProjectListRequest(limit=100), metadata=md(tok), timeout=timeout)


def wait_until(pred, timeout: float, interval: float = 0.1):
    """Polls pred() until it returns a truthy value; returns (value, seconds) or (last, None)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = pred()
        if last:
            return last, time.monotonic() - t0
        time.sleep(interval)
    return last, None

