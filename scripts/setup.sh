#!/usr/bin/env bash
# Creates .venv with thorgen installed (editable) and, with --test, the test tools and the JS harness.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install --quiet -e ".[test]"
    if command -v npm >/dev/null 2>&1; then
        (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
    else
        echo "npm not found: the @fal-ai/client tests will be skipped" >&2
    fi
else
    .venv/bin/python -m pip install --quiet -e .
fi
