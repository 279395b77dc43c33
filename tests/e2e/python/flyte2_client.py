"""Flyte 2's generated Connect client (flyteidl2 `project_service_connect`, protobuf bodies,
gzip-compressed like the `flyte` SDK sends them) calling ListProjects and GetProject through
flyteauth; run with the Flyte 2 venv's python. Prints one JSON line per call:
{"ok": true, "projects": [...]} or {"ok": false, "code": "...", "message": "..."}.

Usage: python flyte2_client.py BASE_URL [TOKEN [PROJECT]]  (GetProject asks for PROJECT, default "nope")
"""

import json
import sys

from connectrpc.errors import ConnectError
from flyteidl2.project import project_service_connect, project_service_pb2

base = sys.argv[1]
headers = {"authorization": f"Bearer {sys.argv[2]}"} if len(sys.argv) > 2 else {}
project = sys.argv[3] if len(sys.argv) > 3 else "nope"
client = project_service_connect.ProjectServiceClientSync(base)


def out(fn):
    try:
        print(json.dumps({"ok": True, **fn()}))
    except ConnectError as e:
        print(json.dumps({"ok": False, "code": e.code.name.lower(), "message": e.message}))


out(lambda: {"projects": [p.name for p in client.list_projects(project_service_pb2.ListProjectsRequest(), headers=headers).projects.projects]})
out(lambda: {"project": client.get_project(project_service_pb2.GetProjectRequest(id=project), headers=headers).project.id})
