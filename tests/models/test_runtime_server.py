"""The model runtime inside a real server: budget refusal, preloading and /ready, model mapping."""

from __future__ import annotations

import httpx
import pytest
from server_process import ServerProcess


@pytest.fixture()
def tiny_server(server, models_dir, tmp_path):
    """A second server on the tiny models the session's server wrote; env settings per test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str], config_text: str = "") -> ServerProcess:
        config = tmp_path / f"config{len(started)}.toml"
        config.write_text(config_text)
        process = ServerProcess(tmp_path / f"data{len(started)}", env=env, config=config,
                                args=["--tiny", "--models-dir", str(models_dir)]).start()
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


def test_a_model_larger_than_the_budget_is_refused_at_start_and_on_request(tiny_server):
    server = tiny_server({"THORGEN_RUNTIME__BUDGET_BYTES": "100000"})
    info = httpx.get(f"{server.base_url}/info").json()["runtime"]
    assert set(info["refused"]) >= {"flux-dev", "flux-schnell"}  # other families add theirs
    assert "budget" in info["refused"]["flux-dev"] and info["budget_bytes"] == 100000
    assert "can never load here" in server.log()
    response = httpx.post(f"{server.base_url}/queue/fal-ai/flux/dev", json={"prompt": "x"})
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["error_type"] == "model_too_large" and "flux-dev" in body["detail"]
    assert httpx.get(f"{server.base_url}/health").status_code == 200  # and the server stays up


def test_preload_loads_before_ready_and_pinned_is_reported(tiny_server):
    server = tiny_server({"THORGEN_MODELS__FLUX_SCHNELL__PRELOAD": "true",
                          "THORGEN_MODELS__FLUX_SCHNELL__PINNED": "true"})
    runtime = httpx.get(f"{server.base_url}/info").json()["runtime"]
    assert runtime["ready"] is True
    loaded = {model["name"]: model for model in runtime["loaded"]}
    assert set(loaded) == {"flux-schnell"} and loaded["flux-schnell"]["pinned"] is True
    assert loaded["flux-schnell"]["load_seconds"] > 0


def test_endpoint_models_maps_an_endpoint_to_another_model(tiny_server):
    server = tiny_server({}, '[endpoint_models]\n"fal-ai/flux/dev" = "flux-schnell"\n')
    response = httpx.post(f"{server.base_url}/run/fal-ai/flux/dev",
                          json={"prompt": "x", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1},
                          timeout=60)
    assert response.status_code == 200, response.text
    runtime = httpx.get(f"{server.base_url}/info").json()["runtime"]
    assert [model["name"] for model in runtime["loaded"]] == ["flux-schnell"]
    rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
    assert rows["fal-ai/flux/dev"]["model"] == "flux-schnell"
    assert rows["fal-ai/flux-pro/v1.1-ultra"]["alias_of"] == "fal-ai/flux/dev"


def test_without_weights_the_flux_ids_say_how_to_get_them(tmp_path):
    server = ServerProcess(tmp_path / "data", args=["--models-dir", str(tmp_path / "empty")]).start()
    try:
        response = httpx.post(f"{server.base_url}/queue/fal-ai/flux/dev", json={"prompt": "x"})
        assert response.status_code == 424
        assert "thorgen models pull flux-dev" in response.json()["detail"]
        assert "MISSING" in server.log() and "thorgen models pull flux-schnell" in server.log()
        metadata = httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]
        assert any(row["id"] == "fal-ai/ffmpeg-api/compose" and row["available"] for row in metadata)
    finally:
        server.stop()
