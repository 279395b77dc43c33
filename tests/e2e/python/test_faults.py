"""Faults: the database goes away (through a TCP proxy this test controls, never by stopping the
shared PostgreSQL server), graceful shutdown with calls in flight, and bad input.

Every gRPC call carries a deadline (15 s) and the assertions name the exact status code, so a
hang shows up as DEADLINE_EXCEEDED and a wrong mapping as UNKNOWN/INTERNAL, never as a stuck test.
"""

from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import requests
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc

import oauth
from helpers import mint_token
from oauth import (
    ALICE,
    assert_oauth_error,
    assert_token_response,
    authorize_params,
    authorize_url,
    generated_propeller_secret,
    logged_in_session,
    pkce_pair,
    refresh,
)
from replica_util import T, http_session, list_project_ids, md, user_info, user_tokens, wait_until
from replicas import Cluster, PgDatabase, TcpProxy, psql

pytestmark = pytest.mark.timeout(120)

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE = 15.0          # client deadline on every call that might hang
BOUND = 12.0             # the server must answer within this (its pool acquire timeout is 5 s)


@pytest.fixture(scope="module")
def pgdb():
    db = PgDatabase.create("faults")
    yield db
    db.drop()


def _one_replica(server_factory, tmp_path, url):
    c = Cluster(tmp_path, url, n=1, auth_extra=oauth.auth_extra())
    server_factory.servers.extend(c.replicas)
    c.start()
    return c


@pytest.fixture
def proxied(server_factory, pgdb, tmp_path):
    """(replica, proxy): one replica whose database.url goes through a TcpProxy to PostgreSQL."""
    proxy = TcpProxy(pgdb.host, pgdb.port)
    c = _one_replica(server_factory, tmp_path, pgdb.url(host="127.0.0.1", port=proxy.port))
    yield c.replicas[0], proxy
    proxy.resume()  # let a graceful stop finish
    c.stop()
    proxy.close()


@pytest.fixture
def replica(server_factory, pgdb, tmp_path):
    c = _one_replica(server_factory, tmp_path, pgdb.url())
    yield c.replicas[0]
    c.stop()


def list_projects(server, tok, deadline=DEADLINE):
    """(code, details, seconds) of a ListProjects call with a client deadline."""
    t0 = time.monotonic()
    with grpc.insecure_channel(server.endpoint) as ch:
        try:
            admin_pb2_grpc.AdminServiceStub(ch).ListProjects(
                project_pb2.ProjectListRequest(limit=10), metadata=md(tok), timeout=deadline)
            return OK, "", time.monotonic() - t0
        except grpc.RpcError as e:
            return e.code(), e.details() or "", time.monotonic() - t0


def _assert_unavailable(res, what):
    code, details, took = res
    assert code == UNAVAILABLE, f"{what}: expected UNAVAILABLE, got {code} {details!r} after {took:.1f}s"
    assert took < BOUND, f"{what}: UNAVAILABLE only after {took:.1f}s (bound {BOUND}s)"
    print(f"{what}: UNAVAILABLE {details!r} after {took:.2f}s")


def _recovers(server, tok, within=15.0):
    res, took = wait_until(lambda: list_projects(server, tok, deadline=5)[0] == OK, timeout=within, interval=0.5)
    assert took is not None, f"no recovery within {within}s: last {list_projects(server, tok, deadline=5)}"
    return took


# --------------------------------------------------------------------------- database unavailable


def test_database_refused_then_back(proxied):
    """Proxy killed: every DB connection reset, new ones refused."""
    srv, proxy = proxied
    tok = mint_token(srv)
    assert list_projects(srv, tok)[0] == OK
    sess = logged_in_session(srv, ALICE)
    rt = user_tokens(srv, sess=sess)["refresh_token"]

    proxy.kill()
    _assert_unavailable(list_projects(srv, tok), "ListProjects, DB refused (1st)")
    _assert_unavailable(list_projects(srv, tok), "ListProjects, DB refused (2nd)")
    # No DB needed: signature + claims only.
    assert user_info(srv, tok) == (OK, "alice")
    # REST mirror: 503, JSON.
    r = requests.get(f"{srv.url}/api/v1/projects", headers={"Authorization": f"Bearer {tok}"}, timeout=DEADLINE)
    assert r.status_code == 503, (r.status_code, r.text[:300])
    # Token endpoint with a store-backed grant: RFC 6749 temporarily_unavailable (503), JSON, no-store.
    assert_oauth_error(refresh(srv, rt), "temporarily_unavailable", 503)
    # Session-backed pages: 503, never 500, never a login loop that drops the session.
    verifier, challenge = pkce_pair()
    r = sess.get(authorize_url(srv, **authorize_params(challenge=challenge)), allow_redirects=False, timeout=DEADLINE)
    assert r.status_code == 503, (r.status_code, r.headers.get("Location"), r.text[:300])
    # Liveness is not readiness: /healthcheck still answers.
    assert requests.get(f"{srv.url}/healthcheck", timeout=5).status_code == 200

    proxy.resume()
    took = _recovers(srv, tok)
    print(f"recovered {took:.1f}s after the database came back")
    # The refresh token that met the outage was not burnt by it.
    assert_token_response(refresh(srv, rt), refresh=True)


