"""Flyte 2's SDK against flyteauth over Connect. Runs in the SDK's own venv ($E2E_FLYTE2_PYTHON),
started as a subprocess by test_connect.py and test_gateway.py (pytest stays in the flytekit venv).

    flyte2_probe.py metadata ENDPOINT CA
    flyte2_probe.py login ENDPOINT CA AUTH_TYPE [CLIENT_ID SECRET_FILE]
    flyte2_probe.py projects ENDPOINT CA [CLIENT_ID SECRET_FILE]
    flyte2_probe.py sdk-projects ENDPOINT CA AUTH_TYPE PROJECT...

`metadata`: the SDK's own discovery (`RemoteClientConfigStore`, i.e. the generated
`flyteidl2.auth.auth_service_connect` client, binary protobuf, gzip-compressed requests), the same
client with Connect's JSON codec, and an anonymous `IdentityService/UserInfo` (must fail
UNAUTHENTICATED).

`login`: the SDK's session (`create_session_config` with the auth type: ClientSecret, Pkce,
DeviceFlow), then `flyteidl2.auth.IdentityService/UserInfo` through the SDK's auth interceptors.
For Pkce the browser is replaced by a line `BROWSER <url>` on stdout; for DeviceFlow the printed
instructions by `VERIFY <url>`: the parent walks the user's side and the SDK goes on by itself.

`projects`: Flyte 2's ProjectService (forwarded by flyteauth's gateway to an upstream) called
the way the SDK calls it: with CLIENT_ID and SECRET_FILE, through `ClientSet.for_endpoint`
(ClientSecret login, then `project_domain_service`, i.e. the generated `ProjectServiceClient`
with the session's auth interceptors and transport), each call also carrying forged identity
headers of the caller's own; without them, anonymously over the SDK's TLS transport.

`sdk-projects`: the SDK's public API as a user scripts it: `flyte.init(endpoint=…,
auth_type=AUTH_TYPE)` (Pkce or DeviceFlow: a local user, walked by the parent as for `login`),
then for each PROJECT `flyte.remote.Project.get(PROJECT)` and `flyte.remote.Project.create(…)`
with that id, each answer or error recorded.

The last line on stdout is `RESULT <json>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import webbrowser


def emit(kind: str, payload) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    print(f"{kind} {text}", flush=True)


async def metadata(endpoint: str, ca: str) -> dict:
    from connectrpc.code import Code
    from connectrpc.codec import proto_json_codec
    from connectrpc.errors import ConnectError
    from flyte.remote._client.auth._client_config import RemoteClientConfigStore
    from flyte.remote._client.auth._session import _build_pyqwest_client
    from flyteidl2.auth import auth_service_pb2, identity_pb2
    from flyteidl2.auth.auth_service_connect import AuthMetadataServiceClient
    from flyteidl2.auth.identity_connect import IdentityServiceClient

    with open(ca, "rb") as f:
        http = _build_pyqwest_client(f.read())
    cfg = await RemoteClientConfigStore(endpoint, http_client=http).get_client_config()
    out = {"sdk_config": {k: getattr(cfg, k) for k in (
        "token_endpoint", "authorization_endpoint", "redirect_uri", "client_id", "scopes", "header_key",
        "device_authorization_endpoint", "audience")}}
    out["sdk_config"]["scopes"] = list(cfg.scopes)

    as_json = AuthMetadataServiceClient(endpoint, http_client=http, codec=proto_json_codec())
    md = await as_json.get_o_auth2_metadata(auth_service_pb2.GetOAuth2MetadataRequest())
    out["json_metadata"] = {"issuer": md.issuer, "token_endpoint": md.token_endpoint,
                            "grant_types_supported": list(md.grant_types_supported)}
    try:
        await IdentityServiceClient(endpoint, http_client=http).user_info(identity_pb2.UserInfoRequest())
        out["anonymous_user_info"] = {"code": "ok"}
    except ConnectError as e:
        out["anonymous_user_info"] = {"code": e.code.name, "message": e.message,
                                      "unauthenticated": e.code == Code.UNAUTHENTICATED}
    return out


def install_user_side(auth_type: str) -> None:
    """Replaces the SDK's browser (Pkce) or its printed instructions (DeviceFlow) by a line on
    stdout: the parent walks the user's side and the SDK goes on by itself."""
    if auth_type == "Pkce":
        webbrowser.open_new_tab = lambda url, *a, **k: (emit("BROWSER", url), True)[1]
    if auth_type == "DeviceFlow":
        from flyte.remote._client.auth._authenticators import device_code

        seen = []

        def show(text, *a, **k):
            import re

            for url in re.findall(r"https?://[^\s\[\]]+", str(text)):
                if "user_code=" in url and url not in seen:
                    seen.append(url)
                    emit("VERIFY", url)

        device_code.rich_print = show


