#!/usr/bin/env bash
# Installs thorgen with its test tools into .venv, installs the JS client harness, runs every test.
# Extra arguments go to pytest, e.g. scripts/test.sh -k compose
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
