#!/usr/bin/env bash
# Create or refresh what the project runs on: node_modules (npm ci), the Python virtual
# environment .venv, and Debian's chromium for the dashboard's browser tests. Each part only runs
# when its inputs changed since the last run (or, for chromium, when it is missing), so calling
# this before every test run is cheap. Works offline against the npm registry and PyPI mirrors.
#
#   bash scripts/setup.sh [--check] [node] [python] [chromium]
#
# With no part named, all three. Who calls it with which parts (docs/training.md, "Setting up"):
#   npm test   all three (scripts/test.sh)
#   npm start  node only: serving needs no Python
#   the job manager, when a training job leaves the queue: python (the local trainer's .venv)
# --check changes nothing: it exits 1 when a named part is missing or stale (naming it on stderr),
# 0 when all are up to date.
# SETUP_VERBOSE=1 lets pip print what it collects and installs (the job manager shows those lines
# as the job's progress); by default pip is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"   # the CPU wheel of this machine kind
PYTHON="${PYTHON:-python3}"

check=0
parts=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    node | python | chromium) parts+=("$arg") ;;
    *) echo "usage: bash scripts/setup.sh [--check] [node] [python] [chromium]" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=(node python chromium)
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }

# A missing file adds nothing (and, under pipefail, must not end the script).
stamp_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1; }
stale=()
started=$SECONDS
took() { echo "$((SECONDS - started)) s"; }

# --- Node -----------------------------------------------------------------------------------
if wants node; then
  node_stamp=$(stamp_of package.json package-lock.json .npmrc)
  if [ ! -f node_modules/.setup-stamp ] || [ "$(cat node_modules/.setup-stamp)" != "$node_stamp" ]; then
    if [ "$check" = 1 ]; then
      stale+=(node_modules)
    else
      started=$SECONDS
      echo "[setup] npm ci: node_modules is missing or stale (a few minutes on a fresh clone, docs/training.md \"Setting up\")" >&2
      npm ci --no-fund --no-audit --loglevel=error
      echo "$node_stamp" > node_modules/.setup-stamp
      echo "[setup] node_modules ready in $(took)" >&2
    fi
  fi
fi

# --- Python ---------------------------------------------------------------------------------
if wants python; then
  py_stamp=$(echo "$TORCH_SPEC" | cat - requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ] || [ ! -f .venv/.setup-stamp ] || [ "$(cat .venv/.setup-stamp)" != "$py_stamp" ]; then
    if [ "$check" = 1 ]; then
      stale+=(.venv)
    else
      started=$SECONDS
      quiet=(--quiet)
      [ "${SETUP_VERBOSE:-0}" = 1 ] && quiet=(--progress-bar off)
      echo "[setup] python virtual environment .venv: $TORCH_SPEC and requirements.txt (a few minutes on a fresh clone, docs/training.md \"Setting up\")" >&2
      [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
      .venv/bin/python -m pip install "${quiet[@]}" --disable-pip-version-check --upgrade pip
      .venv/bin/python -m pip install "${quiet[@]}" --disable-pip-version-check "$TORCH_SPEC" \
        -r requirements.txt -c constraints.txt
      echo "$py_stamp" > .venv/.setup-stamp
      echo "[setup] .venv ready in $(took)" >&2
    fi
  fi
fi

# --- Chromium (the dashboard's browser tests, test/dashboard/browser.test.ts) ------------------
# Debian's chromium package, driven by playwright-core; CHROMIUM_PATH names another build.
if wants chromium && [ -z "${CHROMIUM_PATH:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$check" = 1 ]; then
    stale+=(chromium)
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
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

if [ ${#stale[@]} -gt 0 ]; then
  echo "[setup] missing or stale: ${stale[*]}" >&2
  exit 1
fi
