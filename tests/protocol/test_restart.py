"""SIGKILL mid-job, restart on the same data folder: what finished survives, nothing stays pending."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
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


FAST_FLUX = {"image_size": {"width": 64, "height": 64}, "num_inference_steps": 1}


@pytest.mark.timeout(900)  # writes every tiny model first: minutes on a busy 2-core box
def test_queued_model_jobs_run_after_sigkill_and_leftovers_are_cleared(tmp_path, models_dir):
    """Recovered model jobs start while the new process is still warming up: they must wait, then run."""
    with socket.socket() as silent:
        # A loopback port that takes connections and never answers: an image-to-image job fetching its
        # input from it holds the GPU lane's one worker, so the Flux jobs behind it stay queued.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        config = tmp_path / "config.toml"
        config.write_text(f'[limits]\nfetch_allowed_hosts = ["{host}"]\nfetch_timeout_s = 600\n')
        data = tmp_path / "data"
        args = ["--tiny", "--models-dir", str(models_dir)]
        first = ServerProcess(data, config=config, args=args).start().wait_ready(timeout=600)
        base = first.base_url
        try:
            holding = httpx.post(f"{base}/queue/fal-ai/flux/dev/image-to-image", json={
                "prompt": "x", "image_url": f"http://{host}/still.png", "num_inference_steps": 2,
                "strength": 0.5}).json()["request_id"]
            silent.settimeout(120)
            fetching, _ = silent.accept()  # the job is running and fetching: its scratch folder exists
            assert httpx.get(f"{base}{BASE_STATUS.format(holding)}").json()["status"] == "IN_PROGRESS"
            queued = [httpx.post(f"{base}/queue/fal-ai/flux/schnell", json={"prompt": f"fox {n}", **FAST_FLUX})
                      .json()["request_id"] for n in range(4)]
            for request_id in queued:
                assert httpx.get(f"{base}{BASE_STATUS.format(request_id)}").json()["status"] == "IN_QUEUE"
            multipart_key = _unfinished_multipart_upload(base)
            cut_off = _upload_cut_off_mid_body(base, first.port, data)
        finally:
            first.kill()
        cut_off.close()
        fetching.close()
    scratch = data / "tmp" / holding
    assert scratch.is_dir() and (data / "tmp" / "multipart" / multipart_key).is_dir()
    assert list((data / "files").glob("*.part")), "the cut-off upload left its partial file"

    second = ServerProcess(data, port=first.port, config=config, args=args).start()
    try:
        status = httpx.get(f"{base}{BASE_STATUS.format(holding)}").json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "interrupted"
        for request_id in queued:
            final = wait_state(base, request_id, "COMPLETED", timeout=300)
            assert "error" not in final, final
            images = httpx.get(f"{base}/queue/fal-ai/flux/requests/{request_id}").json()["images"]
            assert len(images) == 1 and httpx.get(images[0]["url"]).status_code == 200
        # What the killed process left half-done is gone: the job's scratch, upload parts, partial files.
        assert not scratch.exists()
        assert not (data / "tmp" / "multipart" / multipart_key).exists()
        assert not list((data / "files").glob("*.part"))
    finally:
        second.stop()


def _unfinished_multipart_upload(base: str) -> str:
    """Start a multipart upload and send its first part, never completing it; returns the file key."""
    urls = httpx.post(f"{base}/rest/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
                      json={"content_type": "video/mp4", "file_name": "big.mp4"}).json()
    upload_url, _, query = urls["upload_url"].partition("?")
    assert httpx.put(f"{upload_url}/1?{query}", content=b"\0" * 1024).status_code == 200
    return upload_url.rstrip("/").split("/")[-2]


def _upload_cut_off_mid_body(base: str, port: int, data) -> socket.socket:
    """A raw PUT that promises 10 MB and sends 64 kB; returns once the server is writing it to disk."""
    urls = httpx.post(f"{base}/rest/storage/upload/initiate?storage_type=fal-cdn-v3",
                      json={"content_type": "image/png", "file_name": "big.png"}).json()
    path = urls["upload_url"].split(f":{port}", 1)[1]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/png\r\n"
                 f"Content-Length: 10000000\r\n\r\n".encode() + b"\0" * 65536)
    deadline = time.monotonic() + 30
    while not list((data / "files").glob("*.part")):
        assert time.monotonic() < deadline, "the server never started writing the upload"
        time.sleep(0.05)
    return sock
