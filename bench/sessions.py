#!/usr/bin/env python3
"""Session-store helper of make bench's memory-with-sessions phase (stdlib only).

    sessions.py insert <sqlite-file> <count> <cookies-out> <subject> <profile-json> <absolute-secs>
        With the server stopped: inserts <count> browser sessions into the `sessions` table of
        flyteauth's SQLite store, in one transaction. Each is what Sessions::create
        (src/session.rs) writes at a login: the cookie value is random_token() (base64url of 32
        random bytes), the row's key id_hash its lowercase hex SHA-256, a random csrf_token,
        created_at = last_seen_at = now, expires_at = now + <absolute-secs>. The cookie values
        go to <cookies-out>, one a line. Prints JSON.
    sessions.py me <base-url> <cookies-file> <count> <subject>
        GET /me with the first <count> cookies of the file, one request each, on one keep-alive
        connection; every answer must be 200 for <subject>. Prints JSON.
"""
import base64
import hashlib
import http.client
import json
import secrets
import sqlite3
import sys
import time
import urllib.parse


def random_token():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def insert(db, count, out, subject, profile, absolute_secs):
    now = int(time.time())
    user_info = json.dumps(json.loads(profile), separators=(",", ":"))
    t0 = time.monotonic()
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    cookies = []

    def rows():
        for _ in range(count):
            cookie = random_token()
            cookies.append(cookie)
            yield (hashlib.sha256(cookie.encode()).hexdigest(), subject, user_info, random_token(),
                   now, now, now + absolute_secs)

    with conn:
        conn.executemany(
            "INSERT INTO sessions (id_hash, subject, user_info, csrf_token, created_at, "
            "last_seen_at, expires_at, idp_refresh_token) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            rows())
    after = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(out, "w") as f:
        f.write("\n".join(cookies) + "\n")
    print(json.dumps({"inserted": after - before, "rows": after,
                      "seconds": round(time.monotonic() - t0, 2)}))


def me(base, cookies_file, count, subject):
    u = urllib.parse.urlsplit(base)
    with open(cookies_file) as f:
        cookies = [line.strip() for _, line in zip(range(count), f)]
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    t0 = time.monotonic()
    for c in cookies:
        conn.request("GET", "/me", headers={"Cookie": f"flyte_session={c}"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit(f"sessions: /me answered {r.status}: {body[:200]!r}")
        got = json.loads(body).get("subject")
        if got != subject or r.getheader("X-User-Subject") != subject:
            sys.exit(f"sessions: /me answered subject {got!r}, want {subject!r}")
    secs = time.monotonic() - t0
    print(json.dumps({"calls": len(cookies), "seconds": round(secs, 2),
                      "per_second": round(len(cookies) / secs) if secs else None}))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "insert":
        db, count, out, subject, profile, absolute = sys.argv[2:8]
        insert(db, int(count), out, subject, profile, int(absolute))
    elif cmd == "me":
        base, cookies_file, count, subject = sys.argv[2:6]
        me(base, cookies_file, int(count), subject)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
