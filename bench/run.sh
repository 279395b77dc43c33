#!/usr/bin/env bash
# make bench: flyteauth's benchmarks, in one run on this machine. See docs/BENCHMARKS.md.
#
#   1. token endpoint: client_credentials tokens/s (wrk, concurrency $CONC) for flyteauth
#      RS256 / ES256 / EdDSA and for oidc-provider@9 (bench/peer), $RUNS runs × $DURATION s;
#      the RS256 signing limit (examples/sign_speed.rs; openssl speed beside it).
#   2. interceptor overhead: a protected RPC that needs no database ($LOAD_RPC, default
#      AdminService/GetDomains: the same work with auth on and off) over loopback at
#      concurrency 1/16/64, auth on (token cache warm), auth on without cache, auth off; server
#      on cpu 0, client on cpu 1 (taskset).
#   3. memory: RSS idle and after $MEM_TOKENS distinct valid tokens were verified, for several
#      auth.tokenCache.maxEntries.
#   4. authorization code + PKCE round trips/s (authorize with a logged-in session → code →
#      token; wrk -t2 -c$AC_CONC) and chained refresh grants/s (wrk -t1 -c1), for flyteauth on
#      SQLite and on PostgreSQL (a throwaway database on $PG_URL) and for oidc-provider@9
#      (bench/peer, one process, in-memory), $AC_RUNS runs × $AC_DURATION s each; beside them
#      the floor of one refresh at c=1 on this machine: one signature on one thread, an HTTP
#      round trip that does no work (/healthcheck), PostgreSQL's durable commit.
#   5. memory with $MEM_SESSIONS browser sessions in the SQLite store: RSS idle, and after
#      /me with $ME_CALLS of those sessions.
#   6. token verification micro-benchmarks (criterion, bench/micro): cold verify per algorithm
#      against the bare aws-lc-rs signature check, and a cache hit; authorization decisions
#      with 1,000 bindings (benches/authz.rs).
#   7. token exchange (RFC 8693): grants/s at concurrency $CONC with ES256 Kubernetes-shaped
#      service-account tokens in (a fresh one per request: bench/exchange_tokens.mjs), RS256 and
#      ES256 access tokens out, beside client_credentials on the same server.
#   8. the gateway: AdminService/GetDomains on a fast upstream (examples/gateway_upstream.rs)
#      called directly, through flyteauth's gateway (gateway.upstreams), and through nginx
#      (grpc_pass + auth_request to flyteauth's /me, the usual way today), concurrency
#      1/16/64, $GW_RUNS runs x $GW_DURATION s, modes interleaved; servers on cpu 0, client on
#      cpu 1. Needs nginx (apt-get install -y nginx).
#   9. Connect vs gRPC: $LOAD_RPC as a Connect unary call (application/proto, HTTP/2, the same
#      connection handling) beside the same RPC over gRPC, one server with auth on (cache warm),
#      concurrency 1/16/64, server on cpu 0, client on cpu 1, protocols interleaved.
#  10. roles: the $LOAD_RPC call with 1,000 auth.authorization.bindings (the caller bound by
#      client id) against useAuth false, at concurrency $ROLES_CONC, $LOAD_RUNS × $LOAD_DURATION s,
#      modes interleaved; server cpu 0, client cpu 1.
#
# Needs: cargo, wrk, node >= 20 + npm, openssl, taskset, python3, curl; psql for phase 4 on
# PostgreSQL.
# Knobs (env): PHASES="1 2 3 4 5 6 7 8 9 10" (a subset runs only those phases)
#              GW_RUNS=$LOAD_RUNS GW_DURATION=$LOAD_DURATION NGINX=nginx BENCH_PROFILE=release
#              (BENCH_PROFILE=debug: a debug build's examples, for a smoke run with FLYTEAUTH_BIN)
#              RUNS=3 DURATION=10 CONC=64 LOAD_RUNS=3 LOAD_DURATION=10 MEM_TOKENS=100000
#              LOAD_RPC=GetDomains (or UserInfo) MICRO_TIME=3 (criterion seconds per benchmark)
#              AC_RUNS=$RUNS AC_DURATION=$DURATION AC_CONC=16 AC_STORES="sqlite postgres"
#              AC_ALGS="RS256 ES256" (phase 4 once per signing algorithm, both servers
#              signing with it) AC_POOL=<n> (flyteauth's
#              database.connectionPool.maxOpenConnections; default: the server's)
#              PG_URL=postgres://postgres@127.0.0.1:5432 (a server; the bench creates and drops
#              a database flyteauth_bench_<pid> there) MEM_SESSIONS=100000 ME_CALLS=10000
#              BENCH_PORT=18480 CARGO=cargo CARGO_TARGET_DIR=target OUT=<tmp dir> SKIP_BUILD=1
#              FLYTEAUTH_BIN=<path> (a prebuilt server binary instead of $TARGET/release/flyteauth)
#              WRITE_DOCS=0 (a run of all phases otherwise writes its tables into docs/BENCHMARKS.md)
#              ROLES_CONC="1 16 64" (phase 10)
#              EX_TOKENS=400000 (subject tokens minted per phase-7 run; must exceed the grants)
# Results: one line per measurement on stdout, raw output and summary.md under $OUT; a run of
# all phases also writes summary.md into docs/BENCHMARKS.md (between its markers).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONC=${CONC:-64}
LOAD_RUNS=${LOAD_RUNS:-3}
LOAD_DURATION=${LOAD_DURATION:-10}
LOAD_RPC=${LOAD_RPC:-GetDomains}
MEM_TOKENS=${MEM_TOKENS:-100000}
PHASES=${PHASES:-1 2 3 4 5 6 7 8 9 10}
ROLES_CONC=${ROLES_CONC:-1 16 64}
EX_TOKENS=${EX_TOKENS:-400000}
MICRO_TIME=${MICRO_TIME:-3}
AC_RUNS=${AC_RUNS:-$RUNS}
AC_DURATION=${AC_DURATION:-$DURATION}
AC_CONC=${AC_CONC:-16}
AC_STORES=${AC_STORES:-sqlite postgres}
AC_ALGS=${AC_ALGS:-RS256 ES256}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
MEM_SESSIONS=${MEM_SESSIONS:-100000}
ME_CALLS=${ME_CALLS:-10000}
PORT=${BENCH_PORT:-18480}
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN=${FLYTEAUTH_BIN:-$TARGET/release/flyteauth}
PROFILE=${BENCH_PROFILE:-release}
LOAD="$TARGET/$PROFILE/examples/grpc_load"
GW_UPSTREAM="$TARGET/$PROFILE/examples/gateway_upstream"
GW_RUNS=${GW_RUNS:-$LOAD_RUNS}
GW_DURATION=${GW_DURATION:-$LOAD_DURATION}
NGINX=${NGINX:-nginx}
SIGN_SPEED="$TARGET/release/examples/sign_speed"
OUT=${OUT:-$(mktemp -d /tmp/flyteauth-bench.XXXXXX)}
mkdir -p "$OUT"
NPROC=$(nproc)
SUMMARY="$OUT/summary.md"
: >"$SUMMARY"

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
die() { echo "bench: $*" >&2; exit 1; }
want() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for p in $PHASES; do case $p in 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10) ;; *) die "PHASES: unknown phase $p (1-10)" ;; esac; done
uses_pg() { want 4 && case " $AC_STORES " in *" postgres "*) return 0 ;; *) return 1 ;; esac; }

