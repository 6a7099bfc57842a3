#!/usr/bin/env bash
# Create or refresh what the project runs on: node_modules (npm ci) and the Python virtual
# environment .venv. Each step only runs when its inputs changed since the last run, so calling
# this before every test run is cheap. Works offline against the npm registry and PyPI mirrors.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"   # the CPU wheel of this machine kind
PYTHON="${PYTHON:-python3}"

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# --- Node -----------------------------------------------------------------------------------
node_stamp=$(stamp_of package.json package-lock.json .npmrc)
if [ ! -f node_modules/.setup-stamp ] || [ "$(cat node_modules/.setup-stamp)" != "$node_stamp" ]; then
  echo "[setup] npm ci" >&2
  npm ci --no-fund --no-audit --loglevel=error
  echo "$node_stamp" > node_modules/.setup-stamp
fi

# --- Python ---------------------------------------------------------------------------------
py_stamp=$(echo "$TORCH_SPEC" | cat - requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.setup-stamp ] || [ "$(cat .venv/.setup-stamp)" != "$py_stamp" ]; then
  echo "[setup] python virtual environment .venv" >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" \
    -r requirements.txt -c constraints.txt
  echo "$py_stamp" > .venv/.setup-stamp
fi
