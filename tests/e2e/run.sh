#!/usr/bin/env bash
# End-to-end suite: real peers (flytekit, flyteidl's Python stubs, grpcio-reflection)
# against the flyteauth binary ($FLYTEAUTH_BIN, default <repo>/target/debug/flyteauth).
# Usage: bash tests/e2e/run.sh [pytest args...]
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$E2E_DIR/../.." && pwd)"
VENV="$E2E_DIR/.venv"
PYTHON="${E2E_PYTHON:-python3.11}"
STAMP="$VENV/.requirements-installed"

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$E2E_DIR/requirements.txt" -nt "$STAMP" ]]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$E2E_DIR/requirements.txt"
    touch "$STAMP"
fi

# Flyte 2's SDK (`flyte`) and the Flyte 2 upstream stand-in run in a venv of their own: their
# protobuf and flyteidl2 pins differ from flytekit 1.16's. Tests start it as a subprocess
# through $E2E_FLYTE2_PYTHON.
VENV2="$E2E_DIR/.venv2"
STAMP2="$VENV2/.requirements-installed"
if [[ ! -x "$VENV2/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV2"
fi
if [[ ! -f "$STAMP2" || "$E2E_DIR/requirements-flyte2.txt" -nt "$STAMP2" ]]; then
    "$VENV2/bin/pip" install --quiet --disable-pip-version-check -r "$E2E_DIR/requirements-flyte2.txt"
    touch "$STAMP2"
fi
export E2E_FLYTE2_PYTHON="$VENV2/bin/python"

# Node peers (openid-client): npm ci from the committed lock file when node_modules is missing
# or older than package.json / package-lock.json.
NODE_DIR="$E2E_DIR/node"
NODE_STAMP="$NODE_DIR/node_modules/.e2e-npm-ci"
if [[ ! -f "$NODE_STAMP" || "$NODE_DIR/package-lock.json" -nt "$NODE_STAMP" || "$NODE_DIR/package.json" -nt "$NODE_STAMP" ]]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$NODE_STAMP"
fi

# Browser peers (oidc-provider as the IdP, playwright-core driving the system Chromium):
# same npm ci rule, in their own folder.
BROWSER_DIR="$E2E_DIR/browser"
BROWSER_STAMP="$BROWSER_DIR/node_modules/.e2e-npm-ci"
if [[ ! -f "$BROWSER_STAMP" || "$BROWSER_DIR/package-lock.json" -nt "$BROWSER_STAMP" || "$BROWSER_DIR/package.json" -nt "$BROWSER_STAMP" ]]; then
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$BROWSER_STAMP"
fi
# The browser tests fail (never skip) without Chromium; say so up front.
if [[ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]]; then
    echo "run.sh: Chromium not found at ${CHROMIUM_PATH:-/usr/bin/chromium}; the test_browser_* tests will fail." \
         "Install it with: apt-get install -y chromium" >&2
fi

# flytekit caches tokens in the OS keyring; headless machines have none.
export PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring"
export FLYTEAUTH_BIN="${FLYTEAUTH_BIN:-$REPO_DIR/target/debug/flyteauth}"
# Never let a proxy from the environment sit between the tests and 127.0.0.1.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

cd "$REPO_DIR"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --timeout=120 tests/e2e/python "$@"