for tool in wrk node npm openssl taskset python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install -y wrk; Node 20+ for the peer)"
done
! { want 2 || want 9 || want 10; } || [ "$NPROC" -ge 2 ] || die "the interceptor and Connect phases pin server and client to cpus 0 and 1: needs 2 cpus"
! uses_pg || command -v psql >/dev/null || die "psql is not installed (phase 4 on PostgreSQL; or AC_STORES=sqlite)"

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "== building (release) into $TARGET"
  CARGO_TARGET_DIR="$TARGET" "${CARGO:-cargo}" build --release --bin flyteauth --example grpc_load --example sign_speed --example gateway_upstream
fi
[ -x "$BIN" ] || die "missing $BIN (build first, or unset SKIP_BUILD)"
! { want 2 || want 3 || want 8 || want 9 || want 10; } || [ -x "$LOAD" ] || die "missing $LOAD (build first, or unset SKIP_BUILD)"
! want 8 || [ -x "$GW_UPSTREAM" ] || die "missing $GW_UPSTREAM (build first, or unset SKIP_BUILD)"
! want 8 || command -v "$NGINX" >/dev/null || die "nginx is not installed (phase 8: apt-get install -y nginx)"
! { want 1 || want 4; } || [ -x "$SIGN_SPEED" ] || die "missing $SIGN_SPEED (build first, or unset SKIP_BUILD)"
if { want 1 || want 4; } && [ ! -d bench/peer/node_modules/oidc-provider ]; then
  (cd bench/peer && npm ci --no-audit --no-fund --silent)
fi

# ---------------------------------------------------------------- processes
PIDS=()
PG_DB=""
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  drop_pg_db
}
# the throwaway PostgreSQL database of phase 4, if one was made
drop_pg_db() {
  [ -n "$PG_DB" ] || return 0
  psql "$PG_URL/postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null ||
    echo "bench: could not drop database $PG_DB" >&2
  PG_DB=""
}
trap cleanup EXIT INT TERM

# stop PID: SIGTERM and wait, then forget it
stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=()
  for p in "${PIDS[@]:-}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
  PIDS=("${keep[@]:-}")
}

wait_http() { # url
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# write_config DIR ALG USE_AUTH MAX_ENTRIES
write_config() {
  cat >"$1/config.yaml" <<EOF
server:
  httpPort: $PORT
  grpc: { port: 0 }
  security: { secure: false, useAuth: $3, insecureCookieHeader: true }
secrets:
  secrets-prefix: $1/secrets
database:
  sqlite: { file: $1/flyteauth.db }
auth:
  authorizedUris: ["http://127.0.0.1:$PORT"]
  tokenCache: { maxEntries: $4 }
  appAuth:
    selfAuthServer:
      signingAlgorithm: $2
EOF
}

# start_flyteauth DIR CPUS → sets SRV_PID
start_flyteauth() {
  local dir=$1 cpus=$2
  taskset -c "$cpus" "$BIN" serve --config "$dir/config.yaml" >>"$dir/server.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_http "http://127.0.0.1:$PORT/healthcheck" || { tail -20 "$dir/server.log"; die "flyteauth did not start"; }
}

# basic_for DIR: Basic credentials of the generated flytepropeller client
basic_for() {
  python3 - "$1/secrets/flytepropeller_client_secret" <<'EOF'
import base64, sys, urllib.parse
secret = open(sys.argv[1]).read().strip()
pair = "flytepropeller:" + urllib.parse.quote(secret, safe="")
print(base64.b64encode(pair.encode()).decode())
EOF
}

# mint_one URL BASIC → prints one access token; checks its header alg
mint_one() {
  curl -fsS -H "Authorization: Basic $2" -d 'grant_type=client_credentials&scope=all' "$1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
jwt_alg() {
  python3 -c 'import base64,json,sys; h=sys.argv[1].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(h+"="*(-len(h)%4)))["alg"])' "$1"
}

# stats v1 v2 ... → "min median max"
stats() { python3 -c 'import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f"{v[0]:.0f} {statistics.median(v):.0f} {v[-1]:.0f}")' "$@"; }

# wrk_runs NAME URL BASIC → appends "NAME min median max" to $OUT/token.txt
wrk_runs() {
  local name=$1 url=$2 basic=$3 rps=()
  BASIC=$basic wrk -t2 -c"$CONC" -d2s -s bench/token.lua "$url" >"$OUT/wrk-$name-warmup.txt"
  for i in $(seq 1 "$RUNS"); do
    BASIC=$basic wrk -t2 -c"$CONC" -d"${DURATION}s" --latency -s bench/token.lua "$url" >"$OUT/wrk-$name-$i.txt"
    if grep -q 'Non-2xx' "$OUT/wrk-$name-$i.txt"; then
      cat "$OUT/wrk-$name-$i.txt"; die "$name: the token endpoint answered errors"
    fi
    local r p50 p99
    r=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk-$name-$i.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$OUT/wrk-$name-$i.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$OUT/wrk-$name-$i.txt")
    echo "  $name run $i: $r tokens/s (p50 $p50, p99 $p99)"
    rps+=("$r")
  done
  echo "$name $(stats "${rps[@]}")" >>"$OUT/token.txt"
}

echo "== results in $OUT"
say "**flyteauth make bench** — $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say "- machine: $NPROC cpus, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
say "- load before: $(uptime | sed 's/.*load average/load average/')"
say "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?'); wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), node $(node --version), oidc-provider $(node -p 'require("./bench/peer/node_modules/oidc-provider/package.json").version' 2>/dev/null || echo '(not installed)'), $(openssl version | awk '{print $1, $2}')"
say ""

# ---------------------------------------------------------------- 1. token endpoint
if want 1; then
echo "== 1. token endpoint (wrk -t2 -c$CONC, $RUNS × ${DURATION}s)"
: >"$OUT/token.txt"
for alg in RS256 ES256 EdDSA; do
  dir="$OUT/token-$alg"
  mkdir -p "$dir"
  write_config "$dir" "$alg" true 100000
  [ "$alg" != RS256 ] || "$SIGN_SPEED" 3 "$NPROC" >"$OUT/sign-speed-before.json"
  start_flyteauth "$dir" "0-$((NPROC - 1))"
  url="http://127.0.0.1:$PORT/oauth2/token"
  basic=$(basic_for "$dir")
  got=$(jwt_alg "$(mint_one "$url" "$basic")")
  [ "$got" = "$alg" ] || die "flyteauth $alg issued a $got token"
  wrk_runs "flyteauth-$alg" "$url" "$basic"
  stop "$SRV_PID"
  [ "$alg" != RS256 ] || "$SIGN_SPEED" 3 "$NPROC" >"$OUT/sign-speed-after.json"
done

for workers in 1 "$NPROC"; do
  name="oidc-provider-x$workers"
  node bench/peer/server.mjs "$PORT" "$workers" >"$OUT/$name.log" 2>&1 &
  peer=$!
  PIDS+=("$peer")
  url="http://127.0.0.1:$PORT/token"
  basic=$(printf 'bench:bench-secret' | base64)
  wait_http "http://127.0.0.1:$PORT/.well-known/openid-configuration" || die "oidc-provider did not start"
  got=$(jwt_alg "$(mint_one "$url" "$basic")")
  [ "$got" = "RS256" ] || die "oidc-provider issued a $got token"
  wrk_runs "$name" "$url" "$basic"
  stop "$peer"
  sleep 0.5
done

# RS256 signing limit: one RSA-2048 signature per token. Measured with flyteauth's own
# signing function (aws-lc-rs; examples/sign_speed.rs) on all cores at once, right before and
# right after flyteauth's RS256 runs (this VM's speed drifts by ±15 % within minutes); the
# limit is the mean of the two. OpenSSL's one-core figure is shown beside it.
sign_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$OUT/sign-speed-$1.json" "$2"; }
sign_s=$(python3 -c "print(f'{($(sign_field before seconds_per_signature) + $(sign_field after seconds_per_signature)) / 2:.6f}')")
limit=$(python3 -c "print(round(($(sign_field before per_second) + $(sign_field after per_second)) / 2))")
openssl speed -seconds 3 rsa2048 >"$OUT/openssl-speed.txt" 2>/dev/null
# OpenSSL 3: "rsa 2048 bits 0.000214s 0.000013s   4667.6  76076.5"
openssl_s=$(awk '$1 == "rsa" && $2 == "2048" {sub(/s$/, "", $4); print $4; exit}' "$OUT/openssl-speed.txt")
[ -n "$openssl_s" ] || die "could not read openssl speed output ($OUT/openssl-speed.txt)"

say "## 1. Token endpoint (client_credentials, wrk -t2 -c$CONC, $RUNS × ${DURATION} s, tokens/s)"
say ""
say "| server | min | median | max |"
say "|---|---:|---:|---:|"
while read -r name mn md mx; do say "| $name | $mn | $md | $mx |"; done <"$OUT/token.txt"
med() { awk -v n="$1" '$1 == n {print $3}' "$OUT/token.txt"; }
say ""
say "- RS256 signing limit: flyteauth's signing function (aws-lc-rs, examples/sign_speed.rs) on all $NPROC cores, right before and after flyteauth's RS256 runs: $(sign_field before per_second) and $(sign_field after per_second) signatures/s → **$limit signatures/s** (${sign_s} s per signature per core; openssl speed rsa2048, one core: ${openssl_s} s)"
say "- flyteauth RS256 median = $(python3 -c "print(f'{$(med flyteauth-RS256) / $limit:.0%}')") of the signing limit"
say "- flyteauth RS256 / oidc-provider (1 process) = **$(python3 -c "print(f'{$(med flyteauth-RS256) / $(med oidc-provider-x1):.2f}')")×**; / oidc-provider ($NPROC cluster workers) = $(python3 -c "print(f'{$(med flyteauth-RS256) / $(med oidc-provider-x$NPROC):.2f}')")×"
say ""
fi

# ---------------------------------------------------------------- 2. interceptor overhead
if want 2; then
echo "== 2. interceptor overhead ($LOAD_RPC; server cpu 0, client cpu 1; $LOAD_RUNS × ${LOAD_DURATION}s, modes interleaved)"
: >"$OUT/load.txt"
# The three servers run side by side (ports PORT+1..3, all on cpu 0; the idle ones cost
# nothing) and the runs interleave the modes, so slow drift of the machine hits all alike.
declare -A L_PORT L_PID L_TOKEN
base_port=$PORT
n=0
for mode in cache nocache noauth; do
  n=$((n + 1))
  PORT=$((base_port + n))
  dir="$OUT/load-$mode"
  mkdir -p "$dir"
  case $mode in
    cache) write_config "$dir" RS256 true 100000 ;;
    nocache) write_config "$dir" RS256 true 0 ;;
    noauth) write_config "$dir" RS256 false 100000 ;;
  esac
  start_flyteauth "$dir" 0
  L_PORT[$mode]=$PORT
  L_PID[$mode]=$SRV_PID
  [ "$mode" = noauth ] || L_TOKEN[$mode]=$(mint_one "http://127.0.0.1:$PORT/oauth2/token" "$(basic_for "$dir")")
