"""Right after `serve --tiny` starts, while it is still writing its tiny models, model jobs are accepted
and wait for the warm-up instead of getting 424 "not installed" or a half-imported diffusers.
(A model that is really missing is still a 424 at once: test_runtime_server's test without weights.)"""

from __future__ import annotations

import httpx
import pytest
from server_process import ServerProcess
from wire_helpers import wait_state


@pytest.mark.timeout(900)  # writes every tiny model first: minutes on a busy 2-core box
def test_a_flux_job_sent_before_ready_waits_for_the_tiny_models_and_runs(tmp_path):
    # An empty models folder: this server writes every tiny model at start (about a minute here).
    server = ServerProcess(tmp_path / "data", args=["--tiny", "--models-dir", str(tmp_path / "models")]).start()
    try:
        assert httpx.get(f"{server.base_url}/ready").status_code == 503  # still warming up
        response = httpx.post(f"{server.base_url}/queue/fal-ai/flux/schnell", json={
            "prompt": "a fox", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1})
        assert response.status_code == 200, response.text
        request_id = response.json()["request_id"]
        final = wait_state(server.base_url, request_id, "COMPLETED", timeout=600)
        assert "error" not in final, final
        logs = httpx.get(f"{server.base_url}/queue/fal-ai/flux/requests/{request_id}/status?logs=1").json()["logs"]
        assert any("waiting for the model runtime" in entry["message"] for entry in logs)
    finally:
        server.stop()
