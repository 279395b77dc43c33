"""Upstream stand-ins behind flyteauth's gateway (TESTING.md "Upstreams behind the gateway").

- `Flyte1Upstream`: a grpcio server on flyteidl 1.16's generated servicers, in this process:
  AdminService (ListProjects, GetExecution, CreateExecution; everything else UNIMPLEMENTED as
  the base class answers) and AsyncAgentService/GetTaskLogs (server-streaming: flyteidl 1.16 has no
  WatchService). A plain HTTP/1.1 server on a second port stands in for FlyteAdmin's
  grpc-gateway REST (`/api/v1/...`). Both record the metadata/headers they received.
- `Flyte2Upstream`: `flyte2_upstream.py` under the Flyte 2 venv ($E2E_FLYTE2_PYTHON): a
  Connect server from flyteidl2's `project_service_connect` under uvicorn.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import grpc
import pytest
import requests
from flyteidl.admin import agent_pb2, execution_pb2, project_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc, agent_pb2_grpc

from conftest import free_port

# Seconds between the two messages of the streaming RPC (the test checks the first arrives
# well before the stream ends).
STREAM_GAP_S = 2.0


class _Recorder:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, Dict[str, str]]] = []
        self.lock = threading.Lock()

    def record(self, method: str, metadata) -> Dict[str, str]:
        md = {k.lower(): v for k, v in metadata}
        with self.lock:
            self.calls.append((method, md))
        return md

    def last(self, method: Optional[str] = None) -> Dict[str, str]:
        with self.lock:
            for m, md in reversed(self.calls):
                if method is None or m == method:
                    return md
        raise AssertionError(f"the upstream saw no {method or 'call'}: {self.calls}")

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


class _Admin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, rec: _Recorder) -> None:
        self.rec = rec

    def ListProjects(self, request, context):
        md = self.rec.record("ListProjects", context.invocation_metadata())
        user = md.get("x-auth-request-user", "")
        return project_pb2.Projects(
            projects=[project_pb2.Project(id="upstream-project", name=f"seen-by-upstream:{user}")]
        )

    def GetExecution(self, request, context):
        self.rec.record("GetExecution", context.invocation_metadata())
        if request.id.name == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "execution missing not found")
        return execution_pb2.Execution(
            id=identifier_pb2.WorkflowExecutionIdentifier(
                project=request.id.project, domain=request.id.domain, name=request.id.name
            )
        )

    def CreateExecution(self, request, context):
        self.rec.record("CreateExecution", context.invocation_metadata())
        return execution_pb2.ExecutionCreateResponse(
            id=identifier_pb2.WorkflowExecutionIdentifier(
                project=request.project, domain=request.domain, name=request.name
            )
        )


class _Agent(agent_pb2_grpc.AsyncAgentServiceServicer):
    def __init__(self, rec: _Recorder) -> None:
        self.rec = rec

    def GetTaskLogs(self, request, context):
        self.rec.record("GetTaskLogs", context.invocation_metadata())
        yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token="first"))
        time.sleep(STREAM_GAP_S)
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["second"]))


class _Rest(BaseHTTPRequestHandler):
    rec: _Recorder  # set on the subclass

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        self.rec.record(f"{self.command} {self.path}", [(k, v) for k, v in self.headers.items()])
        self.send_response(200)
        self.send_header("content-type", self.headers.get("content-type") or "application/octet-stream")
        self.send_header("x-upstream", "flyteadmin-rest")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


class Flyte1Upstream:
    """grpcio AdminService + AsyncAgentService on `grpc_port`; REST on `rest_port`."""

    def __init__(self, grpc_port: Optional[int] = None) -> None:
        self.rec = _Recorder()
        self.grpc_port = grpc_port or free_port()
        self.rest_port = free_port()
        self.server: Optional[grpc.Server] = None
        rest = type("Rest", (_Rest,), {"rec": self.rec})
        self.rest = ThreadingHTTPServer(("127.0.0.1", self.rest_port), rest)
        threading.Thread(target=self.rest.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> "Flyte1Upstream":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(_Admin(self.rec), server)
        agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(_Agent(self.rec), server)
        bound = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        assert bound == self.grpc_port, (bound, self.grpc_port)
        server.start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(5)
            self.server = None

    def close(self) -> None:
        self.stop()
        self.rest.shutdown()
        self.rest.server_close()


FLYTE2_SCRIPT = Path(__file__).parent / "flyte2_upstream.py"


class Flyte2Upstream:
    """flyteidl2 ProjectService over Connect (uvicorn) in the Flyte 2 venv; reports headers
    as JSON lines in `log`."""

    def __init__(self, tmp_dir: Path) -> None:
        python = os.environ.get("E2E_FLYTE2_PYTHON")
        if not python:
            pytest.fail("E2E_FLYTE2_PYTHON is not set: run the suite through tests/e2e/run.sh", pytrace=False)
        self.port = free_port()
        self.seen_file = tmp_dir / "flyte2_seen.jsonl"
        self.log_file = tmp_dir / "flyte2_upstream.log"
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [python, str(FLYTE2_SCRIPT), str(self.port), str(self.seen_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"flyte2 upstream exited:\n{self.log_file.read_text()}", pytrace=False)
            try:
                requests.get(f"{self.url}/", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"flyte2 upstream did not start:\n{self.log_file.read_text()}", pytrace=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> List[Dict[str, str]]:
        if not self.seen_file.exists():
            return []
        return [json.loads(line) for line in self.seen_file.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
