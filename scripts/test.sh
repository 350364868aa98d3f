#!/usr/bin/env bash
# Run the test suite in the platform venv (scripts/setup.sh puts it on PATH first).
# Extra arguments go to pytest. Artifacts (screenshots, benchmark JSON) land in test-artifacts/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
mkdir -p test-artifacts
ruff check .
ruff format --check . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
exec python -m pytest -p no:cacheprovider --timeout=900 "$@"
