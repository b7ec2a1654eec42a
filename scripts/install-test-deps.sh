#!/usr/bin/env bash
# Install what the integration and interop tests need, from the package
# registries only. Idempotent: every step is skipped when its lock file
# (requirements.txt, package-lock.json) has not changed since it last ran, so
# `.ci/run` can call this before every test run.
#
# Assumes a Debian machine with Rust, Python 3.11 and Node 20 (npm) present,
# run as root (or with the apt packages already installed).
#
#   .venv/                       PyPI `mcp` (tests/interop/requirements.txt):
#                                py_client.py, py_demo_server.py; its dependency
#                                `jsonschema` checks fixtures (schemas/fixture.schema.json) and audit records
#   .venv-ws/                    PyPI `mcp[ws]==1.30.0` (tests/interop/requirements-ws.txt):
#                                the last Python SDK with a WebSocket client and server
#                                (py_ws_server.py, py_ws_client.py); its own venv, since
#                                2.x removed them
#   tests/interop/node_modules   TS SDK v1 + server-everything (Node 20), oidc-provider
#                                (oidc_provider.mjs, run with node22: the auth tests' IdP)
#   tests/interop/node22/...     Node 22 + conformance + Inspector, see below
#
# Why tests/interop/node22 instead of `npx -y -p node@22 -p PKG`: the
# conformance runner crashes on Node 20 (no fs.globSync) and the Inspector
# declares Node >= 22.19. The npm package `node` ships a real Node binary (its
# preinstall fetches node-<os>-<arch> of the same version), so pinning `node`,
# the runner and the Inspector in one package.json + package-lock.json and
# installing with `npm ci` gives exact versions, no `node@22` range resolved
# at test time, no npx cache keyed on the spelling of the command, and a
# re-run that works offline from ~/.npm once it has run once. The tests call
# node22/node_modules/node/bin/node on the packages' entry files directly.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
interop=tests/interop

log() { printf 'install-test-deps: %s\n' "$*" >&2; }


# --- Debian packages -----------------------------------------------------------
# Add packages here as tests need them (e.g. redis-server for the [state]
# tests, a load balancer for the multi-replica tests).
apt_packages=()
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt_packages+=(python3-venv) # Debian's python3 ships venv without ensurepip
fi
if ! command -v openssl >/dev/null 2>&1; then
  apt_packages+=(openssl) # the auth tests generate their signing keys with it
fi
# The [state] tests start a real redis-server on a random loopback port; the
# multi-replica tests put a real HAProxy (round-robin) in front of gateways.
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
command -v haproxy >/dev/null 2>&1 || apt_packages+=(haproxy)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- cargo-nextest (the test runner .ci/run uses) ------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

# --- Python venv -----------------------------------------------------------------
py_stamp=.venv/.requirements.sha256
py_want=$( (python3 --version; cat "$interop/requirements.txt") | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$py_stamp" 2>/dev/null)" = "$py_want" ]; then
  log ".venv up to date"
else
  log "creating .venv from $interop/requirements.txt"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/python -m pip install --disable-pip-version-check --quiet -r "$interop/requirements.txt"
  echo "$py_want" >"$py_stamp"
fi

# --- Python venv for WebSocket (mcp 1.x) -------------------------------------------
# One venv for every WebSocket counterpart (client and server): `mcp` 2.x, in
# .venv, no longer has them.
ws_stamp=.venv-ws/.requirements.sha256
ws_want=$( (python3 --version; cat "$interop/requirements-ws.txt") | sha256sum | cut -d' ' -f1)
if [ -x .venv-ws/bin/python ] && [ "$(cat "$ws_stamp" 2>/dev/null)" = "$ws_want" ]; then
  log ".venv-ws up to date"
else
  log "creating .venv-ws from $interop/requirements-ws.txt"
  rm -rf .venv-ws
  python3 -m venv .venv-ws
  .venv-ws/bin/python -m pip install --disable-pip-version-check --quiet -r "$interop/requirements-ws.txt"
  echo "$ws_want" >"$ws_stamp"
fi

# --- npm packages ------------------------------------------------------------------
# npm ci where it works; `npm install --no-save` (which installs exactly the
# lock file's tree and never rewrites it) in node22/: vite, an Inspector
# dependency, names an optional Windows-only dependency that is not on the
# registry (404), so the lock file has no entry for it and npm ci refuses the
# lock as out of sync although npm install accepts it.
npm_install() {
  local dir=$1 how=$2
  local stamp="$dir/node_modules/.package-lock.sha256"
  local want
  want=$( (node --version; cat "$dir/package.json" "$dir/package-lock.json") | sha256sum | cut -d' ' -f1)
  if [ -d "$dir/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "$dir/node_modules up to date"
    return
  fi
  log "npm $how in $dir"
  rm -rf "$dir/node_modules"
  # --loglevel=error hides the expected EBADENGINE warnings (packages asking
  # for Node 22 while npm runs on 20).
  if [ "$how" = ci ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
  fi
  echo "$want" >"$stamp"
}
npm_install "$interop" ci
npm_install "$interop/node22" install

node22="$interop/node22/node_modules/node/bin/node"
if ! "$node22" --version | grep -q '^v22\.'; then
  log "$node22 is not Node 22 (did the \`node\` package's preinstall run? allowScripts in node22/package.json)"
  exit 1
fi
log "ready: $(.venv/bin/python --version), node $(node --version), node22 $("$node22" --version)"
