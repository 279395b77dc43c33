"""flytekit (the real Python SDK) against flyteauth over h2c.

flytekit's channel stack: RetryExceptionWrapperInterceptor (maps UNAUTHENTICATED to
FlyteAuthenticationException, anything unmapped such as UNKNOWN to FlyteSystemException)
-> AuthUnaryInterceptor (first call without a token; on UNAUTHENTICATED it calls both
AuthMetadataService RPCs, runs the authenticator and retries once).
"""

import secrets
import time

import grpc
import pytest
from flytekit.clients.friendly import SynchronousFlyteClient
from flytekit.configuration import PlatformConfig
from flytekit.exceptions.base import FlyteException
from flytekit.exceptions.user import FlyteAuthenticationException
from flytekit.models.project import Project

from helpers import DOMAINS, TokenCommand, mint_token, unsigned_token

pytestmark = pytest.mark.timeout(60)


def flytekit_client(server, command) -> SynchronousFlyteClient:
    cfg = PlatformConfig(
        endpoint=server.endpoint,
        insecure=True,
        auth_mode="ExternalCommand",
        command=command,
        rpc_retries=1,
    )
    return SynchronousFlyteClient(cfg)


def _assert_unauthenticated(exc_info, secret_fragment: str):
    exc = exc_info.value
    # The exact class flytekit raises for UNAUTHENTICATED (an UNKNOWN or any other unmapped
    # code becomes flytekit.exceptions.system.FlyteSystemException instead).
    assert type(exc) is FlyteAuthenticationException, repr(exc)
    cause = exc.__cause__
    assert isinstance(cause, grpc.RpcError), repr(cause)
    assert cause.code() == grpc.StatusCode.UNAUTHENTICATED, (cause.code(), cause.details())
    details = cause.details() or ""
    assert details, "UNAUTHENTICATED must carry a short reason"
    assert len(details) < 500, details
    if secret_fragment:
        assert secret_fragment not in details, "the token must not be echoed in the error"


@pytest.mark.parametrize(
    "bad_token",
    ["garbage", "wrong_audience", "expired", "unsigned", "no_all_scope"],
)
def test_flytekit_with_invalid_token_raises_authentication_exception(server, tmp_path, bad_token):
    tokens = {
        "garbage": lambda: "not-a-jwt-" + secrets.token_hex(8),
        "wrong_audience": lambda: mint_token(server, aud="https://elsewhere.example.com"),
        "expired": lambda: mint_token(server, iat_offset=-3600, exp_offset=-600),
        "unsigned": lambda: unsigned_token(server),
        "no_all_scope": lambda: mint_token(server, scp=["offline"]),
    }
    token = tokens[bad_token]()
    cmd = TokenCommand(tmp_path, token)
    client = flytekit_client(server, cmd.command)

    with pytest.raises(FlyteException) as exc_info:
        client.list_projects_paginated(limit=10)
    _assert_unauthenticated(exc_info, token.split(".")[-1][-16:])
    # flytekit got UNAUTHENTICATED for the token-less first call, read the client config from
    # AuthMetadataService anonymously and ran the command: the bootstrap path works.
    assert cmd.calls >= 1


def test_flytekit_external_command_lists_and_registers_projects(server, tmp_path):
    cmd = TokenCommand(tmp_path, mint_token(server))
    client = flytekit_client(server, cmd.command)

    projects, _ = client.list_projects_paginated(limit=100)
    assert isinstance(projects, list)
    # The first RPC went without a token, got UNAUTHENTICATED, then the command ran once.
    assert cmd.calls == 1

    pid = "fk-" + secrets.token_hex(4)
    client.register_project(Project(id=pid, name="Flytekit project", description="registered by flytekit"))

    projects, token = client.list_projects_paginated(limit=100)
    by_id = {p.id: p for p in projects}
    assert pid in by_id, sorted(by_id)
    assert by_id[pid].name == "Flytekit project"
    assert by_id[pid].description == "registered by flytekit"
    assert by_id[pid].state == Project.ProjectState.ACTIVE
    assert token == ""
    # The token is reused: no further command runs.
    assert cmd.calls == 1

    domains = client.get_domains()
    assert [(d.id, d.name) for d in domains] == DOMAINS


def test_flytekit_reauthenticates_when_token_expires(server, tmp_path):
    """A rejected (expired) cached token makes flytekit run the command again and succeed."""
    cmd = TokenCommand(tmp_path, mint_token(server, iat_offset=-3600, exp_offset=-600))
    client = flytekit_client(server, cmd.command)
    with pytest.raises(FlyteAuthenticationException):
        client.list_projects_paginated(limit=10)
    calls = cmd.calls
    cmd.set_token(mint_token(server))
    projects, _ = client.list_projects_paginated(limit=10)
    assert isinstance(projects, list)
    assert cmd.calls == calls + 1


def test_flytekit_update_project(server, tmp_path):
    cmd = TokenCommand(tmp_path, mint_token(server))
    client = flytekit_client(server, cmd.command)
    pid = "fku-" + secrets.token_hex(4)
    client.register_project(Project(id=pid, name="before", description="d1"))
    client.update_project(Project(id=pid, name="after", description="d2"))
    projects, _ = client.list_projects_paginated(limit=100)
    by_id = {p.id: p for p in projects}
    assert pid in by_id
    assert (by_id[pid].name, by_id[pid].description, by_id[pid].state) == (
        "after",
        "d2",
        Project.ProjectState.ACTIVE,
    )


def test_flyte_remote_client(server, tmp_path):
    """The FlyteRemote entry point builds the same authenticated client."""
    from flytekit.configuration import Config
    from flytekit.remote import FlyteRemote

    cmd = TokenCommand(tmp_path, mint_token(server))
    cfg = PlatformConfig(endpoint=server.endpoint, insecure=True, auth_mode="ExternalCommand",
                         command=cmd.command, rpc_retries=1)
    remote = FlyteRemote(Config(platform=cfg), default_project="flytesnacks", default_domain="development")
    assert [(d.id, d.name) for d in remote.client.get_domains()] == DOMAINS
    assert cmd.calls == 1
