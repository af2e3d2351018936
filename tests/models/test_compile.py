"""`[models.NAME] compile = true`: the tiny Flux transformer's blocks are compiled and warmed up before
the server is ready, the job's output equals the uncompiled server's, inductor's cache lands in the
data folder, and a restart reuses it (no FX graph compiled again).

One test, because compiling on this CPU costs tens of seconds (models/tuning.py).
"""

from __future__ import annotations

import io

import fal_client
import httpx
import numpy as np
import pytest
from conftest import point_fal_client_at
from PIL import Image
from server_process import ServerProcess

ARGS = {"prompt": "a lighthouse at dusk", "image_size": {"width": 128, "height": 128},
        "num_inference_steps": 4, "seed": 99, "output_format": "png"}


def pixels(base_url: str) -> np.ndarray:
    point_fal_client_at(base_url)
    output = fal_client.SyncClient(key="local-test-key", default_timeout=300).run("fal-ai/flux/dev", arguments=ARGS)
    response = httpx.get(output["images"][0]["url"])
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float64)


def tuning(server: ServerProcess) -> dict:
    return httpx.get(f"{server.base_url}/info").json()["runtime"]["tuning"]["flux-dev"]


@pytest.mark.timeout(900)
def test_compiled_flux_warms_up_before_ready_matches_uncompiled_and_reuses_its_cache(server, models_dir, tmp_path):
    plain = pixels(server.base_url)  # the session's server: the same tiny weights (models_dir), not compiled
    config = tmp_path / "config.toml"
    config.write_text('[models.flux-dev]\ncompile = true\n')
    data = tmp_path / "data"
    compiled_server = ServerProcess(data, config=config, args=["--tiny", "--models-dir", str(models_dir)])
    try:
        compiled_server.start().wait_ready(timeout=600)  # ready only once the warm-up has compiled
        tuned = tuning(compiled_server)
        assert tuned["compiled"] is True and tuned["warm_up_s"] > 0, tuned
        assert tuned["compile_deviation"] < 1e-4, tuned
        assert tuned["compile_cache"]["misses"] > 0, tuned  # a first start compiles
        cache = data / "compile-cache"
        assert sum(1 for path in cache.rglob("*") if path.is_file()) > 0
        compiled = pixels(compiled_server.base_url)
        relative_l2 = float(np.linalg.norm(compiled - plain) / np.linalg.norm(plain))
        assert relative_l2 < 1e-4, relative_l2
        # The job ran at the warm-up's shape: torch compiled nothing more for it.
        assert "Recompiling function" not in compiled_server.log()
        assert "new transformer input shape" not in compiled_server.log()
    finally:
        compiled_server.stop()
    restarted = ServerProcess(data, config=config, args=["--tiny", "--models-dir", str(models_dir)])
    try:
        restarted.start().wait_ready(timeout=600)
        cache_use = tuning(restarted)["compile_cache"]
        assert cache_use["hits"] > 0 and cache_use["misses"] == 0, cache_use
    finally:
        restarted.stop()