done
PORT=$base_port
# Auth off gets the same request bytes: a token it does not look at.
L_TOKEN[noauth]=${L_TOKEN[nocache]}
for c in 1 16 64; do
  for i in $(seq 1 "$LOAD_RUNS"); do
    for mode in cache nocache noauth; do
      j=$(RPC=$LOAD_RPC SERVER_PID=${L_PID[$mode]} taskset -c 1 "$LOAD" "http://127.0.0.1:${L_PORT[$mode]}" "${L_TOKEN[$mode]}" "$c" "$LOAD_DURATION")
      echo "$j" >>"$OUT/load-$mode-c$c.jsonl"
      read -r r a b e s k < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); n=max(j["requests"],1); print(j["rps"], j["p50_ms"], j["p99_ms"], j["errors"], round(j["server_cpu_s"]*1e6/n, 2), round(j["client_cpu_s"]*1e6/n, 2))' "$j")
      [ "$e" = 0 ] || die "$mode c=$c: $e calls failed"
      echo "  c=$c run $i $mode: $r calls/s p50 ${a} ms p99 ${b} ms; cpu per call: server ${s} µs, client ${k} µs"
    done
  done
  # throughput min/median/max; p50, p99 and CPU per call are medians over the runs
  for mode in cache nocache noauth; do
    echo "$mode $c $(python3 - "$OUT/load-$mode-c$c.jsonl" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rps = [r["rps"] for r in runs]
per = lambda k: [r[k] * 1e6 / max(r["requests"], 1) for r in runs]
print(f"{min(rps):.0f} {st.median(rps):.0f} {max(rps):.0f} "
      f"{st.median(r['p50_ms'] for r in runs):.3f} {st.median(r['p99_ms'] for r in runs):.3f} "
      f"{st.median(per('server_cpu_s')):.1f} {st.median(per('client_cpu_s')):.1f}")
PY
)" >>"$OUT/load.txt"
  done
done
for mode in cache nocache noauth; do stop "${L_PID[$mode]}"; done

say "## 2. Interceptor overhead ($LOAD_RPC, 1 HTTP/2 connection, server cpu 0 / client cpu 1, $LOAD_RUNS × ${LOAD_DURATION} s, modes interleaved)"
say ""
say "| mode | concurrency | calls/s min | median | max | p50 ms | p99 ms | server CPU µs/call | client CPU µs/call |"
say "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
label() { case $1 in cache) echo "(a) auth on, cache warm" ;; nocache) echo "(b) auth on, maxEntries 0" ;; noauth) echo "(c) useAuth false" ;; esac; }
while read -r mode c mn md mx a b sc cc; do say "| $(label "$mode") | $c | $mn | $md | $mx | $a | $b | $sc | $cc |"; done <"$OUT/load.txt"
lmed() { awk -v m="$1" -v c="$2" '$1 == m && $2 == c {print $4}' "$OUT/load.txt"; }
lcpu() { awk -v m="$1" -v c="$2" '$1 == m && $2 == c {print $8}' "$OUT/load.txt"; }
say ""
for c in 1 16 64; do
  say "- c=$c: throughput (a)/(c) = $(python3 -c "print(f'{$(lmed cache "$c") / $(lmed noauth "$c"):.3f}')"), (b)/(c) = $(python3 -c "print(f'{$(lmed nocache "$c") / $(lmed noauth "$c"):.3f}')"); server CPU per call (a) − (c) = $(python3 -c "print(f'{$(lcpu cache "$c") - $(lcpu noauth "$c"):.1f}')") µs, (b) − (c) = $(python3 -c "print(f'{$(lcpu nocache "$c") - $(lcpu noauth "$c"):.1f}')") µs"