def test_database_black_holed_then_back(proxied):
    """Proxy paused: connections stay open, nothing moves (a network partition)."""
    srv, proxy = proxied
    tok = mint_token(srv)
    assert list_projects(srv, tok)[0] == OK  # the pool holds an idle connection now

    proxy.pause()
    _assert_unavailable(list_projects(srv, tok), "ListProjects, DB black-holed (1st)")
    _assert_unavailable(list_projects(srv, tok), "ListProjects, DB black-holed (2nd)")
    assert user_info(srv, tok) == (OK, "alice")

    proxy.resume()
    took = _recovers(srv, tok)
    print(f"recovered {took:.1f}s after the partition healed")


def test_database_black_holed_during_concurrent_load(proxied):
    """A partition while many calls hold connections: every call ends, each UNAVAILABLE or OK."""
    srv, proxy = proxied
    tok = mint_token(srv)
    assert list_projects(srv, tok)[0] == OK
    with ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(list_projects, srv, tok) for _ in range(32)]
        time.sleep(0.05)
        proxy.pause()
        results = [f.result(timeout=DEADLINE + 10) for f in futs]
    bad = [r for r in results if r[0] not in (OK, UNAVAILABLE) or r[2] >= BOUND]
    assert not bad, f"{len(bad)}/32 calls ended badly (code, details, seconds): {bad[:5]}"
    proxy.resume()
    _recovers(srv, tok)


def test_database_connections_terminated_by_admin(proxied, pgdb):
    """pg_terminate_backend on every connection of the replica (a failover, an admin's kill)."""
    srv, proxy = proxied
    tok = mint_token(srv)
    with ThreadPoolExecutor(4) as ex:  # several pooled connections
        assert all(r[0] == OK for r in ex.map(lambda _: list_projects(srv, tok), range(8)))
    pgdb.terminate_connections()
    results = [list_projects(srv, tok) for _ in range(4)]
    assert all(r[0] in (OK, UNAVAILABLE) for r in results), results
    assert results[-1][0] == OK, f"not recovered after 4 calls: {results}"


def test_database_renamed_away_then_back(server_factory, tmp_path):
    """The database disappears (renamed) while the replica runs: UNAVAILABLE, then recovery."""
    db = PgDatabase.create("renamed")
    gone = db.name + "_gone"
    try:
        c = _one_replica(server_factory, tmp_path, db.url())
        srv = c.replicas[0]
        tok = mint_token(srv)
        assert list_projects(srv, tok)[0] == OK
        db.terminate_connections()
        psql(f'ALTER DATABASE "{db.name}" RENAME TO "{gone}"')
        try:
            _assert_unavailable(list_projects(srv, tok), "ListProjects, database renamed away")
            assert user_info(srv, tok) == (OK, "alice")
        finally:
            psql(f'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \'{gone}\'')
            psql(f'ALTER DATABASE "{gone}" RENAME TO "{db.name}"')
        _recovers(srv, tok)
        c.stop()
    finally:
        psql(f'DROP DATABASE IF EXISTS "{gone}"', check=False)
        db.drop()


# --------------------------------------------------------------------------- graceful shutdown


