"""Two flyteauth replicas on one PostgreSQL database behave as one server (DESIGN §7).

Replica A and B: two `flyteauth serve` processes, same config except `server.httpPort`, one
secrets directory (A starts first and generates it), `auth.authorizedUris` listing both public
URLs, `database.url` pointing at a throwaway database of the shared PostgreSQL server.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.parse

import grpc
import pytest
import requests

import oauth
from oauth import (
    ALICE,
    assert_oauth_error,
    assert_token_response,
    authorize_params,
    authorize_url,
    exchange_code,
    generated_propeller_secret,
    get_code,
    logged_in_session,
    parse_forms,
    pkce_pair,
    refresh,
)
from replica_util import (
    T,
    grpc_list_projects,
    http_session,
    list_project_ids,
    propeller_token,
    register_project_rest,
    user_info,
    user_tokens,
    wait_until,
)
from replicas import Cluster, PgDatabase

pytestmark = pytest.mark.timeout(120)

OK = grpc.StatusCode.OK
U = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def pgdb():
    db = PgDatabase.create("replicas")
    yield db
    db.drop()


@pytest.fixture
def cluster(server_factory, pgdb, tmp_path):
    """Replicas A and B (function scope: each test its own processes and secrets; one database).
    Registered with server_factory so a failing test shows both logs."""
    # Strict rotation; the grace period across replicas is tested in test_hostile.py.
    c = Cluster(tmp_path, pgdb.url(), n=2,
                auth_extra=oauth.auth_extra(self_auth_server={"refreshTokenGracePeriod": "0s"}))
    server_factory.servers.extend(c.replicas)
    c.start()
    yield c
    c.stop()


def ab(cluster):
    return cluster.replicas[0], cluster.replicas[1]


# --------------------------------------------------------------------------- one server, two doors


def test_code_issued_at_a_redeems_once_at_b(cluster):
    a, b = ab(cluster)
    sess = logged_in_session(a, ALICE)
    code, verifier, params = get_code(a, sess)

    body = assert_token_response(exchange_code(b, code, verifier, params), refresh=True)
    # The token works at both replicas.
    assert user_info(a, body["access_token"]) == (OK, "alice")
    assert user_info(b, body["access_token"]) == (OK, "alice")

    # Replayed at A: refused, and (RFC 6749 §4.1.2) what it issued is revoked everywhere.
    assert_oauth_error(exchange_code(a, code, verifier, params), "invalid_grant", 400)
    assert_oauth_error(exchange_code(b, code, verifier, params), "invalid_grant", 400)
    assert_oauth_error(refresh(a, body["refresh_token"]), "invalid_grant", 400)
    assert_oauth_error(refresh(b, body["refresh_token"]), "invalid_grant", 400)
    # The access token of the replayed code: dead on both within one revocation poll (5 s).
    for r in (a, b):
        res, took = wait_until(lambda: user_info(r, body["access_token"])[0] == U, timeout=8, interval=0.25)
        assert took is not None, f"access token from a replayed code still accepted at {r.name} after 8 s: " \
                                 f"{user_info(r, body['access_token'])}"


def test_refresh_rotated_at_a_then_replayed_at_b_kills_the_family(cluster):
    a, b = ab(cluster)
    t0 = user_tokens(a)
    t1 = assert_token_response(refresh(a, t0["refresh_token"]), refresh=True)
    assert t1["refresh_token"] != t0["refresh_token"]

    # The old one replayed at the other replica: reuse -> invalid_grant, family revoked.
    assert_oauth_error(refresh(b, t0["refresh_token"]), "invalid_grant", 400)
    # The current (rotated) refresh token is dead on both.
    assert_oauth_error(refresh(b, t1["refresh_token"]), "invalid_grant", 400)
    assert_oauth_error(refresh(a, t1["refresh_token"]), "invalid_grant", 400)
    assert_oauth_error(refresh(a, t0["refresh_token"]), "invalid_grant", 400)


def test_refresh_rotates_across_replicas(cluster):
    """A chain of rotations alternating replicas keeps working (no replica-local state)."""
    a, b = ab(cluster)
    tok = user_tokens(a)
    for i in range(6):
        r = (a, b)[i % 2]
        nxt = assert_token_response(refresh(r, tok["refresh_token"]), refresh=True)
        assert user_info((b, a)[i % 2], nxt["access_token"]) == (OK, "alice")
        tok = nxt


def test_session_made_on_a_is_valid_on_b(cluster):
    a, b = ab(cluster)
    sess_a = logged_in_session(a, ALICE)
    # A fresh client that carries only the session cookies A set (explicitly, whatever the
    # cookie jar's port rules).
    sess_b = http_session()
    for c in sess_a.cookies:
        sess_b.cookies.set(c.name, c.value)

    # /oauth2/authorize at B with A's cookie: straight to the client with a code, no login page.
    code, verifier, params = get_code(b, sess_b)
    body = assert_token_response(exchange_code(b, code, verifier, params), refresh=True)
    assert user_info(a, body["access_token"]) == (OK, "alice")

    r = sess_b.get(f"{b.url}/me", timeout=T)
    assert r.status_code == 200, (r.status_code, r.text[:300])

    # Logout at B ends the session everywhere: authorize at A now asks for a login.
    r = sess_b.get(f"{b.url}/logout", allow_redirects=False, timeout=T)
    assert r.status_code in (200, 302, 303), (r.status_code, r.text[:300])
    verifier, challenge = pkce_pair()
    r = sess_a.get(authorize_url(a, **authorize_params(challenge=challenge)), allow_redirects=False, timeout=T)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    assert urllib.parse.urlsplit(r.headers["Location"]).path == "/login", r.headers["Location"]


def test_project_registered_on_a_lists_on_b(cluster):
    a, b = ab(cluster)
    secret = generated_propeller_secret(a)
    tok = propeller_token(a, secret)
    pid = "rep-" + secrets.token_hex(4)
    r = register_project_rest(a, tok, pid)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    # Same token, other replica, both transports.
    assert pid in list_project_ids(b, tok)
    assert pid in [p.id for p in grpc_list_projects(b, tok).projects]
    # A duplicate at B is ALREADY_EXISTS (409), not a second row.
    r = register_project_rest(b, tok, pid)
    assert r.status_code == 409, (r.status_code, r.text[:300])


def _device_start(server):
    r = requests.post(f"{server.url}/oauth2/device_authorization",
                      data={"client_id": "flytectl", "scope": "all offline"}, timeout=T)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    d = r.json()
    for k in ("device_code", "user_code", "verification_uri", "expires_in", "interval"):
        assert k in d, d
    return d


def _device_approve(server, sess, user_code: str, action: str = "approve"):
    r = sess.get(f"{server.url}/oauth2/device", params={"user_code": user_code}, allow_redirects=False, timeout=T)
    assert r.status_code == 200, (r.status_code, r.headers, r.text[:500])
    form = [f for f in parse_forms(r.text) if "user_code" in f.inputs][0]
    r = sess.post(f"{server.url}/oauth2/device", data=dict(form.inputs), allow_redirects=False, timeout=T)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    form = [f for f in parse_forms(r.text) if "csrf_token" in f.inputs][0]
    r = sess.post(f"{server.url}/oauth2/device", data=dict(form.inputs, action=action),
                  allow_redirects=False, timeout=T)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r


def _device_poll(server, device_code):
    return requests.post(f"{server.url}/oauth2/token",
                         data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                               "device_code": device_code, "client_id": "flytectl"}, timeout=T)


def test_device_code_approved_on_a_is_picked_up_at_b(cluster):
    a, b = ab(cluster)
    d = _device_start(b)
    # Before approval, polling at A (the other replica) says pending.
    assert_oauth_error(_device_poll(a, d["device_code"]), "authorization_pending", 400)
    sess = logged_in_session(a, ALICE)
    _device_approve(a, sess, d["user_code"])
    time.sleep(d["interval"])  # honour the interval: no slow_down
    body = assert_token_response(_device_poll(b, d["device_code"]), refresh=True)
    assert user_info(a, body["access_token"]) == (OK, "alice")
    # Single use across replicas.
    time.sleep(d["interval"])
    assert_oauth_error(_device_poll(a, d["device_code"]), "invalid_grant", 400)
    # Its refresh token rotates at the other replica.
    assert_token_response(refresh(a, body["refresh_token"]), refresh=True)


def test_revoked_access_token_is_refused_on_the_other_replica_within_5s(cluster):
    a, b = ab(cluster)
    tok = user_tokens(a)
    at = tok["access_token"]
    assert user_info(b, at) == (OK, "alice")  # now in B's validation cache
    r = requests.post(f"{a.url}/oauth2/revoke",
                      data={"token": at, "token_type_hint": "access_token", "client_id": "flytectl"}, timeout=T)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert user_info(a, at)[0] == U, "revoking replica must refuse at once"
    _, took = wait_until(lambda: user_info(b, at)[0] == U, timeout=10, interval=0.2)
    assert took is not None, f"B still accepts the revoked token after 10 s: {user_info(b, at)}"
    assert took <= 6.5, f"B refused the revoked token only after {took:.1f} s (poll interval is 5 s)"
    # Refresh-token revocation: whole family dead at the other replica at once (store).
    r = requests.post(f"{a.url}/oauth2/revoke", data={"token": tok["refresh_token"], "client_id": "flytectl"},
                      timeout=T)
    assert r.status_code == 200
    assert_oauth_error(refresh(b, tok["refresh_token"]), "invalid_grant", 400)


# --------------------------------------------------------------------------- races


def _race(fn_a, fn_b):
    """Run two calls as close together as possible; returns their responses."""
    barrier = threading.Barrier(2)
    out = [None, None]

    def run(i, fn):
        barrier.wait(5)
        out[i] = fn()

    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate((fn_a, fn_b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def _warm(server):
    """A keep-alive connection already open, so the racing requests leave at the same time."""
    s = http_session()
    s.get(f"{server.url}/healthcheck", timeout=T)
    return s


def _post_token(s, server, data):
    return s.post(f"{server.url}/oauth2/token", data=data, timeout=T)


def test_concurrent_code_redemption_at_a_and_b(cluster):
    a, b = ab(cluster)
    sess = logged_in_session(a, ALICE)
    sa, sb = _warm(a), _warm(b)
    outcomes = []
    for i in range(30):
        code, verifier, params = get_code(a, sess)
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"],
                "client_id": "flytectl", "code_verifier": verifier}
        ra, rb = _race(lambda: _post_token(sa, a, data), lambda: _post_token(sb, b, data))
        statuses = sorted([ra.status_code, rb.status_code])
        errors = sorted(r.json().get("error", "") for r in (ra, rb) if r.status_code != 200)
        outcomes.append((i, ra.status_code, rb.status_code, errors))
    bad = [o for o in outcomes if sorted(o[1:3]) != [200, 400] or o[3] != ["invalid_grant"]]
    assert not bad, f"{len(bad)}/30 races without exactly one 200 + one invalid_grant: {bad[:10]}"
    print("winners (A, B):", sum(o[1] == 200 for o in outcomes), sum(o[2] == 200 for o in outcomes))


def test_concurrent_refresh_at_a_and_b(cluster):
    a, b = ab(cluster)
    sess = logged_in_session(a, ALICE)
    sa, sb = _warm(a), _warm(b)
    outcomes = []
    for i in range(30):
        rt = user_tokens(a, sess=sess)["refresh_token"]
        data = {"grant_type": "refresh_token", "refresh_token": rt, "client_id": "flytectl"}
        ra, rb = _race(lambda: _post_token(sa, a, data), lambda: _post_token(sb, b, data))
        errors = sorted(r.json().get("error", "") for r in (ra, rb) if r.status_code != 200)
        outcomes.append((i, ra.status_code, rb.status_code, errors))
    bad = [o for o in outcomes if sorted(o[1:3]) != [200, 400] or o[3] != ["invalid_grant"]]
    assert not bad, f"{len(bad)}/30 races without exactly one 200 + one invalid_grant: {bad[:10]}"
    print("winners (A, B):", sum(o[1] == 200 for o in outcomes), sum(o[2] == 200 for o in outcomes))


# --------------------------------------------------------------------------- kill -9 under load


def test_kill9_of_a_under_load_loses_nothing(cluster):
    a, b = ab(cluster)
    secret = generated_propeller_secret(a)
    tok = propeller_token(a, secret)

    # State made before the crash, all through A: projects, a browser session, refresh tokens.
    before_pids = ["pre-" + secrets.token_hex(4) for _ in range(5)]
    for pid in before_pids:
        assert register_project_rest(a, tok, pid).status_code == 200
    sess = logged_in_session(a, ALICE)
    idle_refresh = [user_tokens(a, sess=sess)["refresh_token"] for _ in range(3)]  # untouched until the end
    chains = [user_tokens(a, sess=sess)["refresh_token"] for _ in range(2)]          # rotated at B under load

    stop = threading.Event()
    lock = threading.Lock()
    registered = set()     # project ids whose registration answered 200
    b_failures = []        # anything not OK at B (B must serve throughout)
    a_results = []         # (t, kind, outcome) at A
    t_start = time.monotonic()

    def project_worker(server, n):
        http = http_session()
        while not stop.is_set():
            pid = f"load-{server.name.lower()}{n}-" + secrets.token_hex(3)
            try:
                r = register_project_rest(server, tok, pid, http=http, timeout=5)
                ok = r.status_code == 200
                if ok:
                    with lock:
                        registered.add(pid)
                r2 = http.get(f"{server.url}/api/v1/projects", params={"limit": 5},
                              headers={"Authorization": f"Bearer {tok}"}, timeout=5)
                outcome = (r.status_code, r2.status_code)
            except requests.RequestException as e:
                outcome = type(e).__name__
                http = http_session()
            if server is b and outcome != (200, 200):
                b_failures.append((round(time.monotonic() - t_start, 2), "project", outcome))
            if server is a:
                a_results.append((round(time.monotonic() - t_start, 2), "project", outcome))

    def grant_worker(server):
        http = http_session()
        while not stop.is_set():
            try:
                r = http.post(f"{server.url}/oauth2/token", data={"grant_type": "client_credentials", "scope": "all"},
                              auth=("flytepropeller", secret), timeout=5)
                outcome = r.status_code
            except requests.RequestException as e:
                outcome = type(e).__name__
                http = http_session()
            if server is b and outcome != 200:
                b_failures.append((round(time.monotonic() - t_start, 2), "grant", outcome))
            if server is a:
                a_results.append((round(time.monotonic() - t_start, 2), "grant", outcome))

    def refresh_worker(idx):
        http = http_session()
        while not stop.is_set():
            try:
                r = http.post(f"{b.url}/oauth2/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": chains[idx], "client_id": "flytectl"},
                              timeout=5)
                if r.status_code == 200:
                    chains[idx] = r.json()["refresh_token"]
                else:
                    b_failures.append((round(time.monotonic() - t_start, 2), "refresh", r.status_code, r.text[:200]))
            except requests.RequestException as e:
                b_failures.append((round(time.monotonic() - t_start, 2), "refresh", type(e).__name__))
            time.sleep(0.05)

    workers = [threading.Thread(target=project_worker, args=(s, n), daemon=True) for s in (a, b) for n in range(2)]
    workers += [threading.Thread(target=grant_worker, args=(s,), daemon=True) for s in (a, b)]
    workers += [threading.Thread(target=refresh_worker, args=(i,), daemon=True) for i in range(len(chains))]
    for w in workers:
        w.start()
    time.sleep(2.0)
    # A long-lived gRPC channel to A, opened before the crash (the way flytekit keeps one).
    channel_a = grpc.insecure_channel(a.endpoint)
    assert user_info_on(channel_a, tok) == grpc.StatusCode.OK
    rc = a.kill9()
    t_kill = time.monotonic() - t_start
    assert rc == -9, rc
    time.sleep(1.5)
    a.start()  # same config, same secrets, same database
    t_back = time.monotonic() - t_start
    time.sleep(2.0)
    stop.set()
    for w in workers:
        w.join(15)

    assert not b_failures, f"B failed while A was killed/restarted (kill at {t_kill:.1f}s, back at {t_back:.1f}s): " \
                           f"{b_failures[:10]}"
    # A's clients recover once it is back: every call after the restart succeeded.
    after = [r for r in a_results if r[0] > t_back + 0.5]
    assert after, "no call reached A after its restart"
    bad_after = [r for r in after if r[2] not in (200, (200, 200))]
    assert not bad_after, f"A after restart (at {t_back:.1f}s): {bad_after[:10]}"

    print(f"kill at {t_kill:.1f}s, back at {t_back:.1f}s; registered {len(registered)} projects; "
          f"A calls {len(a_results)} ({len(after)} after restart); chains {[c[:6] for c in chains]}")
    # Nothing lost: every project that answered 200 is listed on both replicas.
    for s in (a, b):
        listed = list_project_ids(s, tok)
        missing = (set(before_pids) | registered) - set(listed)
        assert not missing, f"{len(missing)} projects missing on {s.name}: {sorted(missing)[:10]}"
    # The browser session made on A before the crash still gives codes, at A.
    code, verifier, params = get_code(a, sess)
    assert_token_response(exchange_code(a, code, verifier, params), refresh=True)
    # Refresh tokens issued before the crash, and the chains rotated at B meanwhile, all work at A.
    for rt in idle_refresh + chains:
        assert_token_response(refresh(a, rt), refresh=True)
    # A's pre-crash gRPC channel reconnects by itself (wait_for_ready), pre-crash token accepted.
    try:
        assert user_info_on(channel_a, tok, wait_for_ready=True) == grpc.StatusCode.OK
    finally:
        channel_a.close()


def user_info_on(channel, tok, wait_for_ready=False):
    from flyteidl.service import identity_pb2, identity_pb2_grpc

    try:
        identity_pb2_grpc.IdentityServiceStub(channel).UserInfo(
            identity_pb2.UserInfoRequest(), metadata=(("flyte-authorization", f"Bearer {tok}"),), timeout=10,
            wait_for_ready=wait_for_ready)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code(), e.details()
