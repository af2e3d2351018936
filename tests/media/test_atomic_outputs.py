"""Outputs appear whole or not at all: SIGKILL during a compose leaves nothing served under a final name."""

from __future__ import annotations

import time

import httpx
from mediagen import make_image
from server_process import ServerProcess
from wire_helpers import long_compose, upload

STATUS = "{base}/queue/fal-ai/ffmpeg-api/requests/{id}/status"


def _wait_for_log(base: str, request_id: str, text: str, timeout: float = 60) -> None:
    """Poll the job's logs until one contains ``text`` (the encoder is then writing its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(STATUS.format(base=base, id=request_id), params={"logs": "1"}).json()
        if any(text in entry["message"] for entry in body.get("logs") or []):
            return
        assert body["status"] != "COMPLETED", f"the compose finished before it was killed: {body}"
        time.sleep(0.05)
    raise AssertionError(f"{request_id} never logged {text!r}")


def test_sigkill_mid_compose_leaves_no_served_partial(tmp_path):
    data = tmp_path / "data"
    env = {"THORGEN_LANES__UTILITY_WORKERS": "1"}
    first = ServerProcess(data, env=env).start()
    base = first.base_url
    try:
        image_url = upload(base, make_image(tmp_path / "still.png"), "image/png")
        running = long_compose(base, image_url, seconds=120)["request_id"]
        _wait_for_log(base, running, "encoding 10%")  # the .mp4 and its thumbnail are being written
    finally:
        first.kill()
    left = sorted(path.name for path in (data / "files").iterdir())
    keys = sorted({".".join(name.split(".")[:2]) for name in left})  # key.ext[.random.part] -> key.ext

    second = ServerProcess(data, port=first.port, env=env).start()
    try:
        served = [key for key in keys if httpx.get(f"{base}/files/{key}").status_code == 200]
        assert served == [image_url.rsplit("/", 1)[1]], left  # only the upload: no half-written output
        status = httpx.get(STATUS.format(base=base, id=running)).json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "interrupted"
    finally:
        second.stop()
    assert any(name.endswith(".part") for name in left), left  # it really died mid-write...
    assert not any(path.name.endswith(".part") for path in (data / "files").iterdir())  # ...and start cleaned up
