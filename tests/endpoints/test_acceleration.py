"""fal's `acceleration` on Flux through fal's Python client, against the session's tiny server.

"regular" and "high" put diffusers' cache hooks (TaylorSeer, MagCache) on the real tiny Flux
transformer for one job; "none" is the plain run. See families/acceleration.py.
"""

from __future__ import annotations

import fal_client
import httpx
import numpy as np
import pytest
from conftest import point_fal_client_at
from server_process import ServerProcess
from test_flux import fetch_image
from wire_helpers import cancel_after_first_step

COSMOS = "fal-ai/cosmos-predict-2.5/text-to-video"


def video_frames(url: str) -> np.ndarray:
    """Every frame of an MP4 output as one float array (decoded with PyAV)."""
    import io

    import av

    data = httpx.get(url).content
    with av.open(io.BytesIO(data)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(np.float64)

# 12 steps: enough for both caches to skip passes (TaylorSeer computes steps 0-2 and every 5th after;
# MagCache keeps the first 20 % and then skips by diffusers' FLUX_MAG_RATIOS).
ARGS = {"prompt": "a lighthouse at dusk", "image_size": {"width": 128, "height": 128},
        "num_inference_steps": 12, "seed": 4321, "output_format": "png"}


def run(fal, **extra) -> tuple[dict, np.ndarray]:
    output = fal.run("fal-ai/flux/dev", arguments={**ARGS, **extra})
    pixels = np.asarray(fetch_image(output["images"][0]["url"]).convert("RGB"), dtype=np.float64)
    return output, pixels


def image_bytes(output: dict) -> bytes:
    response = httpx.get(output["images"][0]["url"])
    assert response.status_code == 200
    return response.content


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_none_twice_gives_identical_bytes(fal):
    first, _ = run(fal, acceleration="none")
    second, _ = run(fal, acceleration="none")
    assert image_bytes(first) == image_bytes(second)
    assert first["timings"]["acceleration"] == "none"
    assert first["timings"]["attention_passes"] == first["timings"]["attention_passes_plain"] == 12


@pytest.mark.parametrize("level", ["regular", "high"])
def test_a_cache_level_skips_work_and_stays_close_to_plain(fal, level):
    """The bound is the yardstick a cache must beat: plain with as many steps as the cache ran its
    attention (MagCache: the same compute; TaylorSeer still runs its feed-forward layers, so for it this
    is a little less compute). A cache that deviates more than simply taking fewer steps is not worth
    having; one that deviates by nothing did not run."""
    _, plain = run(fal, acceleration="none")
    output, cached = run(fal, acceleration=level)
    timings = output["timings"]
    assert timings["acceleration"] == level
    computed = timings["attention_passes"]
    assert timings["attention_passes_plain"] == 12 and 0 < computed < 12, timings
    _, fewer = run(fal, acceleration="none", num_inference_steps=computed)
    deviation = mean_abs(cached, plain)
    assert 0 < deviation < mean_abs(fewer, plain), (deviation, mean_abs(fewer, plain))
    # And in absolute terms: on average within 2 of 255 grey levels of the plain image.
    assert deviation < 2.0


def test_the_job_log_names_the_method(fal):
    handle = fal.submit("fal-ai/flux/dev", arguments={**ARGS, "acceleration": "high"})
    handle.get()
    logs = fal.status("fal-ai/flux/dev", handle.request_id, with_logs=True).logs
    lines = [entry["message"] for entry in logs if entry["message"].startswith("acceleration")]
    assert len(lines) == 1 and "MagCache" in lines[0] and "attention computed in 6 of 12 passes" in lines[0], lines


def test_an_unknown_level_is_a_422_at_submit(fal):
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit("fal-ai/flux/dev", arguments={**ARGS, "acceleration": "turbo"})
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == ["body", "acceleration"]


def test_a_cache_never_leaks_into_the_next_job(fal):
    """A plain job after a cached one (finished, or cancelled half-way) equals a plain job before it."""
    before, _ = run(fal, acceleration="none")
    run(fal, acceleration="high")
    after_high, _ = run(fal, acceleration="none")
    run(fal, acceleration="regular")
    after_regular, _ = run(fal, acceleration="none")
    steps = cancel_after_first_step(fal, "fal-ai/flux/dev", {**ARGS, "acceleration": "high",
                                                               "num_inference_steps": 50})
    assert len(steps) < 50
    after_cancel, _ = run(fal, acceleration="none")
    assert after_high["timings"]["attention_passes"] == 12
    assert image_bytes(before) == image_bytes(after_high) == image_bytes(after_regular) == image_bytes(after_cancel)


def test_image_to_image_takes_the_level(fal, tmp_path):
    from mediagen import make_image

    url = fal.upload_file(make_image(tmp_path / "source.png", width=128, height=128))
    arguments = {"image_url": url, "prompt": "x", "strength": 1.0, "num_inference_steps": 12, "seed": 3}
    output = fal.run("fal-ai/flux/dev/image-to-image", arguments={**arguments, "acceleration": "high"})
    assert output["timings"]["acceleration"] == "high"
    assert 0 < output["timings"]["attention_passes"] < output["timings"]["attention_passes_plain"] == 12


def test_the_models_configured_default_applies_and_a_request_wins(tmp_path, models_dir):
    """[models.flux-dev] acceleration = "high" (here from the environment) when the request sends none."""
    from conftest import point_fal_client_at
    from server_process import ServerProcess

    process = ServerProcess(tmp_path / "data", env={"THORGEN_MODELS__FLUX_DEV__ACCELERATION": "high"},
                            args=["--tiny", "--models-dir", str(models_dir)]).start()
    try:
        process.wait_ready()
        point_fal_client_at(process.base_url)
        client = fal_client.SyncClient(key="local-test-key", default_timeout=60)
        assert run(client)[0]["timings"]["acceleration"] == "high"
        assert run(client, acceleration="none")[0]["timings"]["acceleration"] == "none"
    finally:
        process.stop()


def test_the_swapper_counts_what_the_cache_held_with_the_model(fal, server):
    """TaylorSeer's factors are activations kept between steps: /info shows them with the model."""
    run(fal, acceleration="regular")
    loaded = {m["name"]: m for m in httpx.get(f"{server.base_url}/info").json()["runtime"]["loaded"]}
    assert loaded["flux-dev"]["cache_bytes"] > 0, loaded["flux-dev"]


@pytest.fixture(scope="module")
def cosmos_regular(tmp_path_factory, models_dir, server):
    """A tiny server whose Cosmos model runs with acceleration "regular" by default (fal's Cosmos
    endpoints have no acceleration field); the same tiny weights as the session's server."""
    folder = tmp_path_factory.mktemp("cosmos-acceleration")
    config = folder / "config.toml"
    config.write_text('[models.cosmos-predict25]\nacceleration = "regular"\n')
    process = ServerProcess(folder / "data", config=config, args=["--tiny", "--models-dir", str(models_dir)])
    process.start().wait_ready()
    yield process
    process.stop()


def test_cosmos_runs_taylorseer_by_its_configured_level_and_stays_close_to_plain(fal, server, cosmos_regular):
    arguments = {"prompt": "a robot arm welding", "num_frames": 9, "num_inference_steps": 12, "seed": 3}
    plain = fal.run(COSMOS, arguments=arguments)
    point_fal_client_at(cosmos_regular.base_url)
    handle = fal.submit(COSMOS, arguments=arguments)
    cached = handle.get()
    logs = [entry["message"] for entry in fal.status(COSMOS, handle.request_id, with_logs=True).logs]
    line = next(message for message in logs if "acceleration regular" in message)
    # 12 steps, cond and guidance pass each: TaylorSeer computes steps 0-2 and every 5th after, per pass.
    assert "TaylorSeer on attention" in line and "attention computed in" in line, line
    computed = int(line.split("attention computed in ")[1].split()[0])
    assert 0 < computed < 24, line
    loaded = {m["name"]: m for m in httpx.get(f"{cosmos_regular.base_url}/info").json()["runtime"]["loaded"]}
    assert loaded["cosmos-predict25"]["cache_bytes"] > 0
    first, second = video_frames(plain["video"]["url"]), video_frames(cached["video"]["url"])
    deviation = float(np.abs(first - second).mean())
    assert 0 < deviation < 8.0, deviation  # close to plain, in grey levels of 255, and not identical


def test_cosmos_levels_one_after_another_on_the_same_transformer():
    """In process, the tiny Cosmos Predict2.5: "regular" (attention hooks), then "high" (block hooks),
    then "none", each on the transformer the last one used: every level finds its hooks' cache context
    (diffusers caches which children have hooks), and "none" afterwards is the plain result again."""
    import torch

    from thorgen.families.acceleration import accelerated
    from thorgen.families.cosmos import pipeline as cosmos

    cosmos.install_torchvision_stand_ins()
    pipe = cosmos.build_cosmos2_5()
    pipe.set_progress_bar_config(disable=True)

    def latents(level: str) -> tuple[torch.Tensor, int]:
        with accelerated(pipe.transformer, level, 8) as ran:  # type: ignore[arg-type]
            out = pipe(prompt="x", height=64, width=112, num_frames=9, num_inference_steps=8,
                       generator=torch.Generator().manual_seed(1), output_type="latent").frames
        return out, ran.computed

    plain, plain_passes = latents("none")
    for level in ("regular", "high"):
        cached, passes = latents(level)
        assert passes < plain_passes == 16, (level, passes)
        assert 0 < float((cached - plain).norm() / plain.norm()) < 0.5, level
    again, _ = latents("none")
    assert torch.equal(again, plain)
