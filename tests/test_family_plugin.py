"""A model family in one file: a throwaway family, written here into a temporary package, is served.

The family file declares everything (endpoint, catalog entry, load hook, tiny builder, /info note,
doctor line) and is registered by one entry point in the ``thorgen.families`` group, the way an
installed package would register it; no thorgen file changes. A real server on a loopback port
writes its tiny model, loads it through the hook, and fal's Python client runs a job on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import point_fal_client_at
from server_process import ServerProcess

FAMILY_FILE = '''
"""Echo: says its prompt back, with a short tone whose level is its one "weight"."""

import json
from pathlib import Path
from typing import Any

import msgspec

from thorgen.families.base import (
    ANY_PIPELINE, AudioFile, CatalogEntry, Context, Endpoint, Family, Finding, LoadRequest, Prompt, store_audio,
)


class Ask(msgspec.Struct, kw_only=True):
    prompt: Prompt
    sync_mode: bool = False


class Answer(msgspec.Struct):
    audio: AudioFile
    said: str
    level: float


class EchoModel:
    """The "model": one number, saved and loaded the way a real one is."""

    def __init__(self, level: float):
        self.level = level

    def save_pretrained(self, target: Path, **options: Any) -> None:
        target.mkdir(parents=True)
        (target / "echo.json").write_text(json.dumps({"level": self.level}))


def build_tiny() -> EchoModel:
    return EchoModel(0.25)


def load(request: LoadRequest) -> EchoModel:
    return EchoModel(json.loads((Path(request.path) / "echo.json").read_text())["level"])


def echo(ctx: Context, args: Ask) -> Answer:
    import numpy as np

    with ctx.lease() as model:
        level = model.pipeline.level
    ctx.step(1, 1, "echo")
    tone = np.full(800, level, dtype=np.float32)
    return Answer(audio=store_audio(ctx, tone, 8000, sync_mode=args.sync_mode), said=args.prompt.upper(),
                  level=level)


FAMILY = Family(
    name="echo",
    title="Echo",
    endpoints=[Endpoint("test/echo", Ask, Answer, echo, "gpu", "Says the prompt back", model="echo-tiny")],
    aliases={"test/echo-again": "test/echo"},
    catalog={"echo-tiny": CatalogEntry(config={"family": "echo", "path": "echo-tiny", "pipeline": "EchoModel"},
                                       licence="none", gated=False, approx_bytes=16)},
    load=load,
    tiny={ANY_PIPELINE: build_tiny},
    safety_note=lambda config: "echo: it only repeats what it is told",
    doctor=lambda config: [Finding("family: echo", "ok", "the throwaway family is here")],
)
'''

# The one registration: an entry point, as `pip install` of a package declaring it would write.
ENTRY_POINT = "[thorgen.families]\necho = echo_family:FAMILY\n"


def write_plugin(root: Path) -> Path:
    root.mkdir()
    (root / "echo_family.py").write_text(FAMILY_FILE)
    info = root / "echo_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINT)
    return root


def test_a_family_in_one_file_is_served_with_its_tiny_model_note_and_doctor_line(tmp_path: Path, models_dir: Path):
    import fal_client

    plugins = write_plugin(tmp_path / "plugins")
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path}
    models = models_dir  # the session's tiny models: the other families' are written once
    server = ServerProcess(tmp_path / "data", env=env, args=["--tiny", "--models-dir", str(models)]).start()
    try:
        server.wait_ready()
        assert (models / "tiny" / "echo-tiny" / "echo.json").is_file()  # its tiny builder ran

        point_fal_client_at(server.base_url)
        client = fal_client.SyncClient(key="local-test-key", default_timeout=60)
        result = client.subscribe("test/echo", {"prompt": "hello family"}, with_logs=True)
        assert result["said"] == "HELLO FAMILY" and result["level"] == 0.25  # loaded through its hook
        audio = result["audio"]
        assert audio["content_type"] == "audio/wav" and audio["duration"] == 0.1
        assert httpx.get(audio["url"]).content[:4] == b"RIFF"
        inline = client.run("test/echo-again", {"prompt": "inline", "sync_mode": True})  # its alias
        assert inline["audio"]["url"].startswith("data:audio/wav;base64,")

        info = httpx.get(f"{server.base_url}/info").json()
        assert info["safety_checkers"]["echo"] == "echo: it only repeats what it is told"
        rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
        assert rows["test/echo"]["available"] and rows["test/echo-again"]["alias_of"] == "test/echo"
    finally:
        server.stop()

    doctor = subprocess.run([sys.executable, "-m", "thorgen", "doctor"], capture_output=True, text=True,
                            env={**os.environ, **env, "THORGEN_CONFIG": "", "THORGEN_RUNTIME__TINY": "1",
                                 "THORGEN_STORAGE__MODELS_DIR": str(models),
                                 "THORGEN_STORAGE__DATA_DIR": str(tmp_path / "data")}, timeout=120)
    line = next((line for line in doctor.stdout.splitlines() if "family: echo" in line), "")
    assert "ok" in line and "the throwaway family is here" in line, doctor.stdout + doctor.stderr