async def login(endpoint: str, ca: str, auth_type: str, client_id: str | None, secret_file: str | None) -> dict:
    from flyte.remote._client.auth._session import create_session_config
    from flyteidl2.auth import identity_pb2
    from flyteidl2.auth.identity_connect import IdentityServiceClient

    kwargs: dict = {"auth_type": auth_type}
    if auth_type == "ClientSecret":
        with open(secret_file or "", encoding="utf-8") as f:
            secret = f.read().strip()
        kwargs.update(client_id=client_id, client_secret=secret, client_credentials_secret=secret)
    install_user_side(auth_type)
    session = await create_session_config(endpoint, None, insecure=False, ca_cert_file_path=ca, **kwargs)
    client = IdentityServiceClient(**session.connect_kwargs())
    info = await client.user_info(identity_pb2.UserInfoRequest())
    # A second call reuses the cached token (no new login).
    again = await client.user_info(identity_pb2.UserInfoRequest())
    return {"subject": info.subject, "name": info.name, "email": info.email,
            "preferred_username": info.preferred_username, "again": again.subject}


FORGED = {
    "x-auth-request-user": "admin",
    "x-auth-request-email": "admin@evil.example",
    "x-auth-request-groups": "admins",
    "x-auth-request-preferred-username": "admin",
    "x-flyte-identity": "forged",
}


async def projects(endpoint: str, ca: str, client_id: str | None, secret_file: str | None) -> dict:
    from connectrpc.errors import ConnectError
    from flyte.remote._client.auth._session import _build_pyqwest_client
    from flyte.remote._client.controlplane import ClientSet
    from flyteidl2.project import project_service_pb2
    from flyteidl2.project.project_service_connect import ProjectServiceClient

    if client_id:
        with open(secret_file or "", encoding="utf-8") as f:
            secret = f.read().strip()
        cs = await ClientSet.for_endpoint(
            endpoint,
            insecure=False,
            ca_cert_file_path=ca,
            auth_type="ClientSecret",
            client_id=client_id,
            client_secret=secret,
            client_credentials_secret=secret,
        )
        client = cs.project_domain_service
    else:
        with open(ca, "rb") as f:
            client = ProjectServiceClient(endpoint, http_client=_build_pyqwest_client(f.read()))

    async def call(fn) -> dict:
        try:
            return {"ok": True, **(await fn())}
        except ConnectError as e:
            return {"ok": False, "code": e.code.name.lower(), "message": e.message}

    async def list_projects():
        r = await client.list_projects(project_service_pb2.ListProjectsRequest(), headers=FORGED)
        return {"projects": [p.name for p in r.projects.projects]}

    async def get_project():
        r = await client.get_project(project_service_pb2.GetProjectRequest(id="nope"), headers=FORGED)
        return {"project": r.project.id}

    return {"list": await call(list_projects), "get": await call(get_project)}


def error_of(e: BaseException) -> dict:
    """The Connect code and message of a failed SDK call, however the SDK wrapped it."""
    from connectrpc.errors import ConnectError

    seen = e
    while seen is not None and not isinstance(seen, ConnectError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return {"ok": False, "code": type(e).__name__, "message": str(e)}
    return {"ok": False, "code": seen.code.name.lower(), "message": seen.message}


def sdk_projects(endpoint: str, ca: str, auth_type: str, names: list[str]) -> dict:
    import flyte
    from flyte.remote import Project

    install_user_side(auth_type)
    flyte.init(endpoint=endpoint, ca_cert_file_path=ca, auth_type=auth_type, rpc_retries=1)
    out: dict = {}
    for name in names:
        for verb, call in (
            ("get", lambda: Project.get(name)),
            ("create", lambda: Project.create(id=name, name=name, description="created by the SDK")),
        ):
            try:
                got = call()
                out[f"{verb} {name}"] = {"ok": True, "project": got.pb2.id}
            except Exception as e:  # noqa: BLE001 - every refusal is a result
                out[f"{verb} {name}"] = error_of(e)
    return out


def main(argv: list[str]) -> int:
    mode, endpoint, ca = argv[1], argv[2], argv[3]
    if mode == "metadata":
        result = asyncio.run(metadata(endpoint, ca))
    elif mode == "login":
        rest = argv[4:] + [None, None, None]
        result = asyncio.run(login(endpoint, ca, rest[0], rest[1], rest[2]))
    elif mode == "projects":
        rest = argv[4:] + [None, None]
        result = asyncio.run(projects(endpoint, ca, rest[0], rest[1]))
    elif mode == "sdk-projects":
        result = sdk_projects(endpoint, ca, argv[4], argv[5:])
    else:
        raise SystemExit(f"unknown mode {mode}")
    emit("RESULT", result)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is out. The SDK's background threads (its event loop, gRPC's) sometimes
    # abort the interpreter's teardown (SIGABRT, seen once on a loaded 2-core machine after
    # a complete and correct RESULT): that is the SDK's exit, not what is under test.
    os._exit(code)
