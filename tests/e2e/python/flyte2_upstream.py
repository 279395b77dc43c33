"""A Flyte 2 upstream stand-in (run with the Flyte 2 venv's python): flyteidl2's
ProjectService as a Connect server (connectrpc's ASGI application) under uvicorn. ListProjects
answers one project named after the `X-Auth-Request-User` it received; every call's headers
are appended as one JSON line to the file given as the second argument.

Usage: python flyte2_upstream.py PORT SEEN_FILE
"""

import json
import sys

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.project import project_service_connect, project_service_pb2

PORT = int(sys.argv[1])
SEEN = sys.argv[2]


def record(method, ctx):
    headers = {k.lower(): v for k, v in ctx.request_headers().items()}
    with open(SEEN, "a") as f:
        f.write(json.dumps({"method": method, "headers": headers}) + "\n")
    return headers


class Projects:
    async def list_projects(self, request, ctx):
        h = record("ListProjects", ctx)
        user = h.get("x-auth-request-user", "")
        return project_service_pb2.ListProjectsResponse(
            projects=project_service_pb2.Projects(
                projects=[project_service_pb2.Project(id="flyte2-project", name=f"seen-by-upstream:{user}")]
            )
        )

    async def get_project(self, request, ctx):
        record("GetProject", ctx)
        raise ConnectError(Code.NOT_FOUND, f"project {request.id} not found")

    async def create_project(self, request, ctx):
        record("CreateProject", ctx)
        raise ConnectError(Code.UNIMPLEMENTED, "not in the stand-in")

    async def update_project(self, request, ctx):
        record("UpdateProject", ctx)
        raise ConnectError(Code.UNIMPLEMENTED, "not in the stand-in")


app = project_service_connect.ProjectServiceASGIApplication(Projects())

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