done
say ""
fi

# ---------------------------------------------------------------- 3. memory
if want 3; then
echo "== 3. memory ($MEM_TOKENS distinct tokens)"
dir="$OUT/mem"
mkdir -p "$dir"
write_config "$dir" RS256 true 100000
start_flyteauth "$dir" "0-$((NPROC - 1))"
url="http://127.0.0.1:$PORT/oauth2/token"
sleep 1
idle_first=$(rss_kib "$SRV_PID")
node bench/mint.mjs "$url" "$(basic_for "$dir")" "$MEM_TOKENS" 32 "$dir/tokens.txt" | tee "$OUT/mint.json"
stop "$SRV_PID"

: >"$OUT/mem.txt"
for max in 100000 10000 0; do
  write_config "$dir" RS256 true "$max"
  start_flyteauth "$dir" "0-$((NPROC - 1))"
  sleep 1
  idle=$(rss_kib "$SRV_PID")
  j=$("$LOAD" "http://127.0.0.1:$PORT" "@$dir/tokens.txt" 64 600)
  echo "$j" >"$OUT/mem-verify-$max.json"
  n=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["errors"] == 0, j; print(j["requests"])' "$j")
  [ "$n" = "$MEM_TOKENS" ] || die "verified $n tokens, not $MEM_TOKENS"
  sleep 1
  after=$(rss_kib "$SRV_PID")
  hwm=$(hwm_kib "$SRV_PID")
  echo "  maxEntries $max: idle $idle KiB, after $n tokens $after KiB (peak $hwm KiB)"
  echo "$max $idle $after $hwm $(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["rps"]))' "$j")" >>"$OUT/mem.txt"
  stop "$SRV_PID"
done

say "## 3. Memory (RSS, RS256; $MEM_TOKENS distinct client_credentials tokens each verified once over gRPC, c=64)"
say ""
say "First start, idle: $((idle_first / 1024)) MiB. Tokens minted with bench/mint.mjs: $(cat "$OUT/mint.json")."
say ""
say "| tokenCache.maxEntries | idle MiB | after $MEM_TOKENS tokens MiB | growth MiB | peak (VmHWM) MiB | verify calls/s |"
say "|---:|---:|---:|---:|---:|---:|"
while read -r max idle after hwm r; do
  say "| $max | $(python3 -c "print(f'{$idle/1024:.1f}')") | $(python3 -c "print(f'{$after/1024:.1f}')") | $(python3 -c "print(f'{($after-$idle)/1024:.1f}')") | $(python3 -c "print(f'{$hwm/1024:.1f}')") | $r |"
done <"$OUT/mem.txt"
say ""
fi

# ---------------------------------------------------------------- 4. authorization code, refresh
# write_ac_config DIR DATABASE: a server with the local user `bench` (password generated at
# first start into DIR/secrets/bench_password) and the default clients (`flytectl`: public,
# PKCE S256, loopback redirects), signing with $AC_ALG. Defaults otherwise: access token 30m,
# refresh token 1h, code 5m, session 8h idle / 168h absolute.
write_ac_config() {
  local pool=""
  [ -z "${AC_POOL:-}" ] || pool=$'\n'"  connectionPool: { maxOpenConnections: $AC_POOL }"
  cat >"$1/config.yaml" <<EOF
server:
  httpPort: $PORT
  grpc: { port: 0 }
  security: { secure: false, useAuth: true, insecureCookieHeader: true }
secrets:
  secrets-prefix: $1/secrets
database:
  $2$pool
auth:
  authorizedUris: ["http://127.0.0.1:$PORT"]
  userAuth:
    localUsers:
      - { username: bench, passwordSecretName: bench_password, name: bench, email: bench@localhost, groups: [bench] }
  appAuth:
    selfAuthServer: { signingAlgorithm: $AC_ALG }
EOF
}

# wrk_ms FILE PCT: a latency percentile of wrk --latency output, in ms
wrk_ms() {
  awk -v p="$2" '$1 == p {print $2; exit}' "$1" |
    python3 -c 'import re,sys; m=re.fullmatch(r"([\d.]+)(us|ms|s)", sys.stdin.read().strip()); print("%.2f" % (float(m[1]) * dict(us=1e-3, ms=1, s=1e3)[m[2]]))'
}

# ac_wrk FILE MODE WRK-ARGS...: one wrk run of bench/authcode.lua (env from `authcode.py
# params`, COOKIE, REFRESH); fails on any unexpected answer; prints the round trips/s
ac_wrk() {
  local file=$1 mode=$2
  shift 2
  MODE=$mode AUTHORIZE="$AC_AUTHORIZE" TOKEN="$AC_TOKEN" CLIENT="$AC_CLIENT" REDIRECT="$AC_REDIRECT" \
    VERIFIER="$AC_VERIFIER" COOKIE="$AC_COOKIE" REFRESH="${AC_REFRESH:-}" \
    wrk --latency -s bench/authcode.lua "$@" "$AC_BASE" >"$file"
  local n e
  n=$(awk '$1 == "roundtrips" {print $2}' "$file")
  e=$(awk '$1 == "errors" {print $2}' "$file")
  if [ -z "$n" ] || [ "$e" != 0 ] || [ "$n" = 0 ]; then
    {
      cat "$file"
      if [ -n "${AC_LOG:-}" ]; then
        echo "-- first errors and warnings in $AC_LOG:"
        grep -m 5 -E ' (ERROR|WARN) ' "$AC_LOG" | cut -c1-400 || true
      fi
    } >&2
    die "$(basename "$file" .txt): $e unexpected answers, $n round trips"
  fi
  awk '$1 == "rate" {print $2}' "$file"
}

