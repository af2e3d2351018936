"""The thorgen command and the in-process client (`import thorgen`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mediagen import make_audio

import thorgen
from thorgen.config import Config, StorageConfig


def thorgen_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thorgen", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


def test_run_prints_output_json(tmp_path):
    audio = make_audio(tmp_path / "tone.wav", seconds=1.5)
    result = thorgen_cli("run", "fal-ai/ffmpeg-api/metadata", "--input",
                         json.dumps({"media_url": f"file-less:{audio}"}), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1 and "Unsupported URL" in result.stderr  # bad input: fal error, exit 1
    data_uri = "data:audio/wav;base64," + __import__("base64").b64encode(audio.read_bytes()).decode()
    (tmp_path / "input.json").write_text(json.dumps({"media_url": data_uri}))
    result = thorgen_cli("run", "fal-ai/ffmpeg-api/metadata", "--input", f"@{tmp_path / 'input.json'}",
                         "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["media"]["duration"] == pytest.approx(1.5, abs=0.05)


def test_config_prints_effective_values_with_secret_masked(tmp_path):
    result = subprocess.run([sys.executable, "-m", "thorgen", "config"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "THORGEN_SERVER__API_KEY": "hunter2",
                                 "THORGEN_SERVER__PORT": "10042"}, cwd=tmp_path, timeout=60)
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["server"]["port"] == 10042 and shown["server"]["api_key"] == "***"
    assert "hunter2" not in result.stdout


def test_bad_config_fails_at_start_naming_the_key(tmp_path):
    (tmp_path / "config.toml").write_text("[server]\nport = 'ten thousand'\n")
    result = thorgen_cli("serve", cwd=tmp_path)
    assert result.returncode == 2 and "server.port" in result.stderr
    (tmp_path / "config.toml").write_text("[aliases]\n'fal-ai/mine' = 'fal-ai/nothing'\n")
    result = thorgen_cli("serve", cwd=tmp_path)
    assert result.returncode == 2 and "aliases.fal-ai/mine" in result.stderr


def test_in_process_client_mirrors_fal_client(tmp_path):
    audio = make_audio(tmp_path / "tone.wav", seconds=1.0)
    data_uri = "data:audio/wav;base64," + __import__("base64").b64encode(audio.read_bytes()).decode()
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data")))
    with thorgen.Client(config) as client:
        updates = []
        output = client.subscribe("fal-ai/ffmpeg-api/waveform", {"media_url": data_uri},
                                  with_logs=True, on_queue_update=updates.append)
        assert len(output["waveform"]) == output["points"]
        assert updates and updates[-1].logs
        handle = client.submit("fal-ai/ffmpeg-api/metadata", {"media_url": data_uri})
        assert handle.get()["media"]["media_type"] == "audio"
        assert client.result("fal-ai/ffmpeg-api", handle.request_id)["media"]["media_type"] == "audio"
        with pytest.raises(thorgen.FalError) as caught:
            client.run("fal-ai/ffmpeg-api/metadata", {})
        assert caught.value.status == 422
