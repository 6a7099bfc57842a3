#!/usr/bin/env bash
# The project's one test command (npm test): set up what is missing or stale, then lint, the jest
# suite and the trainer's pytest suite. Used by CI (.ci/run) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] lint" >&2
npm run --silent lint
echo "[test] jest" >&2
npx jest --ci
echo "[test] pytest" >&2
.venv/bin/python -m pytest -q trainer/tests
