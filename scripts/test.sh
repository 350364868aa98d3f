#!/usr/bin/env bash
# Run the test suite in the platform venv (scripts/setup.sh puts it on PATH first).
# Extra arguments go to pytest. Artifacts (screenshots, benchmark JSON) land in test-artifacts/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
mkdir -p test-artifacts
# pytest imports test modules by basename (rootdir conftest, "prepend" mode): two test files
# with one name in different folders cannot both be collected.
dupes=$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d)
if [ -n "$dupes" ]; then echo "duplicate test file names (rename one of each): $dupes" >&2; exit 1; fi
ruff check .
ruff format --check . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
# TypeScript unit tests of the JupyterLab extension (setup.sh installed its node_modules).
npm test --silent --prefix lab-extensions/sciplat-lab
# -P: the checkout's sciplat/ must not shadow the installed package (a non-editable install, made
# when other accounts cannot read the checkout, has sciplat.hub etc. only where it was installed).
exec python -P -m pytest -p no:cacheprovider --timeout=900 "$@"
