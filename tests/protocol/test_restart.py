"""SIGKILL mid-job, restart on the same data folder: what finished survives, nothing stays pending."""

from __future__ import annotations

import time

import httpx
from mediagen import make_audio, make_image
from server_process import ServerProcess
from wire_helpers import long_compose, upload, wait_state

BASE_STATUS = "/queue/fal-ai/ffmpeg-api/requests/{}/status"


def test_sigkill_mid_job_then_restart(tmp_path):
    data = tmp_path / "data"
    env = {"THORGEN_LANES__UTILITY_WORKERS": "1"}
    first = ServerProcess(data, env=env).start()
    base = first.base_url
    try:
        audio_url = upload(base, make_audio(tmp_path / "a.wav", seconds=1.0), "audio/wav")
        image_url = upload(base, make_image(tmp_path / "i.png"), "image/png")
        done = httpx.post(f"{base}/queue/fal-ai/ffmpeg-api/metadata", json={"media_url": audio_url}).json()
        wait_state(base, done["request_id"], "COMPLETED")
        done_output = httpx.get(done["response_url"]).json()

        running = long_compose(base, image_url, seconds=120)["request_id"]
        wait_state(base, running, "IN_PROGRESS")
        queued = httpx.post(f"{base}/queue/fal-ai/ffmpeg-api/waveform", json={"media_url": audio_url}).json()
        assert httpx.get(f"{base}{BASE_STATUS.format(queued['request_id'])}").json()["status"] == "IN_QUEUE"
    finally:
        first.kill()

    second = ServerProcess(data, port=first.port, env=env).start()
    try:
        # The finished job and its file are still served, byte for byte.
        assert httpx.get(done["response_url"]).json() == done_output
        assert httpx.get(audio_url).status_code == 200
        # The job that was running ended COMPLETED with a clear error instead of hanging.
        status = httpx.get(f"{base}{BASE_STATUS.format(running)}").json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "interrupted"
        assert "restarted" in status["error"]
        result = httpx.get(f"{base}/queue/fal-ai/ffmpeg-api/requests/{running}")
        assert result.status_code == 500 and result.json()["error_type"] == "interrupted"
        # The queued job ran after the restart.
        final = wait_state(base, queued["request_id"], "COMPLETED", timeout=60)
        assert "error" not in final
        assert len(httpx.get(queued["response_url"]).json()["waveform"]) >= 1
    finally:
        second.stop()


def test_second_process_on_the_same_data_folder_is_refused(tmp_path):
    first = ServerProcess(tmp_path / "data").start()
    try:
        second = ServerProcess(tmp_path / "data")
        started = time.monotonic()
        try:
            second.start(timeout=20)
            raise AssertionError("a second server on the same data folder must not start")
        except RuntimeError as exc:
            assert "in use by another thorgen" in str(exc)
        assert time.monotonic() - started < 20
    finally:
        first.stop()