# ac_measure NAME BASE KIND [USER PASSWORD]: log in once (bench/authcode.py), then a 2 s
# warm-up and $AC_RUNS measured runs of each flow; appends to $OUT/authcode$AC_LABEL.txt
ac_measure() {
  local name=$1 kind=$3 login i r code=() refresh=() p50=()
  AC_BASE=$2
  login=$(python3 bench/authcode.py login "$AC_BASE" "$kind" "${@:4}") || die "$name: login + first round trip failed"
  echo "$login" >"$OUT/authcode-$name-login.json"
  AC_COOKIE=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cookie"])' "$login")
  echo "$name $(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("JWT access token (typ %s, alg %s) + refresh token, scope \"%s\"; token response keys: %s" % (j["typ"], j["alg"], j["scope"], ", ".join(j["keys"])))' "$login")" >>"$OUT/authcode-issues$AC_LABEL.txt"
  eval "$(python3 bench/authcode.py params "$AC_BASE" "$kind")"
  AC_REFRESH=
  ac_wrk "$OUT/authcode-$name-code-warmup.txt" code -t2 -c"$AC_CONC" -d2s >/dev/null
  for i in $(seq 1 "$AC_RUNS"); do
    r=$(ac_wrk "$OUT/authcode-$name-code-$i.txt" code -t2 -c"$AC_CONC" -d"${AC_DURATION}s")
    echo "  $name code run $i: $r round trips/s (p50 $(wrk_ms "$OUT/authcode-$name-code-$i.txt" 50%) ms per request)"
    code+=("$r")
  done
  AC_REFRESH=$(python3 bench/authcode.py refresh "$AC_BASE" "$kind" "$AC_COOKIE") || die "$name: no refresh token"
  ac_wrk "$OUT/authcode-$name-refresh-warmup.txt" refresh -t1 -c1 -d2s >/dev/null
  for i in $(seq 1 "$AC_RUNS"); do
    # a new chain per run (the previous one's last token is not kept)
    AC_REFRESH=$(python3 bench/authcode.py refresh "$AC_BASE" "$kind" "$AC_COOKIE") || die "$name: no refresh token"
    r=$(ac_wrk "$OUT/authcode-$name-refresh-$i.txt" refresh -t1 -c1 -d"${AC_DURATION}s")
    p50+=("$(wrk_ms "$OUT/authcode-$name-refresh-$i.txt" 50%)")
    echo "  $name refresh run $i: $r grants/s (p50 ${p50[-1]} ms, p99 $(wrk_ms "$OUT/authcode-$name-refresh-$i.txt" 99%) ms)"
    refresh+=("$r")
  done
  echo "$name $(stats "${code[@]}") $(stats "${refresh[@]}") $(python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "${p50[@]}")" >>"$OUT/authcode$AC_LABEL.txt"
}

# pg_commit_ms URL: median wall time of 30 one-row autocommit INSERTs through psql (a commit's
# WAL flush on this disk), and the server's durability settings
pg_commit_ms() {
  {
    echo 'CREATE TABLE bench_commit_probe (x int);'
    echo '\timing on'
    for i in $(seq 1 30); do echo "INSERT INTO bench_commit_probe VALUES ($i);"; done
    echo '\timing off'
    echo 'DROP TABLE bench_commit_probe;'
  } | psql "$1" -X -q -v ON_ERROR_STOP=1 | awk '/^Time:/ {print $2}' |
    python3 -c 'import statistics,sys; print("%.2f" % statistics.median(float(x) for x in sys.stdin))'
}

if want 4; then
for AC_ALG in $AC_ALGS; do
case $AC_ALG in RS256 | ES256) ;; *) die "AC_ALGS: $AC_ALG (the peer signs RS256 or ES256)" ;; esac
echo "== 4. $AC_ALG: authorization code + PKCE (wrk -t2 -c$AC_CONC) and refresh (wrk -t1 -c1), $AC_RUNS × ${AC_DURATION}s"
AC_LABEL="-$AC_ALG"
: >"$OUT/authcode$AC_LABEL.txt"
: >"$OUT/authcode-issues$AC_LABEL.txt"
pg_info=""
pg_commit=""
http_us=""
# The floor of a refresh at c=1 on this machine: one signature on one thread, and (below) an
# HTTP round trip through wrk that does no work.
"$SIGN_SPEED" 2 1 "$AC_ALG" >"$OUT/sign-speed-one-$AC_ALG.json"
sign_us=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["seconds_per_signature"] * 1e6))' "$OUT/sign-speed-one-$AC_ALG.json")
for store in $AC_STORES; do
  dir="$OUT/authcode-$store$AC_LABEL"
  mkdir -p "$dir"
  case $store in
    sqlite) write_ac_config "$dir" "sqlite: { file: $dir/flyteauth.db }" ;;
    postgres)
      PG_DB="flyteauth_bench_$$"
      psql "$PG_URL/postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$PG_DB\"" >/dev/null ||
        { PG_DB=""; die "cannot create a database on $PG_URL"; }
      write_ac_config "$dir" "url: $PG_URL/$PG_DB"
      pg_commit=$(pg_commit_ms "$PG_URL/$PG_DB")
      pg_info="PostgreSQL $(psql "$PG_URL/$PG_DB" -X -A -t -c 'SHOW server_version' | awk '{print $1}'), synchronous_commit $(psql "$PG_URL/$PG_DB" -X -A -t -c 'SHOW synchronous_commit'), fsync $(psql "$PG_URL/$PG_DB" -X -A -t -c 'SHOW fsync'); a one-row INSERT commits in $pg_commit ms (median of 30, psql on loopback)"
      echo "  $pg_info"
      ;;
    *) die "AC_STORES: unknown store $store (sqlite, postgres)" ;;
  esac
  start_flyteauth "$dir" "0-$((NPROC - 1))"
  if [ -z "$http_us" ]; then
    wrk -t1 -c1 -d3s --latency "http://127.0.0.1:$PORT/healthcheck" >"$OUT/http-floor$AC_LABEL.txt"
    http_us=$(python3 -c "print(round($(wrk_ms "$OUT/http-floor$AC_LABEL.txt" 50%) * 1000))")
  fi
  AC_LOG="$dir/server.log"
  ac_measure "flyteauth-$store$AC_LABEL" "http://127.0.0.1:$PORT" flyteauth bench "$(cat "$dir/secrets/bench_password")"
  stop "$SRV_PID"
  if [ "$store" = postgres ]; then drop_pg_db; fi
done
BENCH_ALG=$AC_ALG node bench/peer/server.mjs "$PORT" 1 >"$OUT/oidc-provider-authcode$AC_LABEL.log" 2>&1 &
peer=$!
PIDS+=("$peer")
wait_http "http://127.0.0.1:$PORT/.well-known/openid-configuration" ||
  { tail -20 "$OUT/oidc-provider-authcode$AC_LABEL.log"; ss -ltnp | grep ":$PORT " || true; die "oidc-provider did not start"; }
AC_LOG="$OUT/oidc-provider-authcode$AC_LABEL.log"
ac_measure "oidc-provider$AC_LABEL" "http://127.0.0.1:$PORT" peer
stop "$peer"

say "## 4$([ "$AC_ALG" = RS256 ] || echo b). $AC_ALG: authorization code + PKCE round trips (wrk -t2 -c$AC_CONC) and refresh grants (wrk -t1 -c1, chained), $AC_RUNS × ${AC_DURATION} s"
say ""
say "A round trip: GET authorize with a logged-in session cookie → 302/303 with a code → POST token (public client, PKCE S256) → 200 with an access and a refresh token. A refresh grant: POST token with the refresh token the previous answer returned (rotation; the old one is spent)."
say ""
while read -r name rest; do say "- $name issues: $rest"; done <"$OUT/authcode-issues$AC_LABEL.txt"
[ -z "$pg_info" ] || say "- $pg_info"
say "- flyteauth: user \`bench\` from \`localUsers\`, client \`flytectl\`, scope \`all offline\`, default lifetimes; oidc-provider: client \`bench-public\` (auth method none), scope \`all\` (no \`openid\`: no id_token), one process, in-memory adapter"
say ""
say "| server | code round trips/s min | median | max | refresh grants/s min | median | max | refresh p50 ms |"
say "|---|---:|---:|---:|---:|---:|---:|---:|"
while read -r name a b c d e f g; do say "| $name | $a | $b | $c | $d | $e | $f | $g |"; done <"$OUT/authcode$AC_LABEL.txt"
acmed() { awk -v n="$1" -v k="$2" '$1 == n {print $k}' "$OUT/authcode$AC_LABEL.txt"; }
say ""
for store in $AC_STORES; do
  say "- $AC_ALG, flyteauth $store / oidc-provider (medians): code round trips **$(python3 -c "print(f'{$(acmed "flyteauth-$store$AC_LABEL" 3) / $(acmed "oidc-provider$AC_LABEL" 3):.2f}')")×**, refresh **$(python3 -c "print(f'{$(acmed "flyteauth-$store$AC_LABEL" 6) / $(acmed "oidc-provider$AC_LABEL" 6):.2f}')")×**"
