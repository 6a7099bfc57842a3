#!/usr/bin/env bash
# Create or refresh what the project runs on: node_modules (npm ci), the Python virtual
# environment .venv, and Debian's chromium for the dashboard's browser tests. Each step only runs
# when its inputs changed since the last run (or, for chromium, when it is missing), so calling
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

# --- Chromium (the dashboard's browser tests, test/dashboard/browser.test.ts) ------------------
# Debian's chromium package, driven by playwright-core; CHROMIUM_PATH names another build.
if [ -z "${CHROMIUM_PATH:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] apt-get install chromium" >&2
    install_chromium() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1
    }
    if ! install_chromium && ! { apt-get update -qq >/dev/null 2>&1 && install_chromium; }; then
      echo "[setup] could not install chromium: the dashboard's browser tests will fail." >&2
      echo "[setup] Install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH to a Chromium binary." >&2
    fi
  else
    echo "[setup] /usr/bin/chromium is missing and this is not root with apt-get: the dashboard's browser tests will fail." >&2
    echo "[setup] Install it (sudo apt-get install chromium) or set CHROMIUM_PATH to a Chromium binary." >&2
  fi
fi
