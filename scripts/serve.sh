#!/usr/bin/env bash
# Installs thorgen into .venv (first run only takes long) and starts it on 127.0.0.1:10000.
# Extra arguments go to `thorgen serve`, e.g. --port 10001 --public-url http://thor.local:10000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/thorgen serve "$@"