def _connect_refused(port, timeout=1.0) -> str:
    """'refused' | 'accepted-and-closed' | 'accepted-and-served' | 'timeout' for a new HTTP request."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    try:
        s.settimeout(timeout)
        s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = s.recv(100)
        return "accepted-and-served" if data else "accepted-and-closed"
    except (ConnectionResetError, BrokenPipeError):
        return "accepted-and-closed"
    except socket.timeout:
        return "timeout"
    finally:
        s.close()


def test_sigterm_drains_slow_calls_refuses_new_ones_exits_0(proxied):
    srv, proxy = proxied
    tok = mint_token(srv)
    assert list_projects(srv, tok)[0] == OK
    proxy.pause()  # every DB call now waits: slow calls
    with ThreadPoolExecutor(6) as ex:
        grpc_calls = [ex.submit(list_projects, srv, tok, 30) for _ in range(4)]
        rest_calls = [ex.submit(lambda: http_session().get(f"{srv.url}/api/v1/projects",
                                                           headers={"Authorization": f"Bearer {tok}"}, timeout=30))
                      for _ in range(2)]
        time.sleep(1.0)
        assert not any(f.done() for f in grpc_calls + rest_calls), "calls were not slow"
        proc = srv.sigterm()
        t_term = time.monotonic()
        time.sleep(0.5)
        new_conn = _connect_refused(srv.port)
        proxy.resume()  # the database comes back: in-flight calls can finish
        results = [f.result(timeout=40) for f in grpc_calls]
        rest = [f.result(timeout=40) for f in rest_calls]
    try:
        rc = proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        proc.kill()
        proc.wait(10)
        rc = "still running 20 s after SIGTERM"
    took = time.monotonic() - t_term
    # In-flight calls complete: OK (DB back) or the server's own UNAVAILABLE ("database
    # unavailable"), never a transport error (reset, GOAWAY without an answer).
    bad = [r for r in results if not (r[0] == OK or (r[0] == UNAVAILABLE and r[1] == "database unavailable"))]
    assert not bad, f"in-flight gRPC calls cut by shutdown: {bad}"
    assert all(r.status_code in (200, 503) for r in rest), [(r.status_code, r.text[:100]) for r in rest]
    assert new_conn == "refused", f"a new connection 0.5 s after SIGTERM: {new_conn}"
    assert rc == 0, f"exit code after SIGTERM: {rc}"
    print(f"exit {rc} {took:.1f}s after SIGTERM; gRPC {[r[0].name for r in results]}; "
          f"REST {[r.status_code for r in rest]}")


def test_sigterm_while_database_black_holed_exits_in_bounded_time(proxied):
    """Shutdown must not wait forever on a database that never answers."""
    srv, proxy = proxied
    tok = mint_token(srv)
    assert list_projects(srv, tok)[0] == OK
    proxy.pause()
    with ThreadPoolExecutor(2) as ex:
        calls = [ex.submit(list_projects, srv, tok, 30) for _ in range(2)]
        time.sleep(0.5)
        proc = srv.sigterm()
        t0 = time.monotonic()
        results = [f.result(timeout=40) for f in calls]
    try:
        rc = proc.wait(timeout=25)
    except Exception:  # noqa: BLE001
        proc.kill()
        proc.wait(10)
        rc = None
    took = time.monotonic() - t0
    assert rc is not None, "still running 25 s after SIGTERM with the database black-holed"
    assert all(r[0] in (OK, UNAVAILABLE) for r in results), results
    print(f"exit {rc} after {took:.1f}s; calls {results}")


# --------------------------------------------------------------------------- bad input


def _projects(srv, tok):
    return sorted(list_project_ids(srv, tok))


def test_oversized_json_body_is_413(replica):
    tok = mint_token(replica)
    before = _projects(replica, tok)
    big = {"project": {"id": "big-one", "name": "big", "description": "x" * (2 << 20)}}
    r = requests.post(f"{replica.url}/api/v1/projects", json=big, headers={"Authorization": f"Bearer {tok}"},
                      timeout=T)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    r = requests.post(f"{replica.url}/oauth2/token", data={"grant_type": "client_credentials", "pad": "x" * (2 << 20)},
                      timeout=T)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert _projects(replica, tok) == before


def test_oversized_grpc_message_is_resource_exhausted(replica):
    tok = mint_token(replica)
    before = _projects(replica, tok)
    with grpc.insecure_channel(replica.endpoint) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        req = project_pb2.ProjectRegisterRequest(
            project=project_pb2.Project(id="huge", name="huge", description="x" * (2 << 20)))
        with pytest.raises(grpc.RpcError) as ei:
            stub.RegisterProject(req, metadata=md(tok), timeout=DEADLINE)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (ei.value.code(), ei.value.details())
        # The same channel keeps working.
        stub.ListProjects(project_pb2.ProjectListRequest(limit=1), metadata=md(tok), timeout=DEADLINE)
    assert _projects(replica, tok) == before


MALFORMED = [
    b"\xff\xff\xff\xff",                 # wire type 7: invalid
    b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # length varint overflow
    b"\x0a\x10abc",                      # length 16, 3 bytes present
    b"\x08",                             # truncated varint
    bytes(range(256)) * 4,
]


@pytest.mark.parametrize("path", [
    "/flyteidl.service.AdminService/ListProjects",
    "/flyteidl.service.AdminService/RegisterProject",
    "/flyteidl.service.IdentityService/UserInfo",
    "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
])
def test_malformed_protobuf_is_a_clean_error(replica, path):
    tok = mint_token(replica)
    before = _projects(replica, tok)
    seen = []
    with grpc.insecure_channel(replica.endpoint) as ch:
        call = ch.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for payload in MALFORMED:
            try:
                call(payload, metadata=md(tok), timeout=DEADLINE)
                seen.append((payload[:8], "OK"))
            except grpc.RpcError as e:
                seen.append((payload[:8], e.code().name, e.details()))
    allowed = {"INTERNAL", "INVALID_ARGUMENT"}
    bad = [s for s in seen if s[1] not in allowed]
    assert not bad, f"{path}: {bad}"
    assert replica.proc is not None and replica.proc.poll() is None, "server died"
    assert requests.get(f"{replica.url}/healthcheck", timeout=5).status_code == 200
    assert user_info(replica, tok) == (OK, "alice")
    assert _projects(replica, tok) == before


def test_garbage_on_the_wire_does_not_kill_the_server(replica):
    tok = mint_token(replica)
    payloads = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(range(256)) * 8,   # h2 preface, then garbage frames
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello on plain h2c
        b"GET / HTTP/1.1\r\nHost: " + b"a" * 100_000 + b"\r\n\r\n",      # huge header
        bytes(range(256)) * 16,
    ]
    for p in payloads:
        try:
            with socket.create_connection(("127.0.0.1", replica.port), timeout=5) as s:
                s.settimeout(5)
                s.sendall(p)
                try:
                    s.recv(1024)
                except (socket.timeout, ConnectionResetError):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            pass
    assert replica.proc.poll() is None, "server died"
    assert requests.get(f"{replica.url}/healthcheck", timeout=5).status_code == 200
    assert user_info(replica, tok) == (OK, "alice")


def test_malformed_json_is_4xx_without_state_change(replica):
    tok = mint_token(replica)
    h = {"Authorization": f"Bearer {tok}"}
    before = _projects(replica, tok)
    cases = [
        ("POST", "/api/v1/projects", b'{"project": {"id": "half-', "application/json"),
        ("POST", "/api/v1/projects", b'{"project": {"id": 5, "name": []}}', "application/json"),
        ("POST", "/api/v1/projects", b"[1, 2, 3]", "application/json"),
        ("POST", "/api/v1/projects", b"\xff\xfe\x00garbage", "application/json"),
        ("POST", "/api/v1/projects", b'{"project": {"id": "nojson", "name": "n"}}', "text/plain"),
        ("POST", "/api/v1/projects", b"", "application/json"),
        ("PUT", "/api/v1/projects/nojson", b'{"id": "nojson", "name": ', "application/json"),
        ("POST", "/api/v1/projects", b'{"project": {"id": "deep"}, "x": ' + b"[" * 10000 + b"]" * 10000 + b"}",
         "application/json"),
    ]
    seen = []
    for method, path, body, ctype in cases:
        r = requests.request(method, replica.url + path, data=body, headers=dict(h, **{"Content-Type": ctype}),
                             timeout=T)
        seen.append((method, path, body[:20], ctype, r.status_code))
    bad = [s for s in seen if not 400 <= s[-1] < 500]
    assert not bad, bad
    print("malformed JSON:", [(s[2], s[3], s[4]) for s in seen])
    assert _projects(replica, tok) == before


def test_malformed_form_and_basic_auth_are_4xx(replica):
    secret = generated_propeller_secret(replica)
    url = f"{replica.url}/oauth2/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = {
        "bad percent-encoding": dict(data=b"grant_type=client_credentials&scope=%ZZ%", headers=form,
                                     auth=("flytepropeller", secret)),
        "non-utf8 form": dict(data=b"grant_type=\xff\xfe&client_id=flytectl", headers=form),
        "json instead of form": dict(data=b'{"grant_type":"client_credentials"}',
                                     headers={"Content-Type": "application/json"}, auth=("flytepropeller", secret)),
        "no content-type": dict(data=b"grant_type=client_credentials", auth=("flytepropeller", secret)),
        "basic not base64": dict(data={"grant_type": "client_credentials"},
                                 headers={"Authorization": "Basic !!!not*base64$$$"}),
        "basic no colon": dict(data={"grant_type": "client_credentials"},
                               headers={"Authorization": "Basic " + base64.b64encode(b"flytepropeller").decode()}),
        "basic non-utf8": dict(data={"grant_type": "client_credentials"},
                               headers={"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode()}),
        "basic bad percent in secret": dict(
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + base64.b64encode(b"flytepropeller:%ZZ").decode()}),
        "basic empty": dict(data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic "}),
        "basic huge": dict(data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic " + base64.b64encode(b"a" * 30000 + b":b").decode()}),
    }
    seen = {}
    for name, kw in cases.items():
        r = requests.post(url, timeout=T, **kw)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text[:80]
        seen[name] = (r.status_code, body.get("error") if isinstance(body, dict) else body)
    # A lenient form decoder keeps an invalid %-escape literally (as browsers do), so scope=%ZZ%
    # is an unknown scope (invalid_scope): any RFC 6749 error is fine, as long as it is a 4xx JSON one.
    rfc6749 = ("invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope", "invalid_grant",
               "unauthorized_client")
    bad = {k: v for k, v in seen.items() if not (400 <= v[0] < 500 and v[1] in rfc6749)}
    # Basic credentials that cannot be decoded are a failed client authentication: 401 invalid_client.
    bad.update({k: v for k, v in seen.items() if k.startswith("basic") and v != (401, "invalid_client")})
    assert not bad, f"not a 4xx RFC 6749 JSON error: {bad}\nall: {seen}"
    print("token endpoint:", seen)
    # Still works with the right credentials.
    r = requests.post(url, data={"grant_type": "client_credentials", "scope": "all"},
                      auth=("flytepropeller", secret), timeout=T)
    assert_token_response(r)


def test_cookie_garbage_is_4xx_without_state_change(replica):
    tok = mint_token(replica)
    before = _projects(replica, tok)
    garbage = [
        "flyte_session=%%%not-a-session%%%",
        "flyte_session=" + "A" * 4000,
        "flyte_session=; flyte_session=x; flyte_csrf=y",
        "flyte_session=\"quoted\"; flyte_csrf=abc",
        "=; ;; ===; flyte_session",
        "flyte_session=" + base64.b64encode(bytes(range(256))).decode(),
    ]
    seen = []
    for c in garbage:
        hdr = {"Cookie": c, "x-csrf-token": "abc", "Origin": replica.url}
        r1 = requests.get(f"{replica.url}/me", headers=hdr, timeout=T)
        r2 = requests.post(f"{replica.url}/api/v1/projects", json={"project": {"id": "cookie-x", "name": "c"}},
                           headers=hdr, timeout=T)
        verifier, challenge = pkce_pair()
        r3 = requests.get(authorize_url(replica, **authorize_params(challenge=challenge)), headers=hdr,
                          allow_redirects=False, timeout=T)
        r4 = requests.get(f"{replica.url}/oauth2/device", headers=hdr, allow_redirects=False, timeout=T)
        seen.append((c[:30], r1.status_code, r2.status_code, r3.status_code, r3.headers.get("Location", "")[:30],
                     r4.status_code))
    # /me and the cookie-authenticated REST call: 401; authorize and the device page: to the login page.
    bad = [s for s in seen if s[1] != 401 or s[2] != 401 or s[3] not in (302, 303) or not s[4].startswith("/login")
           or s[5] not in (302, 303)]
    assert not bad, bad
    # Raw non-ASCII bytes in a Cookie header.
    with socket.create_connection(("127.0.0.1", replica.port), timeout=5) as s:
        s.sendall(b"GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: flyte_session=\xff\xfe\x00\x01\r\n"
                  b"Connection: close\r\n\r\n")
        s.settimeout(5)
        head = s.recv(64)
    assert head.startswith(b"HTTP/1.1 4"), head
    assert _projects(replica, tok) == before
