#!/usr/bin/env bash
# Creates .venv with thorgen installed (editable) and, with --test, the test tools and the JS harness.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, and only where none is importable: pip then installs torch 2.13.0 from the index it
# is configured with. From the public PyPI on Linux x86-64 that is the CUDA build, which brings about
# 3 GB of NVIDIA libraries; THORGEN_TORCH_INDEX=https://download.pytorch.org/whl/cpu picks the CPU-only
# build instead (what a CPU box or CI wants), https://download.pytorch.org/whl/cu130 a CUDA 13 one.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet ${THORGEN_TORCH_INDEX:+--index-url "$THORGEN_TORCH_INDEX"} "torch==2.13.0"
fi
# Whatever torch is there now (NVIDIA's on a Jetson, a CUDA box's own, or the one just installed) is
# kept: the installs below run under a constraint on its exact version (and torchvision's, if present),
# so no dependency can swap it; a dependency that needs another torch stops pip with a conflict instead.
keep=$(mktemp)
trap 'rm -f "$keep"' EXIT
.venv/bin/python - >"$keep" <<'PY'
import importlib.metadata as metadata
for name in ("torch", "torchvision"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
PY
if [ "${1:-}" = "--test" ]; then
    # tts: NeMo, so the speech tests run the real FastPitch/HiFi-GAN path; kokoro: the Kokoro voices. A fresh machine downloads
    # NeMo's dependencies and compiles pyopenjtalk and cdifflib once (neither has a binary wheel):
    # minutes, see the README.
    .venv/bin/python -m pip install --quiet --constraint "$keep" -e ".[test,tts,kokoro,cluster,torchao]"
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
    # A PostgreSQL server for the cluster tests (tests/jobs/test_cluster.py), from Debian: they initdb
    # a throwaway cluster (as nobody when root). Elsewhere, without the binaries, those tests skip.
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends postgresql >/dev/null \
            || { apt-get update >/dev/null && apt-get install -y --no-install-recommends postgresql >/dev/null; } \
            || echo "could not install postgresql: the cluster tests will be skipped" >&2
    fi
else
    .venv/bin/python -m pip install --quiet --constraint "$keep" -e .
fi
