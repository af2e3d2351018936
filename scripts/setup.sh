#!/usr/bin/env bash
# Creates .venv with thorgen installed (editable) and, with --test, the test tools and the JS harness.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: a range asked for by a later install would otherwise fetch the newest (CUDA)
# build. Where torch is already importable (NVIDIA's build on a Jetson, a CUDA box) it is kept.
# THORGEN_TORCH_INDEX picks another wheel index, e.g. https://download.pytorch.org/whl/cpu
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet ${THORGEN_TORCH_INDEX:+--index-url "$THORGEN_TORCH_INDEX"} "torch==2.13.0"
fi
if [ "${1:-}" = "--test" ]; then
    # tts: NeMo, so the speech tests run the real FastPitch/HiFi-GAN path (a fresh machine compiles
    # pyopenjtalk and cdifflib once, about 90 s; neither has a binary wheel).
    .venv/bin/python -m pip install --quiet -e ".[test,tts]"
    if command -v npm >/dev/null 2>&1; then
        (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
    else
        echo "npm not found: the @fal-ai/client tests will be skipped" >&2
    fi
    # Headless Chromium for the browser tests (tests/test_browser.py), from Debian, never a browser
    # download. Installed only as root with apt; elsewhere those tests skip and say why.
    if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends chromium >/dev/null \
            || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; } \
            || echo "could not install chromium: the browser tests will be skipped" >&2
    fi
else
    .venv/bin/python -m pip install --quiet -e .
fi
