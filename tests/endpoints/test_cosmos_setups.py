"""Cosmos set-ups beside the default: Predict2 instead of Predict2.5, and the safety guardrail.

Each test starts its own server on the tiny Cosmos models the session's server wrote. The guardrail
tests serve them as if they were real weights (not tiny mode: tiny mode never runs the guardrail),
on the CPU in fp32, with and without a stand-in cosmos_guardrail package on the path.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import types
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from server_process import ServerProcess
from test_cosmos import assert_video_output

FAKES = Path(__file__).resolve().parent.parent / "fakes"
T2V = "fal-ai/cosmos-predict-2.5/text-to-video"
FAST = {"num_frames": 9, "num_inference_steps": 2}


@pytest.fixture()
def start(models_dir, tmp_path):
    """Start servers for one test. Tiny ones serve what the session's server wrote to models_dir:
    a test that starts one asks for ``server`` too."""
    started: list[ServerProcess] = []

    def start(config_text: str, *, tiny: bool, env: dict[str, str] | None = None) -> ServerProcess:
        config = tmp_path / f"config{len(started)}.toml"
        config.write_text(config_text)
        args = ["--tiny", "--models-dir", str(models_dir)] if tiny else []
        process = ServerProcess(tmp_path / f"data{len(started)}", env=env, config=config, args=args).start()
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


def run(server: ServerProcess, endpoint: str, body: dict, timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{server.base_url}/run/{endpoint}", json=body, timeout=timeout)


def run_queued(server: ServerProcess, endpoint: str, body: dict) -> tuple[httpx.Response, list[str]]:
    """Through the queue, as fal's clients do: the result and the job's log messages."""
    submitted = httpx.post(f"{server.base_url}/queue/{endpoint}", json=body).json()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = httpx.get(submitted["status_url"], params={"logs": 1}).json()
        if status["status"] == "COMPLETED":
            return httpx.get(submitted["response_url"]), [entry["message"] for entry in status["logs"]]
        time.sleep(0.1)
    raise AssertionError(f"{endpoint} did not finish")


def test_predict2_makes_the_first_frame_with_text2image(server, start, tmp_path):
    server = start("[endpoint_models]\n"
                   f'"{T2V}" = "cosmos-predict2-video2world"\n'
                   '"fal-ai/cosmos-predict-2.5/image-to-video" = "cosmos-predict2-video2world"\n'
                   '"fal-ai/cosmos-predict-2.5/video-to-video" = "cosmos-predict2-video2world"\n', tiny=True)
    response, logs = run_queued(server, "fal-ai/veo2", {"prompt": "a harbour", **FAST})
    assert response.status_code == 200, response.text
    assert_video_output(response.json(), tmp_path, 112, 64, 9)
    assert "first frame: 112x64 with cosmos-predict2-text2image" in logs
    assert [m for m in logs if m.startswith("first frame step")] == ["first frame step 1/2", "first frame step 2/2"]
    assert any("(Cosmos2VideoToWorldPipeline)" in m for m in logs), logs
    loaded = {m["name"] for m in httpx.get(f"{server.base_url}/info").json()["runtime"]["loaded"]}
    assert loaded == {"cosmos-predict2-video2world", "cosmos-predict2-text2image"}

    image = httpx.post(f"{server.base_url}/run/fal-ai/flux/schnell",
                       json={"prompt": "x", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1},
                       timeout=60).json()["images"][0]["url"]
    response = run(server, "fal-ai/cosmos-predict-2.5/image-to-video", {"prompt": "x", "image_url": image, **FAST})
    assert response.status_code == 200, response.text
    assert_video_output(response.json(), tmp_path, 64, 64, 9)

    clip = response.json()["video"]["url"]
    response = run(server, "fal-ai/cosmos-predict-2.5/video-to-video",
                   {"prompt": "x", "video_url": clip, "num_frames": 13, "num_inference_steps": 2})
    assert response.status_code == 200, response.text
    assert_video_output(response.json(), tmp_path, 64, 64, 13)


@pytest.fixture()
def weights(models_dir, tmp_path, server) -> Path:
    """The tiny Predict2.5 (written by the session's server) in a models folder, as if pulled."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny" / "cosmos-predict25", root / "cosmos-predict25")
    return root


def guarded_config(weights: Path, guardrail: bool = True, *, cosmos: str = "", model: str = "") -> str:
    return (f'[storage]\nmodels_dir = "{weights}"\n[cosmos]\nguardrail = {str(guardrail).lower()}\n{cosmos}'
            f'[models.cosmos-predict25]\ndevice = "cpu"\ndtype = "float32"\n{model}')


def with_fake_guardrail() -> dict[str, str]:
    """The stand-in cosmos_guardrail first on the server's path, this checkout's sources after it
    (a PYTHONPATH of the fakes alone would run whatever thorgen the virtualenv has installed)."""
    return {"PYTHONPATH": os.pathsep.join([str(FAKES), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_without_the_guardrail_package_cosmos_is_refused_clearly(start, weights):
    server = start(guarded_config(weights), tiny=False)
    response = httpx.post(f"{server.base_url}/queue/{T2V}", json={"prompt": "x"})
    assert response.status_code == 424, response.text
    body = response.json()
    assert body["error_type"] == "extra_not_installed"
    assert "pip install 'thorgen[guardrail]'" in body["detail"] and "guardrail = false" in body["detail"]
    rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
    assert rows["fal-ai/minimax/video-01-live"]["available"] is False
    flux_reason = rows["fal-ai/flux/dev"]["reason"]
    assert "models pull flux-dev" in flux_reason and "cosmos_guardrail" not in flux_reason


def loaded_bytes(server: ServerProcess) -> int:
    loaded = {m["name"]: m for m in httpx.get(f"{server.base_url}/info").json()["runtime"]["loaded"]}
    return int(loaded["cosmos-predict25"]["bytes"])


def test_the_guardrail_checks_prompts_in_the_server_and_is_counted_in_the_models_size(start, weights):
    """The prompt check refuses in the server. The same weights preloaded with the guardrail on, then
    off: the model is larger by exactly the stand-in guardrail's 1000 float32 (4000 bytes), so the
    swapper budgets and frees the guardrail with Cosmos."""
    preload = "preload = true\n"
    server = start(guarded_config(weights, model=preload), tiny=False, env=with_fake_guardrail())
    blocked = run(server, T2V, {"prompt": "something forbidden", **FAST})
    assert blocked.status_code == 422, blocked.text
    assert blocked.json()["detail"][0]["type"] == "content_policy_violation"
    assert blocked.json()["detail"][0]["loc"] == ["body", "prompt"]
    guarded = loaded_bytes(server)
    server.stop()
    plain = loaded_bytes(start(guarded_config(weights, guardrail=False, model=preload), tiny=False))
    assert guarded - plain == 1000 * 4, (guarded, plain)


@pytest.fixture()
def roomy_weights(tmp_path) -> Path:
    """A tiny Predict2.5 whose position embedding reaches 480p (832x480: 52x30 patches), written as
    if pulled: outside tiny mode clips have the configured resolution, and the guardrail runs."""
    from thorgen.families.cosmos import pipeline as cosmos_models
    from thorgen.models.tiny import write_tiny

    root = tmp_path / "roomy"
    patch = pytest.MonkeyPatch()
    patch.setattr(cosmos_models, "TINY_MAX_SIZE", (8, 64, 112))  # latent (frames, height, width)
    try:
        write_tiny(cosmos_models.build_cosmos2_5, root / "cosmos-predict25")
    finally:
        patch.undo()
    return root


def decoded_frames(url: str, tmp_path: Path) -> np.ndarray:
    response = httpx.get(url)
    assert response.status_code == 200, url
    path = tmp_path / "checked.mp4"
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.mark.timeout(1800)  # two 480p clips (the smallest size outside tiny mode): minutes on a busy CPU
def test_the_guardrail_checks_every_clip_in_the_server(start, roomy_weights, tmp_path):
    """Generated clips go through the guardrail's video check inside the server. The stand-in blacks
    out every clip (as a face blur changes one) and refuses any clip of exactly 13 frames."""
    server = start(guarded_config(roomy_weights, cosmos='resolution = "480p"\n'), tiny=False,
                   env=with_fake_guardrail())
    cheap = {"num_frames": 9, "num_inference_steps": 1, "guidance_scale": 1.0}
    changed = run(server, T2V, {"prompt": "a harbour at dawn", **cheap, "seed": 1}, timeout=800)
    assert changed.status_code == 200, changed.text
    video = changed.json()["video"]
    assert (video["width"], video["height"], video["num_frames"]) == (832, 480, 9)
    frames = decoded_frames(video["url"], tmp_path)
    assert frames.shape == (9, 480, 832, 3)
    # What the guardrail returned is what was stored: every frame black (H.264 may leave a few levels).
    assert int(frames.max()) <= 8, f"the stored clip is not the guardrail's: max level {frames.max()}"

    blocked = run(server, T2V, {"prompt": "a harbour at dawn", **cheap, "num_frames": 13}, timeout=800)
    assert blocked.status_code == 422, blocked.text
    assert blocked.json()["error_type"] == "content_policy_violation"
    assert "blocked the generated video" in blocked.json()["detail"]


def test_the_guardrail_checks_and_may_change_the_frames():
    """The frame check, on the loaded checker component: a generated clip at 480p takes minutes on this CPU."""
    sys.path.insert(0, str(FAKES))
    try:
        from cosmos_guardrail import CosmosSafetyChecker
    finally:
        sys.path.remove(str(FAKES))
    from PIL import Image

    from thorgen.errors import FalError
    from thorgen.families.cosmos import _check_frames
    from thorgen.families.cosmos.pipeline import passthrough_checker

    pipe = types.SimpleNamespace(safety_checker=passthrough_checker(CosmosSafetyChecker()))
    frames = [Image.new("RGB", (32, 16), (200, 100, 50)) for _ in range(9)]
    checked = _check_frames(pipe, frames)
    assert len(checked) == 9 and checked[0].size == (32, 16) and checked[0].getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(FalError) as caught:
        _check_frames(pipe, frames + frames[:4])
    assert caught.value.status == 422 and caught.value.error_type == "content_policy_violation"
    unguarded = types.SimpleNamespace(safety_checker=passthrough_checker())
    assert _check_frames(unguarded, frames) is frames


def test_guardrail_off_in_config_is_allowed_and_said_plainly(start, weights):
    server = start(guarded_config(weights, guardrail=False), tiny=False)
    rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
    assert rows[T2V]["available"] is True and rows["fal-ai/veo2/image-to-video"]["available"] is True
    note = httpx.get(f"{server.base_url}/info").json()["safety_checkers"]["cosmos"]
    assert note.startswith("OFF") and "License" in note
    assert "Cosmos safety guardrail: OFF" in server.log()


def test_tiny_mode_says_the_guardrail_does_not_run(server):
    note = httpx.get(f"{server.base_url}/info").json()["safety_checkers"]["cosmos"]
    assert note.startswith("tiny mode: the Cosmos guardrail does not run")
    assert "Cosmos safety guardrail: tiny mode" in server.log()