done
# What 3 × the peer leaves for one refresh at c=1, beside what no implementation avoids here.
budget_us=$(python3 -c "print(round(1e6 / (3 * $(acmed "oidc-provider$AC_LABEL" 6))))")
say "- refresh at c=1, per grant: 3 × oidc-provider's median leaves **$budget_us µs**; on this machine an HTTP round trip through wrk that does no work takes $http_us µs (p50, \`/healthcheck\`), one $AC_ALG signature $sign_us µs (one thread, examples/sign_speed.rs)$([ -z "$pg_commit" ] || echo ", a durable one-row commit on PostgreSQL $(python3 -c "print(round($pg_commit * 1000))") µs (psql, above)")"
say ""
done
fi

# ---------------------------------------------------------------- 5. memory with sessions
if want 5; then
echo "== 5. memory with $MEM_SESSIONS sessions in the SQLite store"
dir="$OUT/sessions"
mkdir -p "$dir"
write_ac_config "$dir" "sqlite: { file: $dir/flyteauth.db }"
start_flyteauth "$dir" "0-$((NPROC - 1))"
sleep 1
idle_empty=$(rss_kib "$SRV_PID")
stop "$SRV_PID"
# The rows Sessions::create writes at a login (src/session.rs), inserted with the server stopped.
profile='{"subject":"bench","name":"bench","preferred_username":"bench","email":"bench@localhost","groups":["bench"]}'
python3 bench/sessions.py insert "$dir/flyteauth.db" "$MEM_SESSIONS" "$dir/cookies.txt" bench "$profile" $((168 * 3600)) | tee "$OUT/sessions-insert.json"
db_kib=$(du -k "$dir/flyteauth.db" | awk '{print $1}')
start_flyteauth "$dir" "0-$((NPROC - 1))"
sleep 1
idle_sessions=$(rss_kib "$SRV_PID")
# one of the inserted cookies is a live session
me=$(curl -fsS -H "Cookie: flyte_session=$(head -1 "$dir/cookies.txt")" "http://127.0.0.1:$PORT/me") ||
  die "/me refused an inserted session"
[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["subject"])' "$me")" = bench ] || die "/me: $me"
python3 bench/sessions.py me "http://127.0.0.1:$PORT" "$dir/cookies.txt" "$ME_CALLS" bench | tee "$OUT/sessions-me.json"
sleep 1
after_me=$(rss_kib "$SRV_PID")
hwm=$(hwm_kib "$SRV_PID")
stop "$SRV_PID"
rows=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM sessions").fetchone()[0])' "$dir/flyteauth.db")
echo "  idle empty $idle_empty KiB; idle with $MEM_SESSIONS sessions $idle_sessions KiB; after /me × $ME_CALLS $after_me KiB (peak $hwm KiB); $rows sessions in the store after"
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
say "## 5. Memory with $MEM_SESSIONS browser sessions in the store (SQLite, RSS)"
say ""
say "Sessions inserted with bench/sessions.py while the server was stopped: $(cat "$OUT/sessions-insert.json"); database file $(mib "$db_kib") MiB. /me answered 200 for the first inserted cookie; then /me with $ME_CALLS distinct inserted sessions, one keep-alive connection: $(cat "$OUT/sessions-me.json")."
say ""
say "| state | RSS MiB |"
say "|---|---:|"
say "| idle, empty store (first start) | $(mib "$idle_empty") |"
say "| idle, $MEM_SESSIONS sessions in the store | $(mib "$idle_sessions") |"
say "| after /me with $ME_CALLS of them | $(mib "$after_me") |"
say "| peak (VmHWM) | $(mib "$hwm") |"
say ""
say "- sessions in the store afterwards: $rows"
say ""
fi

# ---------------------------------------------------------------- 6. verification micro-benchmarks
if want 6; then
echo "== 6. token verification micro-benchmarks (criterion, bench/micro)"
CARGO_TARGET_DIR="$TARGET" "${CARGO:-cargo}" bench --manifest-path bench/micro/Cargo.toml -- \
  --warm-up-time 1 --measurement-time "$MICRO_TIME" >"$OUT/micro.txt" 2>&1 ||
  { tail -30 "$OUT/micro.txt"; die "the micro-benchmarks failed"; }
say "## 6. Token verification micro-benchmarks (criterion, bench/micro, medians)"
say ""
python3 bench/micro/summary.py "$TARGET/criterion" | tee -a "$SUMMARY"
say ""
fi

# ---------------------------------------------------------------- 7. token exchange
if want 7; then
echo "== 7. token exchange (wrk -t2 -c$CONC, $RUNS × ${DURATION}s; $EX_TOKENS subject tokens per run)"
: >"$OUT/exchange.txt"
EX_ISSUER=https://kubernetes.default.svc.cluster.local
# ex_tokens: a fresh file of subject tokens (and, the first time, the issuer's key and JWKS)
ex_tokens() {
  node bench/exchange_tokens.mjs "$EX_ISSUER" "$OUT/exchange-jwks.json" "$OUT/exchange-key.pem" \
    "$EX_TOKENS" "$OUT/exchange-tokens.txt"
}
# ex_runs NAME URL MODE(ex|cc) BASIC → appends "NAME min median max" to $OUT/exchange.txt
ex_runs() {
  local name=$1 url=$2 mode=$3 basic=$4 rps=() i d f r p50 p99
  for i in warmup $(seq 1 "$RUNS"); do
    d=$DURATION
    [ "$i" != warmup ] || d=2
    f="$OUT/wrk-$name-$i.txt"
    if [ "$mode" = ex ]; then
      ex_tokens
      TOKENS="$OUT/exchange-tokens.txt" THREADS=2 wrk -t2 -c"$CONC" -d"${d}s" --latency -s bench/exchange.lua "$url" >"$f"
    else
      BASIC=$basic wrk -t2 -c"$CONC" -d"${d}s" --latency -s bench/token.lua "$url" >"$f"
    fi
    if grep -q 'Non-2xx' "$f"; then
      cat "$f"; die "$name: the token endpoint answered errors (exchanges: more grants than EX_TOKENS?)"
    fi
    [ "$i" != warmup ] || continue
    r=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    echo "  $name run $i: $r grants/s (p50 $p50, p99 $p99)"
    rps+=("$r")
  done
  echo "$name $(stats "${rps[@]}")" >>"$OUT/exchange.txt"
}
ex_tokens # the JWKS file must exist before the server starts
for alg in RS256 ES256; do
  dir="$OUT/exchange-$alg"
  mkdir -p "$dir"
  write_config "$dir" "$alg" true 100000
  cat >>"$dir/config.yaml" <<EOF
      trustedIssuers:
        - issuer: $EX_ISSUER
          jwksFile: $OUT/exchange-jwks.json
          audiences: [flyteauth]
          subjects:
            "system:serviceaccount:flyte:flytepropeller": { clientId: flytepropeller, scopes: [all] }
