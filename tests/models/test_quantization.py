"""`[models.NAME] quantization`: int8 serves through fal's client and the swapper counts the bytes it
really holds; fp8 on this CPU is refused at start with a message that names the setting; /info and
`thorgen models list` show it. (models/tuning.py, torchao.)"""

from __future__ import annotations

import os
import subprocess
import sys

import fal_client
import httpx
import pytest
from conftest import point_fal_client_at
from server_process import ServerProcess

pytest.importorskip("torchao")

ARGS = {"prompt": "a lighthouse at dusk", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 2,
        "seed": 7}
CONFIG = '[models.flux-dev]\nquantization = "int8"\n\n[models.flux-schnell]\nquantization = "fp8"\n'


def client(base_url: str) -> fal_client.SyncClient:
    point_fal_client_at(base_url)
    return fal_client.SyncClient(key="local-test-key", default_timeout=120)


def loaded_bytes(base_url: str, name: str) -> int:
    loaded = httpx.get(f"{base_url}/info").json()["runtime"]["loaded"]
    return next(model["bytes"] for model in loaded if model["name"] == name)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, models_dir, server):
    folder = tmp_path_factory.mktemp("quantized")
    config = folder / "config.toml"
    config.write_text(CONFIG)
    process = ServerProcess(folder / "data", config=config, args=["--tiny", "--models-dir", str(models_dir)])
    process.start().wait_ready()
    yield process
    process.stop()


def test_int8_serves_through_fal_client_and_the_swapper_counts_fewer_bytes(server, quantized):
    plain = client(server.base_url).run("fal-ai/flux/dev", arguments=ARGS)  # the session's fp32 flux-dev
    output = client(quantized.base_url).run("fal-ai/flux/dev", arguments=ARGS)
    image = output["images"][0]
    assert (image["width"], image["height"]) == (64, 64)
    assert httpx.get(image["url"]).status_code == 200
    assert plain["images"][0]["url"] != image["url"]
    runtime = httpx.get(f"{quantized.base_url}/info").json()["runtime"]
    assert runtime["tuning"]["flux-dev"]["quantization"] == "int8"
    int8, fp32 = loaded_bytes(quantized.base_url, "flux-dev"), loaded_bytes(server.base_url, "flux-dev")
    # The transformer's Linear weights go from 4 bytes to 1 (plus a scale per row); the text encoders
    # and the VAE stay as they were, so the whole pipeline shrinks by less than that.
    assert int8 < fp32, (int8, fp32)


def test_fp8_on_the_cpu_is_refused_at_start_naming_the_setting(quantized):
    refused = httpx.get(f"{quantized.base_url}/info").json()["runtime"]["refused"]
    assert 'models.flux-schnell.quantization = "fp8" needs a CUDA GPU' in refused["flux-schnell"]
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        client(quantized.base_url).submit("fal-ai/flux/schnell", arguments=ARGS)
    assert caught.value.status_code == 424
    assert "models.flux-schnell.quantization" in caught.value.response.text
    assert "unsupported_model_setting" in caught.value.response.text
    assert 'needs a CUDA GPU' in quantized.log()  # said at start, in the server's log


def test_models_list_shows_the_quantization(quantized, models_dir):
    config = quantized.config
    environ = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "THORGEN_SERVER__PORT": str(quantized.port),
               "THORGEN_RUNTIME__TINY": "true", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    result = subprocess.run([sys.executable, "-m", "thorgen", "--config", str(config), "models",
                             "--models-dir", str(models_dir), "list"], capture_output=True, text=True, timeout=120,
                            env=environ)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("flux-")}
    assert "int8" in rows["flux-dev"] and "fp8" in rows["flux-schnell"], result.stdout
