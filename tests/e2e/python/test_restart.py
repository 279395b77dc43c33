"""State survives a restart: projects live in the SQLite store, the signing key in secrets/."""

import secrets

import grpc
import pytest
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.models.project import Project
from flyteidl.service import identity_pb2, identity_pb2_grpc

from helpers import RPC_TIMEOUT_S, TokenCommand, bearer, mint_token

pytestmark = pytest.mark.timeout(60)


def _client(server, cmd):
    return SynchronousFlyteClient(
        PlatformConfig(endpoint=server.endpoint, insecure=True, auth_mode="ExternalCommand",
                       command=cmd.command, rpc_retries=1)
    )


def test_project_survives_restart(server, tmp_path):
    token = mint_token(server)
    key_before = server.signing_key_file.read_bytes()
    cmd = TokenCommand(tmp_path, token)
    pid = "restart-" + secrets.token_hex(4)
    _client(server, cmd).register_project(Project(id=pid, name="Survivor", description="before restart"))

    rc = server.stop()
    # SIGTERM is a graceful shutdown: exit code 0.
    assert rc == 0, f"exit code after SIGTERM: {rc}\n{server.log_tail()}"
    server.start()

    # The signing key was kept (not regenerated), so the token minted before still works.
    assert server.signing_key_file.read_bytes() == key_before
    projects, _ = _client(server, cmd).list_projects_paginated(limit=100)
    by_id = {p.id: p for p in projects}
    assert pid in by_id, sorted(by_id)
    assert (by_id[pid].name, by_id[pid].description) == ("Survivor", "before restart")

    with grpc.insecure_channel(server.endpoint) as ch:
        resp = identity_pb2_grpc.IdentityServiceStub(ch).UserInfo(
            identity_pb2.UserInfoRequest(), metadata=bearer(token), timeout=RPC_TIMEOUT_S
        )
    assert resp.subject == "alice"