EOF
  start_flyteauth "$dir" "0-$((NPROC - 1))"
  url="http://127.0.0.1:$PORT/oauth2/token"
  got=$(curl -fsS --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
    --data-urlencode "subject_token=$(head -1 "$OUT/exchange-tokens.txt")" "$url" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  [ "$(jwt_alg "$got")" = "$alg" ] || die "flyteauth $alg issued a $(jwt_alg "$got") token"
  ex_runs "exchange-$alg" "$url" ex ""
  ex_runs "client_credentials-$alg" "$url" cc "$(basic_for "$dir")"
  stop "$SRV_PID"
done
xmed() { awk -v n="$1" '$1 == n {print $3}' "$OUT/exchange.txt"; }
say "## 7. Token exchange (RFC 8693, ES256 service-account tokens in, a fresh one per grant; wrk -t2 -c$CONC, $RUNS × ${DURATION} s, grants/s)"
say ""
say "| grant, access token alg | min | median | max |"
say "|---|---:|---:|---:|"
while read -r name mn md mx; do say "| $name | $mn | $md | $mx |"; done <"$OUT/exchange.txt"
say ""
for alg in RS256 ES256; do
  say "- $alg out: token exchange / client_credentials = **$(python3 -c "print(f'{$(xmed exchange-$alg) / $(xmed client_credentials-$alg):.2f}')")×** (target ≥ 0.8×)"
done
say ""
fi

# ---------------------------------------------------------------- 8. the gateway
if want 8; then
echo "== 8. gateway (GetDomains on a fast upstream: direct, flyteauth's gateway, nginx + auth_request; servers cpu 0, client cpu 1; $GW_RUNS × ${GW_DURATION}s)"
: >"$OUT/gw.txt"
dir="$OUT/gw"
mkdir -p "$dir/nginx"
UP_PORT=$((PORT + 10))
NGINX_PORT=$((PORT + 11))
taskset -c 0 "$GW_UPSTREAM" "127.0.0.1:$UP_PORT" >>"$dir/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
write_config "$dir" RS256 true 100000
cat >>"$dir/config.yaml" <<EOF
gateway:
  upstreams:
    - name: bench
      url: http://127.0.0.1:$UP_PORT
      services: [flyteidl.service.AdminService]
EOF
start_flyteauth "$dir" 0
GW_PID=$SRV_PID
gw_token=$(mint_one "http://127.0.0.1:$PORT/oauth2/token" "$(basic_for "$dir")")
# nginx: h2c in front of the upstream; every call first asks flyteauth's /me with the caller's
# token (the subrequest has no body, and its content-type is cleared: a GET is no gRPC call).
cat >"$dir/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity 0001;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # one client connection carries the whole run (nginx's default closes it after 1000 calls)
  keepalive_requests 100000000;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  upstream flyteauth { server 127.0.0.1:$PORT; keepalive 64; }
  upstream admin { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT http2;
    location = /_auth {
      internal;
      proxy_pass http://flyteauth/me;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_method GET;
    }
    location / {
      auth_request /_auth;
      grpc_pass grpc://admin;
    }
  }
}
EOF
"$NGINX" -c "$dir/nginx/nginx.conf" -p "$dir/nginx" >>"$dir/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
sleep 1
kill -0 "$NGINX_PID" 2>/dev/null || { cat "$dir/nginx/error.log" "$dir/nginx/stdout.log"; die "nginx did not start"; }
declare -A G_URL G_PID
G_URL[direct]="http://127.0.0.1:$UP_PORT"
G_PID[direct]=$UP_PID
G_URL[gateway]="http://127.0.0.1:$PORT"
G_PID[gateway]=$GW_PID
G_URL[nginx]="http://127.0.0.1:$NGINX_PORT"
G_PID[nginx]=$NGINX_PID
# A call without a token is refused by both auth paths (before the upstream).
for mode in gateway nginx; do
  j=$(RPC=GetDomains taskset -c 1 "$LOAD" "${G_URL[$mode]}" - 1 1 2>/dev/null || true)
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["requests"] == 0 and j["errors"] > 0, j' "$j" ||
    die "$mode: a call without a token was not refused"
done
for c in 1 16 64; do
  for i in $(seq 1 "$GW_RUNS"); do
    for mode in direct gateway nginx; do
      j=$(RPC=GetDomains SERVER_PID=${G_PID[$mode]} taskset -c 1 "$LOAD" "${G_URL[$mode]}" "$gw_token" "$c" "$GW_DURATION")
      echo "$j" >>"$OUT/gw-$mode-c$c.jsonl"
      read -r r a b e < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["rps"], j["p50_ms"], j["p99_ms"], j["errors"])' "$j")
      [ "$e" = 0 ] || die "gateway phase, $mode c=$c: $e calls failed"
      echo "  c=$c run $i $mode: $r calls/s p50 ${a} ms p99 ${b} ms"
    done
  done
  for mode in direct gateway nginx; do
    echo "$mode $c $(python3 - "$OUT/gw-$mode-c$c.jsonl" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rps = [r["rps"] for r in runs]
print(f"{min(rps):.0f} {st.median(rps):.0f} {max(rps):.0f} "
      f"{st.median(r['p50_ms'] for r in runs):.3f} {st.median(r['p99_ms'] for r in runs):.3f}")
PY
)" >>"$OUT/gw.txt"
  done
done
stop "$NGINX_PID"
stop "$GW_PID"
stop "$UP_PID"
say "## 8. Gateway (AdminService/GetDomains on a fast upstream, 1 HTTP/2 connection, servers cpu 0 / client cpu 1, $GW_RUNS × ${GW_DURATION} s, modes interleaved)"
say ""
say "| path | concurrency | calls/s min | median | max | p50 ms | p99 ms |"
say "|---|---:|---:|---:|---:|---:|---:|"
glabel() { case $1 in direct) echo "upstream directly" ;; gateway) echo "flyteauth gateway" ;; nginx) echo "nginx + auth_request /me" ;; esac; }
while read -r mode c mn md mx a b; do say "| $(glabel "$mode") | $c | $mn | $md | $mx | $a | $b |"; done <"$OUT/gw.txt"
gmed() { awk -v m="$1" -v c="$2" '$1 == m && $2 == c {print $4}' "$OUT/gw.txt"; }
gp50() { awk -v m="$1" -v c="$2" '$1 == m && $2 == c {print $6}' "$OUT/gw.txt"; }
say ""
say "- c=64: gateway / nginx+auth_request throughput = **$(python3 -c "print(f'{$(gmed gateway 64) / $(gmed nginx 64):.2f}')")×** (target ≥ 2×)"
say "- c=1: p50 added to the direct call by the gateway = **$(python3 -c "print(f'{($(gp50 gateway 1) - $(gp50 direct 1)) * 1000:.0f}')") µs** (target ≤ 100 µs); by nginx + auth_request = $(python3 -c "print(f'{($(gp50 nginx 1) - $(gp50 direct 1)) * 1000:.0f}')") µs"
say ""
fi

