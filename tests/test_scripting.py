"""Scripting without a server: every family through `thorgen.Client` and through `thorgen run --tiny`.

Both start a JobService in-process and send a job at once, while the model runtime is still warming
up (importing diffusers, writing tiny models): a model job must wait for that, not fail with
"diffusers has no class 'FluxPipeline'". Each `thorgen run` is a fresh process, so each meets the
warm-up; in this process only the first Client job does (diffusers is imported once per process).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mediagen import make_audio

import thorgen
from thorgen.config import load_config

HAS_NEMO = importlib.util.find_spec("nemo") is not None
needs_nemo = pytest.mark.skipif(not HAS_NEMO, reason="NeMo (the tts extra) is not installed")


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("url"), str) and value.get("file_size", 0) > 0


# (family, endpoint, input, a check of the output)
FAMILIES: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("flux", "fal-ai/flux/schnell",
     {"prompt": "a fox", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1},
     lambda out: len(out["images"]) == 1 and out["images"][0]["width"] == 64),
    ("cosmos", "fal-ai/cosmos-predict-2.5/text-to-video",
     {"prompt": "waves", "num_frames": 9, "num_inference_steps": 1},
     lambda out: _is_file(out["video"]) and out["video"]["num_frames"] > 0),
    ("stable-audio", "fal-ai/stable-audio", {"prompt": "rain", "seconds_total": 0.5, "steps": 2},
     lambda out: _is_file(out["audio_file"])),
    ("minimax-music", "fal-ai/minimax-music", {"prompt": "rain", "seconds_total": 0.5},
     lambda out: _is_file(out["audio"]) and out["audio"]["duration"] == pytest.approx(0.5, abs=0.01)),
    ("any-llm", "fal-ai/any-llm", {"prompt": "hello", "max_tokens": 4, "temperature": 0},
     lambda out: isinstance(out["output"], str)),
    ("tts", "fal-ai/playht/tts/v3", {"input": "Hello there.", "voice": ""},
     lambda out: _is_file(out["audio"])),
    ("ffmpeg", "fal-ai/ffmpeg-api/waveform", {"media_url": "TONE", "points_per_second": 4},
     lambda out: out["points"] == len(out["waveform"]) > 0),
]
CASES = [pytest.param(endpoint, arguments, check, id=family,
                      marks=[needs_nemo] if family == "tts" else [])
         for family, endpoint, arguments, check in FAMILIES]


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = make_audio(tmp_path_factory.mktemp("tone") / "tone.wav", seconds=1.0)
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def _arguments(arguments: dict[str, Any], tone: str) -> dict[str, Any]:
    return {key: tone if value == "TONE" else value for key, value in arguments.items()}


@pytest.fixture(scope="module")
def client(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[thorgen.Client]:
    """One in-process client in tiny mode; its warm-up writes the tiny models the session shares."""
    config = load_config(None, environ={}, overrides={
        "runtime.tiny": True, "storage.models_dir": str(models_dir),
        "storage.data_dir": str(tmp_path_factory.mktemp("scripting") / "data")})
    with thorgen.Client(config) as client:
        yield client


@pytest.mark.parametrize(("endpoint", "arguments", "check"), CASES)
def test_client_runs_every_family(client, tone, endpoint, arguments, check):
    output = client.run(endpoint, _arguments(arguments, tone))
    assert check(output), output


@pytest.mark.parametrize(("endpoint", "arguments", "check"), CASES)
def test_thorgen_run_prints_every_familys_output(client, models_dir, tone, tmp_path, endpoint, arguments, check):
    # ``client`` first: its warm-up has written the tiny models, so each run only loads one.
    client.service.runtime.ready.wait(300)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "THORGEN_STORAGE__MODELS_DIR": str(models_dir)}
    (tmp_path / "input.json").write_text(json.dumps(_arguments(arguments, tone)))
    result = subprocess.run([sys.executable, "-m", "thorgen", "run", "--tiny", endpoint,
                             "--input", f"@{tmp_path / 'input.json'}", "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert check(output), output
