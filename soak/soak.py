#!/usr/bin/env python3
"""Soak test: two flyteauth replicas on a throwaway PostgreSQL database under a mixed load.

    tests/e2e/.venv/bin/python soak/soak.py --minutes 10        # what `make soak` runs

What it does (see soak/README.md):

1. creates a throwaway database on $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
   with `psql`;
2. starts two replicas of $FLYTEAUTH_BIN (default: target/release/flyteauth if built, else
   target/debug/flyteauth) with the same config shape and one shared secrets directory, both
   public URLs in `auth.authorizedUris`, two local users with bcrypt hashes, `database.url` on
   the throwaway database;
3. runs a few worker threads until the deadline, every operation against the replicas
   alternately: the /login form walk + PKCE authorize + code exchange (the code redeemed on the
   *other* replica), rotating refreshes (only the newest refresh token is ever used),
   client-credentials grants for flytepropeller, gRPC IdentityService.UserInfo,
   AdminService.ListProjects / RegisterProject with those tokens — and intended failures: a
   wrong password (401 form), a reused refresh token (`invalid_grant`, and the family's newest
   token is dead too), a garbage bearer (UNAUTHENTICATED);
4. samples each replica's VmRSS (and CPU time, threads, open fds) every --sample-seconds;
5. stops the replicas, drops the database, prints a summary (markdown tables) and exits 1 if any
   outcome was not the intended one, a replica died, or a replica's RSS at the end is more than
   --rss-growth-limit above its RSS one minute in.

Only the standard library and what tests/e2e/.venv already has (requests, grpcio, flyteidl,
bcrypt, PyYAML) are used. Nothing here imports the pytest suite.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import bcrypt
import grpc
import requests
import yaml
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, identity_pb2, identity_pb2_grpc

REPO_DIR = Path(__file__).resolve().parents[1]
ADMIN_DB_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

HTTP_TIMEOUT_S = 15.0
RPC_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 25.0  # the server drains in-flight calls for up to 20 s on SIGTERM
CLIENT_ID = "flytectl"
REDIRECT_URI = "http://localhost:53593/callback"
PROPELLER = "flytepropeller"

# Relative weights of the operations a worker picks from.
WEIGHTS = {
    "login": 2,
    "refresh": 5,
    "client_credentials": 3,
    "grpc_userinfo": 6,
    "grpc_list_projects": 3,
    "grpc_register_project": 1,
    "bad_password": 1,
    "refresh_reuse": 1,
    "garbage_bearer": 1,
}
# Display order; refresh_reuse also records "refresh_family_revoked" (the newest token after a reuse).
KINDS = list(WEIGHTS) + ["refresh_family_revoked"]
INTENDED_FAILURES = {"bad_password", "refresh_reuse", "refresh_family_revoked", "garbage_bearer"}


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_parts(url: str):
    u = urllib.parse.urlsplit(url)
    return (u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres", u.password or "",
            (u.path or "/postgres").lstrip("/") or "postgres")


def psql(sql: str, check: bool = True) -> str:
    host, port, user, password, admin_db = _pg_parts(ADMIN_DB_URL)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    p = subprocess.run(
        ["psql", "-h", host, "-p", str(port), "-U", user, "-d", admin_db, "-X", "-q", "-t", "-A",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=60, env=env,
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"psql failed ({p.returncode}) on {sql!r}: {p.stderr.strip()}")
    return p.stdout.strip()


class ThrowawayDb:
    def __init__(self):
        self.name = f"flyteauth_soak_{os.getpid()}_{int(time.time())}"
        self.created = False

    def url(self) -> str:
        host, port, user, password, _ = _pg_parts(ADMIN_DB_URL)
        cred = user + (":" + urllib.parse.quote(password, safe="") if password else "")
        return f"postgres://{cred}@{host}:{port}/{self.name}"

    def create(self) -> None:
        psql(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def stats(self) -> Dict[str, str]:
        """Row counts of the tables, for the report (best effort)."""
        host, port, user, password, _ = _pg_parts(ADMIN_DB_URL)
        env = dict(os.environ, PGPASSWORD=password) if password else dict(os.environ)
        q = ("SELECT relname || '=' || n_live_tup FROM pg_stat_user_tables "
             "WHERE relname NOT LIKE '%sqlx%' ORDER BY relname")
        p = subprocess.run(["psql", "-h", host, "-p", str(port), "-U", user, "-d", self.name, "-X", "-q", "-t",
                            "-A", "-c", q], capture_output=True, text=True, timeout=30, env=env)
        out = {}
        for line in p.stdout.split():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def drop(self) -> None:
        if not self.created:
            return
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}' "
             "AND pid <> pg_backend_pid()", check=False)
        psql(f'DROP DATABASE IF EXISTS "{self.name}"')
        self.created = False


# --------------------------------------------------------------------------- replicas


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class User:
    username: str
    password: str


def default_binary() -> str:
    env = os.environ.get("FLYTEAUTH_BIN")
    if env:
        return env
    for p in (REPO_DIR / "target" / "release" / "flyteauth", REPO_DIR / "target" / "debug" / "flyteauth"):
        if p.exists():
            return str(p)
    return str(REPO_DIR / "target" / "debug" / "flyteauth")


@dataclass
class Replica:
    name: str
    port: int
    dir: Path
    binary: str
    proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def log_file(self) -> Path:
        return self.dir / "flyteauth.log"

    def write_config(self, public_urls: List[str], secrets_dir: Path, db_url: str, users: List[dict],
                     token_cache_entries: Optional[int] = None) -> None:
        cfg = {
            "server": {
                "httpPort": self.port,
                "grpc": {"port": 0},
                "security": {"secure": False, "useAuth": True, "insecureCookieHeader": True},
            },
            "secrets": {"secrets-prefix": str(secrets_dir)},
            "database": {"url": db_url},
            "auth": {
                "authorizedUris": list(public_urls),
                "userAuth": {
                    "localUsers": users,
                    # The intended wrong passwords all come from 127.0.0.1; with the default
                    # (10 per 15 min per address) the address would be locked after a minute and
                    # every later login answered 429. The limiter itself is tested in tests/e2e.
                    "loginRateLimit": {"maxFailures": 1000000, "window": "15m"},
                },
                # op_refresh_reuse expects a reuse right after a rotation to revoke the family;
                # the default grace period (5 s) would let it through.
                "appAuth": {"selfAuthServer": {"refreshTokenGracePeriod": "0s"}},
            },
            "admin": {"domains": [{"id": d, "name": d} for d in ("development", "staging", "production")]},
        }
        if token_cache_entries is not None:  # diagnostics only; the default run keeps the server default
            cfg["auth"]["tokenCache"] = {"maxEntries": token_cache_entries}
        self.config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self) -> None:
        logf = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_file), "--log-json"],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(self.dir),
        )
        logf.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited with {self.proc.returncode} during start-up:\n"
                                   + self.log_tail())
            try:
                r = requests.get(f"{self.url}/healthcheck", timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"replica {self.name} not healthy within {STARTUP_TIMEOUT_S}s ({last}):\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> Optional[int]:
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        return p.returncode

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def log_summary(self) -> Tuple[Dict[str, int], Dict[str, int]]:
        """(lines by level, WARN/ERROR lines by level + target + event or message)."""
        levels: Dict[str, int] = collections.Counter()
        notable: Dict[str, int] = collections.Counter()
        try:
            with open(self.log_file, errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        levels["(start-up text)"] += 1
                        continue
                    level = str(rec.get("level", "?")).upper()
                    levels[level] += 1
                    if level in ("WARN", "ERROR"):
                        fields = rec.get("fields") or {}
                        what = fields.get("event") or str(fields.get("message", ""))[:80]
                        notable[f"{level} {rec.get('target', '?')}: {what}"] += 1
        except OSError:
            pass
        return dict(levels), dict(notable)

    def metrics(self, timeout: float = 5) -> Dict[str, float]:
        """A few gauges/counters from /metrics, summed over labels."""
        out: Dict[str, float] = collections.defaultdict(float)
        try:
            text = requests.get(f"{self.url}/metrics", timeout=timeout).text
        except requests.RequestException:
            return {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if name in ("flyteauth_token_cache_entries", "flyteauth_revoked_tokens", "flyteauth_tokens_issued_total",
                        "flyteauth_token_cache_hits", "flyteauth_token_cache_misses"):
                try:
                    out[name] += float(value)
                except ValueError:
                    pass
            elif name == "flyteauth_authn_total":
                try:
                    outcome = re.search(r'outcome="([^"]*)"', labels)
                    out[f"authn_{outcome.group(1) if outcome else '?'}"] += float(value)
                except ValueError:
                    pass
        return dict(out)


# --------------------------------------------------------------------------- /proc sampling


def proc_sample(pid: int) -> Optional[dict]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = int(re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)
    return {"rss_kb": rss, "cpu_s": ticks / os.sysconf("SC_CLK_TCK"), "threads": threads, "fds": fds}


# --------------------------------------------------------------------------- HTML / PKCE


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: List[Tuple[str, Dict[str, str]]] = []
        self._cur: Optional[Dict[str, str]] = None

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._cur = {}
            self.forms.append((a.get("action", ""), self._cur))
        elif tag == "input" and self._cur is not None and a.get("name"):
            self._cur[a["name"]] = a.get("value", "")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "form":
            self._cur = None


def login_form(html: str) -> Tuple[str, Dict[str, str]]:
    p = _FormParser()
    p.feed(html)
    for action, inputs in p.forms:
        if "username" in inputs and "password" in inputs:
            return action, dict(inputs)
    raise Unexpected(f"no login form in page: {html[:300]!r}")


def pkce_pair() -> Tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# --------------------------------------------------------------------------- load


class Unexpected(Exception):
    """An outcome that is not the intended one (counted as an error)."""


def _short(r: requests.Response) -> str:
    return f"HTTP {r.status_code} {r.text[:200]!r}"


def oauth_error(r: requests.Response) -> Optional[str]:
    try:
        return r.json().get("error")
    except ValueError:
        return None


@dataclass
class Chain:
    """One refresh-token family: only `refresh_token` (the newest) is ever presented, except by
    the intended reuse, which presents `previous`."""

    refresh_token: str
    access_token: str
    previous: Optional[str] = None
    rotations: int = 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latencies: Dict[str, List[float]] = collections.defaultdict(list)
        self.per_replica: collections.Counter = collections.Counter()
        self.errors: List[str] = []
        self.error_count = 0
        self.total = 0

    def record(self, kind: str, replica: str, outcome: str, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.outcomes[kind][outcome] += 1
            self.latencies[kind].append(seconds)
            self.per_replica[replica] += 1
            self.total += 1
            if outcome == "error":
                self.error_count += 1
                if len(self.errors) < 50:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {kind}@{replica}: {detail}")


class Worker(threading.Thread):
    def __init__(self, idx: int, replicas: List[Replica], users: List[User], propeller_secret: str,
                 stats: Stats, deadline: float, stop: threading.Event, run_id: str, think_s: float):
        super().__init__(name=f"soak-worker-{idx}", daemon=True)
        self.idx = idx
        self.replicas = replicas
        self.users = users
        self.propeller_secret = propeller_secret
        self.stats = stats
        self.deadline = deadline
        self.stop_event = stop
        self.run_id = run_id
        self.think_s = think_s
        self.rng = random.Random(idx * 7919 + 17)
        self.turn = idx  # alternates replicas: op n goes to replicas[n % 2]
        self.http = [self._session() for _ in replicas]
        self.channels = [grpc.insecure_channel(r.endpoint) for r in replicas]
        self.chain: Optional[Chain] = None
        self.propeller_token: Optional[str] = None
        self.projects = 0
        self.crashed: Optional[str] = None

    @staticmethod
    def _session() -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        return s

    # ---- plumbing
    def next_replica(self) -> int:
        i = self.turn % len(self.replicas)
        self.turn += 1
        return i

    def timed(self, kind: str, ri: int, fn) -> None:
        t0 = time.perf_counter()
        try:
            outcome = fn(ri) or "ok"
            detail = ""
        except Unexpected as e:
            outcome, detail = "error", str(e)
        except grpc.RpcError as e:
            outcome, detail = "error", f"gRPC {e.code()}: {e.details()}"[:300]
        except requests.RequestException as e:
            outcome, detail = "error", f"{type(e).__name__}: {e}"[:300]
        self.stats.record(kind, self.replicas[ri].name, outcome, time.perf_counter() - t0, detail)

    def run(self) -> None:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                kind = self.rng.choices(kinds, weights)[0]
                getattr(self, "op_" + kind)()
                if self.think_s:
                    time.sleep(self.think_s)
        except Exception:  # noqa: BLE001 - a bug in the soak itself: report, never hang
            self.crashed = traceback.format_exc()
        finally:
            for ch in self.channels:
                ch.close()
            for s in self.http:
                s.close()

    # ---- building blocks
    def _token(self, ri: int, data: dict, auth=None) -> requests.Response:
        return self.http[ri].post(f"{self.replicas[ri].url}/oauth2/token", data=data, auth=auth,
                                  allow_redirects=False, timeout=HTTP_TIMEOUT_S)

    def _login_walk(self, ri: int, user: User) -> Tuple[str, str]:
        """A fresh browser: /oauth2/authorize -> /login form -> POST -> authorize -> redirect URI.
        Returns (code, verifier)."""
        rep = self.replicas[ri]
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        url = f"{rep.url}/oauth2/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
            "scope": "all offline", "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        with self._session() as browser:
            current, method, data, posted = url, "GET", None, False
            for _ in range(8):
                if method == "GET":
                    r = browser.get(current, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
                else:
                    r = browser.post(current, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
                if r.status_code in (302, 303, 307):
                    nxt = urllib.parse.urljoin(current, r.headers.get("Location", ""))
                    if not nxt.startswith(rep.url + "/"):
                        if not nxt.startswith(REDIRECT_URI + "?"):
                            raise Unexpected(f"authorize left the server for {nxt[:200]}")
                        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(nxt).query))
                        if q.get("state") != state or "code" not in q:
                            raise Unexpected(f"callback without code/state: {nxt[:200]}")
                        return q["code"], verifier
                    current, method, data = nxt, "GET", None
                    continue
                if r.status_code == 200 and "text/html" in r.headers.get("Content-Type", "") and not posted:
                    action, fields = login_form(r.text)
                    fields.update(username=user.username, password=user.password)
                    current, method, data, posted = urllib.parse.urljoin(current, action or current), "POST", fields, True
                    continue
                raise Unexpected(f"login walk at {current[:120]}: {_short(r)}")
        raise Unexpected("login walk: too many hops")

    def _new_chain(self, ri: int) -> Chain:
        """Login on replica ri, code redeemed on the other replica."""
        code, verifier = self._login_walk(ri, self.rng.choice(self.users))
        other = (ri + 1) % len(self.replicas)
        r = self._token(other, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                "client_id": CLIENT_ID, "code_verifier": verifier})
        if r.status_code != 200:
            raise Unexpected(f"code exchange: {_short(r)}")
        body = r.json()
        if not body.get("access_token") or not body.get("refresh_token"):
            raise Unexpected(f"code exchange without tokens: {r.text[:200]}")
        return Chain(refresh_token=body["refresh_token"], access_token=body["access_token"])

    def _refresh(self, ri: int, chain: Chain) -> None:
        r = self._token(ri, {"grant_type": "refresh_token", "refresh_token": chain.refresh_token,
                             "client_id": CLIENT_ID})
        if r.status_code != 200:
            self.chain = None  # unknown state: start a new family
            raise Unexpected(f"refresh (rotation {chain.rotations}): {_short(r)}")
        body = r.json()
        if not body.get("refresh_token") or body["refresh_token"] == chain.refresh_token:
            self.chain = None
            raise Unexpected(f"refresh did not rotate: {r.text[:200]}")
        chain.previous, chain.refresh_token = chain.refresh_token, body["refresh_token"]
        chain.access_token = body["access_token"]
        chain.rotations += 1

    def _bearer(self) -> Optional[str]:
        choices = [t for t in (self.chain.access_token if self.chain else None, self.propeller_token) if t]
        return self.rng.choice(choices) if choices else None

    def _ensure_bearer(self) -> str:
        tok = self._bearer()
        if tok is None:
            self.op_client_credentials()
            tok = self._bearer()
        if tok is None:
            raise Unexpected("no token available (client credentials failed)")
        return tok

    @staticmethod
    def _md(tok: str):
        return (("flyte-authorization", f"Bearer {tok}"),)

    # ---- operations
    def op_login(self) -> None:
        def f(ri):
            self.chain = None
            self.chain = self._new_chain(ri)
        self.timed("login", self.next_replica(), f)

    def op_refresh(self) -> None:
        if self.chain is None or self.chain.rotations >= 50:
            return self.op_login()  # a family lives for at most 50 rotations, then a new login
        self.timed("refresh", self.next_replica(), lambda ri: self._refresh(ri, self.chain))

    def op_client_credentials(self) -> None:
        def f(ri):
            r = self._token(ri, {"grant_type": "client_credentials", "scope": "all"},
                            auth=(PROPELLER, self.propeller_secret))
            if r.status_code != 200 or not r.json().get("access_token"):
                raise Unexpected(f"client_credentials: {_short(r)}")
            if "refresh_token" in r.json():
                raise Unexpected("client_credentials returned a refresh token")
            self.propeller_token = r.json()["access_token"]
        self.timed("client_credentials", self.next_replica(), f)

    def op_grpc_userinfo(self) -> None:
        tok = self._ensure_bearer()

        def f(ri):
            resp = identity_pb2_grpc.IdentityServiceStub(self.channels[ri]).UserInfo(
                identity_pb2.UserInfoRequest(), metadata=self._md(tok), timeout=RPC_TIMEOUT_S)
            if not resp.subject:
                raise Unexpected("UserInfo without subject")
        self.timed("grpc_userinfo", self.next_replica(), f)

    def op_grpc_list_projects(self) -> None:
        tok = self._ensure_bearer()

        def f(ri):
            admin_pb2_grpc.AdminServiceStub(self.channels[ri]).ListProjects(
                project_pb2.ProjectListRequest(limit=20), metadata=self._md(tok), timeout=RPC_TIMEOUT_S)
        self.timed("grpc_list_projects", self.next_replica(), f)

    def op_grpc_register_project(self) -> None:
        tok = self._ensure_bearer()
        self.projects += 1
        pid = f"soak-{self.run_id}-w{self.idx}-{self.projects}"

        def f(ri):
            admin_pb2_grpc.AdminServiceStub(self.channels[ri]).RegisterProject(
                project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id=pid, name=pid, description="soak")),
                metadata=self._md(tok), timeout=RPC_TIMEOUT_S)
        self.timed("grpc_register_project", self.next_replica(), f)

    def op_bad_password(self) -> str:
        def f(ri):
            rep = self.replicas[ri]
            with self._session() as browser:
                r = browser.get(f"{rep.url}/login", allow_redirects=False, timeout=HTTP_TIMEOUT_S)
                if r.status_code != 200:
                    raise Unexpected(f"GET /login: {_short(r)}")
                action, fields = login_form(r.text)
                user = self.rng.choice(self.users)
                fields.update(username=user.username, password=user.password + "-wrong")
                r = browser.post(urllib.parse.urljoin(r.url, action or "/login"), data=fields,
                                 allow_redirects=False, timeout=HTTP_TIMEOUT_S)
                if r.status_code != 401 or "flyte_session" in browser.cookies:
                    raise Unexpected(f"wrong password answered {_short(r)}")
            return "intended"
        self.timed("bad_password", self.next_replica(), f)

    def op_refresh_reuse(self) -> None:
        if self.chain is None or self.chain.previous is None:
            return self.op_refresh()  # build a family with one rotation first
        chain, self.chain = self.chain, None  # the family dies here; the next refresh logs in anew

        def reuse(ri):
            r = self._token(ri, {"grant_type": "refresh_token", "refresh_token": chain.previous, "client_id": CLIENT_ID})
            if r.status_code != 400 or oauth_error(r) != "invalid_grant":
                raise Unexpected(f"reused refresh token answered {_short(r)}")
            return "intended"

        def newest(ri):
            r = self._token(ri, {"grant_type": "refresh_token", "refresh_token": chain.refresh_token,
                                 "client_id": CLIENT_ID})
            if r.status_code != 400 or oauth_error(r) != "invalid_grant":
                raise Unexpected(f"newest refresh token after a reuse answered {_short(r)}")
            return "intended"
        self.timed("refresh_reuse", self.next_replica(), reuse)
        self.timed("refresh_family_revoked", self.next_replica(), newest)

    def op_garbage_bearer(self) -> None:
        garbage = self.rng.choice([
            secrets.token_urlsafe(32),
            "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9." + secrets.token_urlsafe(60) + "." + secrets.token_urlsafe(40),
            "not a token",
        ])

        def f(ri):
            try:
                identity_pb2_grpc.IdentityServiceStub(self.channels[ri]).UserInfo(
                    identity_pb2.UserInfoRequest(), metadata=self._md(garbage), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return "intended"
                raise Unexpected(f"garbage bearer: {e.code()} {e.details()}")
            raise Unexpected("garbage bearer accepted")
        self.timed("garbage_bearer", self.next_replica(), f)


# --------------------------------------------------------------------------- sampler


class Sampler(threading.Thread):
    def __init__(self, replicas: List[Replica], stats: Stats, interval: float, t0: float, stop: threading.Event):
        super().__init__(name="soak-sampler", daemon=True)
        self.replicas, self.stats, self.interval, self.t0, self.stop_event = replicas, stats, interval, t0, stop
        self.samples: List[dict] = []  # {t, ops, errors, <name>: proc_sample}
        self.dead: Dict[str, str] = {}

    def sample(self) -> None:
        row = {"t": round(time.monotonic() - self.t0, 1), "ops": self.stats.total, "errors": self.stats.error_count}
        for r in self.replicas:
            s = proc_sample(r.proc.pid) if r.alive() else None
            if s is None and r.name not in self.dead:
                self.dead[r.name] = f"replica {r.name} not running at t={row['t']}s (exit code {r.proc.poll()})"
            if s is not None:  # two in-memory structures that grow with distinct tokens
                m = r.metrics(timeout=3)
                s["cache"] = m.get("flyteauth_token_cache_entries")
                s["revoked"] = m.get("flyteauth_revoked_tokens")
            row[r.name] = s
        self.samples.append(row)

    def run(self) -> None:
        next_t = time.monotonic()
        last_print = -1
        while not self.stop_event.is_set():
            self.sample()
            row = self.samples[-1]
            minute = int(row["t"] // 60)
            if minute != last_print:
                last_print = minute
                rss = ", ".join(f"{r.name} {row[r.name]['rss_kb'] / 1024:.1f} MiB" if row[r.name] else f"{r.name} dead"
                                for r in self.replicas)
                log(f"t={row['t']:.0f}s ops={row['ops']} errors={row['errors']} RSS: {rss}")
            next_t += self.interval
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))


# --------------------------------------------------------------------------- report


def pct(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))  # nearest rank
    return v[k]


def mib(kb: Optional[float]) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def rss_verdicts(replicas: List[Replica], samples: List[dict], limit: float) -> Tuple[List[dict], List[str]]:
    rows, problems = [], []
    for r in replicas:
        pts = [(s["t"], s[r.name]["rss_kb"]) for s in samples if s.get(r.name)]
        if not pts:
            problems.append(f"no RSS samples for replica {r.name}")
            continue
        start, end, peak = pts[0][1], pts[-1][1], max(v for _, v in pts)
        after = [v for t, v in pts if t >= 60.0]
        base = after[0] if after else start
        growth = (end - base) / base if base else 0.0
        rows.append({"replica": r.name, "start_kb": start, "base_kb": base, "max_kb": peak, "end_kb": end,
                     "growth": growth})
        if after and growth > limit:
            problems.append(f"replica {r.name}: RSS grew {growth * 100:.0f}% after the first minute "
                            f"({mib(base)} -> {mib(end)} MiB, limit {limit * 100:.0f}%)")
    return rows, problems


def render_report(args, meta: dict, stats: Stats, sampler: Sampler, replicas: List[Replica], rss_rows: List[dict],
                  problems: List[str], extra: dict) -> str:
    out = []
    w = out.append
    w(f"## flyteauth soak: {meta['verdict']}\n")
    w(f"- date: {meta['date']}  duration: {meta['elapsed_s']:.0f} s of load ({args.minutes:g} min requested), "
      f"{args.workers} workers")
    w(f"- binary: `{meta['binary']}` (mtime {meta['binary_mtime']})")
    w(f"- machine: {meta['machine']}")
    w(f"- replicas: {', '.join(f'{r.name} {r.url}' for r in replicas)}; database `{meta['db']}` (dropped)")
    w(f"- total operations: {stats.total} ({stats.total / max(meta['elapsed_s'], 1):.1f}/s), "
      f"by replica: {', '.join(f'{k} {v}' for k, v in sorted(stats.per_replica.items()))}; "
      f"unintended errors: {stats.error_count}\n")
    w("| operation | count | ok | intended failure | error | p50 ms | p99 ms | max ms |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in KINDS:
        c = stats.outcomes.get(k, collections.Counter())
        lat = stats.latencies.get(k, [])
        n = sum(c.values())
        if not n:
            w(f"| {k} | 0 | | | | | | |")
            continue
        w(f"| {k} | {n} | {c['ok']} | {c['intended']} | {c['error']} | {pct(lat, 50) * 1000:.1f} | "
          f"{pct(lat, 99) * 1000:.1f} | {max(lat) * 1000:.1f} |")
    w("")
    w("| replica | RSS start MiB | RSS at 1 min MiB | RSS max MiB | RSS end MiB | growth after 1 min | CPU s | threads end | fds end |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rss_rows:
        last = next((s[row["replica"]] for s in reversed(sampler.samples) if s.get(row["replica"])), {})
        w(f"| {row['replica']} | {mib(row['start_kb'])} | {mib(row['base_kb'])} | {mib(row['max_kb'])} | "
          f"{mib(row['end_kb'])} | {row['growth'] * 100:+.1f}% | {last.get('cpu_s', 0):.1f} | "
          f"{last.get('threads', '-')} | {last.get('fds', '-')} |")
    w("")
    w("RSS over time (MiB; every sample; CPU = server CPU seconds used in the interval; cache = verified-token "
      "cache entries, revoked = in-memory revoked-token ids, both from /metrics):\n")
    names = [r.name for r in replicas]
    w("| t s | ops | " + " | ".join(f"{n} RSS | {n} CPU | {n} cache | {n} revoked" for n in names) + " |")
    w("|---:|---:|" + "---:|---:|---:|---:|" * len(names))
    prev = {}
    for s in sampler.samples:
        cells = []
        for n in names:
            cur = s.get(n)
            if cur is None:
                cells += ["dead", "-", "-", "-"]
                continue
            cpu = cur["cpu_s"] - prev[n] if n in prev else 0.0
            prev[n] = cur["cpu_s"]
            gauge = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            cells += [mib(cur["rss_kb"]), f"{cpu:.1f}", gauge(cur.get("cache")), gauge(cur.get("revoked"))]
        w(f"| {s['t']:.0f} | {s['ops']} | " + " | ".join(cells) + " |")
    w("")
    if extra.get("metrics"):
        w("Server counters at the end (/metrics, summed over labels):\n")
        keys = sorted({k for m in extra["metrics"].values() for k in m})
        w("| metric | " + " | ".join(names) + " |")
        w("|---|" + "---:|" * len(names))
        for k in keys:
            w(f"| {k} | " + " | ".join(f"{extra['metrics'].get(n, {}).get(k, 0):.0f}" for n in names) + " |")
        w("")
    if extra.get("log_levels"):
        w("Server log lines by level: " + "; ".join(
            f"{n}: " + ", ".join(f"{k} {v}" for k, v in sorted(extra["log_levels"][n].items())) for n in names))
    if extra.get("log_notable"):
        keys = sorted({k for m in extra["log_notable"].values() for k in m})
        if keys:
            w("\nServer WARN/ERROR lines (level, target: event or message):\n")
            w("| line | " + " | ".join(names) + " |")
            w("|---|" + "---:|" * len(names))
            for k in keys:
                w(f"| {k} | " + " | ".join(str(extra["log_notable"].get(n, {}).get(k, 0)) for n in names) + " |")
            w("")
    if extra.get("db_rows"):
        w("Database rows at the end: " + ", ".join(f"{k} {v}" for k, v in extra["db_rows"].items()))
    w("")
    if stats.errors:
        w(f"First unintended errors ({len(stats.errors)} shown of {stats.error_count}):\n")
        w("```")
        out.extend(stats.errors)
        w("```")
    if problems:
        w("Problems:\n")
        for p in problems:
            w(f"- {p}")
    return "\n".join(out) + "\n"


def machine_description() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem} RAM, "
            f"load average at start {load}, soak niceness {os.nice(0)}")


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the load phase (default 10)")
    ap.add_argument("--workers", type=int, default=4, help="load threads (default 4)")
    ap.add_argument("--bin", default=default_binary(), help="flyteauth binary (default $FLYTEAUTH_BIN, "
                    "else target/release/flyteauth if it exists, else target/debug/flyteauth)")
    ap.add_argument("--sample-seconds", type=float, default=10.0, help="RSS sampling interval (default 10)")
    ap.add_argument("--rss-growth-limit", type=float, default=0.5,
                    help="fail when end RSS > (1 + this) x RSS one minute in (default 0.5)")
    ap.add_argument("--bcrypt-cost", type=int, default=10, help="cost of the local users' bcrypt hashes (default 10)")
    ap.add_argument("--token-cache-entries", type=int, default=None,
                    help="set auth.tokenCache.maxEntries (diagnostics; default: the server's default)")
    ap.add_argument("--think-ms", type=float, default=0.0, help="pause after every operation per worker")
    ap.add_argument("--report", help="also write the markdown summary to this file")
    ap.add_argument("--json", help="also write raw results (samples, counts, latencies percentiles) as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    args = ap.parse_args()

    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    if not os.path.exists(args.bin):
        print(f"flyteauth binary not found: {args.bin} (build it or set FLYTEAUTH_BIN)", file=sys.stderr)
        return 2

    # SIGTERM (e.g. from a CI timeout) unwinds through the cleanup below like ctrl-c does.
    def on_sigterm(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_sigterm)

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "binary": args.bin,
        "binary_mtime": dt.datetime.fromtimestamp(os.path.getmtime(args.bin)).strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="flyteauth-soak-"))
    db = ThrowawayDb()
    meta["db"] = db.name
    replicas: List[Replica] = []
    stats = Stats()
    stop = threading.Event()
    sampler: Optional[Sampler] = None
    workers: List[Worker] = []
    problems: List[str] = []
    extra: dict = {}
    t_load = time.monotonic()
    interrupted = False
    try:
        log(f"binary {args.bin}; tmp {tmp}; database {db.name}")
        db.create()
        users = [User("alice", "alice-" + secrets.token_urlsafe(12)), User("bob", "bob-" + secrets.token_urlsafe(12))]
        user_cfg = [{"username": u.username,
                     "passwordHash": bcrypt.hashpw(u.password.encode(), bcrypt.gensalt(rounds=args.bcrypt_cost)).decode(),
                     "name": u.username.title(), "email": f"{u.username}@example.com", "groups": ["soak"]}
                    for u in users]
        ports: List[int] = []
        while len(ports) < 2:
            p = free_port()
            if p not in ports:
                ports.append(p)
        secrets_dir = tmp / "shared-secrets"
        for name, port in zip("AB", ports):
            d = tmp / f"replica-{name}"
            d.mkdir()
            replicas.append(Replica(name=name, port=port, dir=d, binary=args.bin))
        urls = [r.url for r in replicas]
        for r in replicas:
            r.write_config(urls, secrets_dir, db.url(), user_cfg, args.token_cache_entries)
        for r in replicas:  # in order: the first one generates the shared secrets and runs the migrations
            r.start()
            log(f"replica {r.name} up on {r.url} (pid {r.proc.pid})")
        propeller_secret = (secrets_dir / "flytepropeller_client_secret").read_text().strip()

        run_id = secrets.token_hex(3)
        t_load = time.monotonic()
        deadline = t_load + args.minutes * 60.0
        sampler = Sampler(replicas, stats, args.sample_seconds, t_load, stop)
        sampler.start()
        workers = [Worker(i, replicas, users, propeller_secret, stats, deadline, stop, run_id, args.think_ms / 1000.0)
                   for i in range(args.workers)]
        for wkr in workers:
            wkr.start()
        log(f"load: {args.workers} workers for {args.minutes:g} min against {', '.join(urls)}")
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if sampler.dead:
                problems.extend(sampler.dead.values())
                log("a replica died; stopping the load")
                stop.set()
    except KeyboardInterrupt:
        interrupted = True
        problems.append("interrupted")
        log("interrupted; cleaning up")
    except Exception as e:  # noqa: BLE001
        problems.append(f"set-up failed: {e}")
        log(f"set-up failed: {e}")
    finally:
        elapsed = time.monotonic() - t_load
        stop.set()
        hard = time.monotonic() + HTTP_TIMEOUT_S * 3 + 5  # every call has a timeout; this is a backstop
        for wkr in workers:
            wkr.join(max(0.1, hard - time.monotonic()))
            if wkr.is_alive():
                problems.append(f"{wkr.name} still running after the deadline")
            if wkr.crashed:
                problems.append(f"{wkr.name} crashed: {wkr.crashed.strip().splitlines()[-1]}")
                log(f"{wkr.name} crashed:\n{wkr.crashed}")
        if sampler is not None:
            sampler.join(5)
            sampler.sample()  # the final sample, right at the end of the load
            for msg in sampler.dead.values():
                if msg not in problems:
                    problems.append(msg)
        if replicas and all(r.alive() for r in replicas):
            extra["metrics"] = {r.name: r.metrics() for r in replicas}
        try:
            if db.created:
                extra["db_rows"] = db.stats()
        except Exception:  # noqa: BLE001
            pass
        for r in replicas:
            rc = r.stop()
            if rc not in (0, None):
                problems.append(f"replica {r.name} exited with {rc} on SIGTERM")
        if replicas:
            summaries = {r.name: r.log_summary() for r in replicas}
            extra["log_levels"] = {n: v[0] for n, v in summaries.items()}
            extra["log_notable"] = {n: v[1] for n, v in summaries.items()}
        try:
            db.drop()
        except Exception as e:  # noqa: BLE001
            problems.append(f"could not drop database {db.name}: {e}")

    meta["elapsed_s"] = elapsed
    rss_rows, rss_problems = rss_verdicts(replicas, sampler.samples if sampler else [], args.rss_growth_limit)
    problems.extend(rss_problems)
    if stats.error_count:
        problems.insert(0, f"{stats.error_count} unintended outcome(s)")
    if stats.total == 0:
        problems.append("no operation ran")
    failed = bool(problems)
    meta["verdict"] = "FAIL" if failed else "PASS"
    dummy_sampler = sampler or Sampler([], stats, 1, 0, stop)
    report = render_report(args, meta, stats, dummy_sampler, replicas, rss_rows, problems, extra)
    print()
    print(report)
    if args.report:
        Path(args.report).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "meta": meta, "problems": problems, "samples": dummy_sampler.samples,
            "outcomes": {k: dict(v) for k, v in stats.outcomes.items()},
            "latency_ms": {k: {"n": len(v), "p50": pct(v, 50) * 1000, "p99": pct(v, 99) * 1000, "max": max(v) * 1000}
                           for k, v in stats.latencies.items() if v},
            "rss": rss_rows, "extra": extra, "errors": stats.errors,
        }, indent=2, default=str))
    if failed or args.keep:
        log(f"replica configs and logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