# ---------------------------------------------------------------- 9. Connect vs gRPC
if want 9; then
echo "== 9. Connect vs gRPC unary ($LOAD_RPC; server cpu 0, client cpu 1; $LOAD_RUNS × ${LOAD_DURATION}s, protocols interleaved)"
: >"$OUT/connect.txt"
dir="$OUT/connect"
mkdir -p "$dir"
write_config "$dir" RS256 true 100000
start_flyteauth "$dir" 0
ctoken=$(mint_one "http://127.0.0.1:$PORT/oauth2/token" "$(basic_for "$dir")")
for c in 1 16 64; do
  for i in $(seq 1 "$LOAD_RUNS"); do
    for proto in grpc connect; do
      j=$(RPC=$LOAD_RPC PROTOCOL=$proto SERVER_PID=$SRV_PID taskset -c 1 "$LOAD" "http://127.0.0.1:$PORT" "$ctoken" "$c" "$LOAD_DURATION")
      echo "$j" >>"$OUT/connect-$proto-c$c.jsonl"
      read -r r a b e < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["rps"], j["p50_ms"], j["p99_ms"], j["errors"])' "$j")
      [ "$e" = 0 ] || die "connect phase, $proto c=$c: $e calls failed"
      echo "  c=$c run $i $proto: $r calls/s p50 ${a} ms p99 ${b} ms"
    done
  done
  for proto in grpc connect; do
    echo "$proto $c $(python3 - "$OUT/connect-$proto-c$c.jsonl" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rps = [r["rps"] for r in runs]
cpu = [r["server_cpu_s"] * 1e6 / max(r["requests"], 1) for r in runs if r["server_cpu_s"] is not None]
print(f"{min(rps):.0f} {st.median(rps):.0f} {max(rps):.0f} "
      f"{st.median(r['p50_ms'] for r in runs):.3f} {st.median(r['p99_ms'] for r in runs):.3f} "
      f"{st.median(cpu) if cpu else float('nan'):.1f}")
PY
)" >>"$OUT/connect.txt"
  done
done
stop "$SRV_PID"

say "## 9. Connect vs gRPC unary ($LOAD_RPC, auth on, 1 HTTP/2 connection, server cpu 0 / client cpu 1, $LOAD_RUNS × ${LOAD_DURATION} s, protocols interleaved)"
say ""
say "| protocol | concurrency | calls/s min | median | max | p50 ms | p99 ms | server CPU µs/call |"
say "|---|---:|---:|---:|---:|---:|---:|---:|"
while read -r proto c mn md mx a b sc; do say "| $proto | $c | $mn | $md | $mx | $a | $b | $sc |"; done <"$OUT/connect.txt"
say ""
for c in 1 16 64; do
  g=$(awk -v c="$c" '$1 == "grpc" && $2 == c {print $4}' "$OUT/connect.txt")
  k=$(awk -v c="$c" '$1 == "connect" && $2 == c {print $4}' "$OUT/connect.txt")
  say "- c=$c: Connect / gRPC median throughput = **$(python3 -c "print(f'{$k / $g:.2f}')")×** (target: ≥ 0.90×)"
done
say ""
fi

# ---------------------------------------------------------------- 10. roles: bindings on vs auth off
if want 10; then
echo "== 10. roles ($LOAD_RPC with 1,000 bindings vs useAuth false; server cpu 0, client cpu 1; c=$ROLES_CONC)"
: >"$OUT/roles.txt"
declare -A R_PORT R_PID R_TOKEN
base_port=$PORT
n=40
for mode in bindings noauth; do
  n=$((n + 1))
  PORT=$((base_port + n))
  dir="$OUT/roles-$mode"
  mkdir -p "$dir"
  case $mode in
    bindings)
      write_config "$dir" RS256 true 100000
      # 999 team bindings the caller is not in, and flytepropeller (the caller) by client id.
      python3 - >>"$dir/config.yaml" <<'PY'
print("  authorization:\n    bindings:")
for i in range(999):
    print(f"      - {{ role: contributor, groups: [team-{i}], projects: [p-{i}], domains: [development, staging] }}")
print("      - { role: viewer, clients: [flytepropeller], projects: ['*'], domains: ['*'] }")
PY
      ;;
    noauth) write_config "$dir" RS256 false 100000 ;;
  esac
  start_flyteauth "$dir" 0
  R_PORT[$mode]=$PORT
  R_PID[$mode]=$SRV_PID
done
PORT=$base_port
R_TOKEN[bindings]=$(mint_one "http://127.0.0.1:${R_PORT[bindings]}/oauth2/token" "$(basic_for "$OUT/roles-bindings")")
R_TOKEN[noauth]=${R_TOKEN[bindings]}
for c in $ROLES_CONC; do
  for i in $(seq 1 "$LOAD_RUNS"); do
    for mode in bindings noauth; do
      j=$(RPC=$LOAD_RPC SERVER_PID=${R_PID[$mode]} taskset -c 1 "$LOAD" "http://127.0.0.1:${R_PORT[$mode]}" "${R_TOKEN[$mode]}" "$c" "$LOAD_DURATION")
      read -r r e < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["rps"], j["errors"])' "$j")
      [ "$e" = 0 ] || die "roles $mode c=$c: $e calls failed"
      echo "  c=$c run $i $mode: $r calls/s"
      echo "$mode $c $r" >>"$OUT/roles.txt"
    done
  done
done
for mode in bindings noauth; do stop "${R_PID[$mode]}"; done
say "## 10. Roles: $LOAD_RPC with 1,000 bindings vs useAuth false ($LOAD_RUNS × ${LOAD_DURATION} s, medians; target ≥ 0.9 × at c=64)"
say ""
say "| concurrency | bindings calls/s | auth off calls/s | ratio |"
say "|---:|---:|---:|---:|"
for c in $ROLES_CONC; do
  say "| $c | $(python3 - "$OUT/roles.txt" "$c" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda m: st.median(float(r[2]) for r in rows if r[0] == m and r[1] == sys.argv[2])
b, n = med("bindings"), med("noauth")
print(f"{b:.0f} | {n:.0f} | {b / n:.3f}")
PY
) |"
done
say ""
fi

say "- load after: $(uptime | sed 's/.*load average/load average/')"
echo
echo "== summary: $SUMMARY"
cat "$SUMMARY"

# A run of every phase replaces the generated part of docs/BENCHMARKS.md (between its
# bench:begin / bench:end markers); the discussion around it is written by hand.
# WRITE_DOCS=0 leaves the file alone.
if [ "${WRITE_DOCS:-1}" = 1 ] && [ "$(echo $PHASES)" = "1 2 3 4 5 6 7 8 9 10" ]; then
  python3 - docs/BENCHMARKS.md "$SUMMARY" <<'PY'
import sys
doc, summary = sys.argv[1], open(sys.argv[2]).read().rstrip()
text = open(doc).read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
if begin in text and end in text:
    a, b = text.index(begin) + len(begin), text.index(end)
    open(doc, "w").write(text[:a] + "\n" + summary + "\n" + text[b:])
    print("== the tables are in docs/BENCHMARKS.md now")
PY
fi
