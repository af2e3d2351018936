"""What every benchmark here shares: fal's Python client pointed at a local server, tiny models
written offline, and timing two calls in turn so both see the same machine state."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def point_client(base: str):
    """fal-client 1.0.3 has no base-URL option: its module globals are the documented override."""
    import fal_client
    import fal_client.client as fal_internal

    fal_internal.RUN_URL_FORMAT = f"{base}/run/"
    fal_internal.QUEUE_URL_FORMAT = f"{base}/queue/"
    fal_internal.REST_URL = f"{base}/rest"
    fal_internal.CDN_URL = f"{base}/cdn"
    return fal_client.SyncClient(key="bench", default_timeout=120)


def write_tiny_models(models_dir: Path) -> None:
    from thorgen.config import load_config
    from thorgen.families import write_missing_tiny

    write_missing_tiny(load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(models_dir)}))


def interleaved(first: Callable[[], object], second: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds of each call, after one warm-up call of each, alternating them ``runs`` times."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for index, call in enumerate((first, second)):
            started = time.perf_counter()
            call()
            times[index].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])
