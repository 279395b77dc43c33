"""Several flyteauth replicas on one PostgreSQL database, and the tools to hurt them.

- `PgDatabase`: a throwaway database on the shared PostgreSQL server ($DATABASE_URL, default
  postgres://postgres@127.0.0.1:5432/postgres), created and dropped with `psql` (no Python
  driver needed). The shared server itself is never stopped: other tests use it.
- `TcpProxy`: a tiny asyncio TCP proxy (in its own thread) between flyteauth and PostgreSQL that
  a test can `pause()` (a black hole: connections stay open, no byte moves), `kill()` (listener
  closed, every connection reset: "connection refused") and `resume()`.
- `Replica`: a `conftest.FlyteAuthServer` whose config uses `database.url`, a secrets directory
  shared with its siblings, and `auth.authorizedUris` listing every replica's public URL.
- `Cluster`: N replicas on ports chosen up front; `start()` starts them in order (the first one
  generates the shared secrets).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Set

import pytest
import yaml

from conftest import FlyteAuthServer, free_port

ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_parts(url: str):
    u = urllib.parse.urlsplit(url)
    return (u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres", u.password or "",
            (u.path or "/postgres").lstrip("/") or "postgres")


def psql(sql: str, db: Optional[str] = None, check: bool = True) -> str:
    host, port, user, password, admin_db = _pg_parts(ADMIN_URL)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    p = subprocess.run(
        ["psql", "-h", host, "-p", str(port), "-U", user, "-d", db or admin_db, "-X", "-q", "-t", "-A",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, env=env,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"psql failed ({p.returncode}) on {sql!r}: {p.stderr.strip()}")
    return p.stdout.strip()


def require_postgres() -> None:
    """Fail loudly (never skip) when the PostgreSQL server is not there."""
    try:
        psql("SELECT 1")
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(
            f"PostgreSQL is needed at {ADMIN_URL} (set DATABASE_URL; start it with "
            f"`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): {e}",
            pytrace=False,
        )


@dataclass
class PgDatabase:
    name: str

    @property
    def host(self) -> str:
        return _pg_parts(ADMIN_URL)[0]

    @property
    def port(self) -> int:
        return _pg_parts(ADMIN_URL)[1]

    def url(self, host: Optional[str] = None, port: Optional[int] = None) -> str:
        _, _, user, password, _ = _pg_parts(ADMIN_URL)
        cred = user + (":" + urllib.parse.quote(password, safe="") if password else "")
        return f"postgres://{cred}@{host or self.host}:{port or self.port}/{self.name}"

    @classmethod
    def create(cls, prefix: str) -> "PgDatabase":
        require_postgres()
        name = f"e2e_{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10**8}".lower()
        psql(f'CREATE DATABASE "{name}"')
        return cls(name)

    def query(self, sql: str) -> str:
        return psql(sql, db=self.name)

    def terminate_connections(self) -> None:
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}' "
             "AND pid <> pg_backend_pid()")

    def drop(self) -> None:
        self.terminate_connections()
        psql(f'DROP DATABASE IF EXISTS "{self.name}"', check=False)


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """127.0.0.1:<port> -> upstream, run by an asyncio loop in a daemon thread."""

    def __init__(self, upstream_host: str, upstream_port: int, port: Optional[int] = None):
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=f"tcp-proxy-{self.port}")
        self.thread.start()
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: Set[asyncio.StreamWriter] = set()
        self._flowing: Optional[asyncio.Event] = None
        self.accepted = 0
        self._call(self._init())
        self.resume()

    # -- plumbing
    def _call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _init(self):
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _handle(self, c_reader, c_writer):
        self.accepted += 1
        self._writers.add(c_writer)
        try:
            await self._flowing.wait()
            u_reader, u_writer = await asyncio.open_connection(*self.upstream)
        except (ConnectionError, OSError, asyncio.CancelledError):
            self._writers.discard(c_writer)
            c_writer.close()
            return
        self._writers.add(u_writer)
        try:
            await asyncio.gather(self._pump(c_reader, u_writer), self._pump(u_reader, c_writer))
        finally:
            self._writers.discard(c_writer)
            self._writers.discard(u_writer)

    async def _listen(self):
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _unlisten_and_reset(self):
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            try:
                w.transport.abort()  # RST-like close
            except Exception:  # noqa: BLE001
                pass
        self._writers.clear()

    async def _set_flowing(self, on: bool):
        (self._flowing.set if on else self._flowing.clear)()

    # -- controls
    @property
    def connections(self) -> int:
        return len(self._writers)

    def resume(self) -> None:
        """Listening and forwarding."""
        self._call(self._listen())
        self._call(self._set_flowing(True))

    def pause(self) -> None:
        """Black hole: connections (old and new) stay open but no byte is forwarded."""
        self._call(self._set_flowing(False))

    def kill(self) -> None:
        """Listener closed (connection refused) and every open connection aborted."""
        self._call(self._set_flowing(True))
        self._call(self._unlisten_and_reset())

    def close(self) -> None:
        try:
            self._call(self._unlisten_and_reset())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# --------------------------------------------------------------------------- replicas


@dataclass
class Replica(FlyteAuthServer):
    """One replica: database.url, shared secrets, every replica's URL in authorizedUris."""

    name: str = "A"
    database_url: str = ""
    shared_secrets: Optional[Path] = None
    public_urls: List[str] = field(default_factory=list)
    server_extra: dict = field(default_factory=dict)

    @property
    def secrets_dir(self) -> Path:
        return self.shared_secrets or (self.tmp_dir / "secrets")

    def write_config(self) -> None:
        server = {
            "httpPort": self.port,
            "grpc": {"port": 0},
            "security": {"secure": False, "useAuth": True, "insecureCookieHeader": True},
        }
        server.update(self.server_extra)
        auth = {"authorizedUris": list(self.public_urls or [self.url])}
        auth.update(self.auth_extra)
        cfg = {
            "server": server,
            "secrets": {"secrets-prefix": str(self.secrets_dir)},
            "database": {"url": self.database_url},
            "auth": auth,
            "admin": {"domains": [{"id": d, "name": d} for d in ("development", "staging", "production")]},
        }
        self.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def kill9(self) -> int:
        """SIGKILL, no goodbye. Returns the (negative) exit code."""
        assert self.proc is not None, "not running"
        p, self.proc = self.proc, None
        p.send_signal(signal.SIGKILL)
        return p.wait(timeout=10)

    def sigterm(self):
        """SIGTERM without waiting; returns the Popen (the caller waits). The replica counts as stopped."""
        assert self.proc is not None, "not running"
        p, self.proc = self.proc, None
        p.send_signal(signal.SIGTERM)
        return p


class Cluster:
    """Replicas sharing one database URL and one secrets directory."""

    def __init__(self, tmp_dir: Path, database_url: str, n: int = 2, auth_extra: Optional[dict] = None,
                 server_extra: Optional[dict] = None):
        self.tmp_dir = tmp_dir
        self.secrets = tmp_dir / "shared-secrets"
        ports = []
        while len(ports) < n:
            p = free_port()
            if p not in ports:
                ports.append(p)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        self.replicas: List[Replica] = []
        for i, port in enumerate(ports):
            name = "ABCDEFGH"[i]
            d = tmp_dir / f"replica-{name}"
            d.mkdir(parents=True, exist_ok=True)
            self.replicas.append(
                Replica(tmp_dir=d, port=port, auth_extra=dict(auth_extra or {}), name=name,
                        database_url=database_url, shared_secrets=self.secrets, public_urls=urls,
                        server_extra=dict(server_extra or {}))
            )

    def start(self) -> "Cluster":
        for r in self.replicas:  # in order: the first one generates the shared secrets
            r.start()
        return self

    def stop(self) -> None:
        for r in self.replicas:
            try:
                r.stop()
            except Exception:  # noqa: BLE001
                pass
            if r.proc is not None:
                r.proc.kill()
