"""Small HTTP helpers shared by the wire-level tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx


def upload(base: str, path: Path, content_type: str) -> str:
    initiate = httpx.post(f"{base}/rest/storage/upload/initiate?storage_type=fal-cdn-v3",
                          json={"content_type": content_type, "file_name": path.name})
    assert initiate.status_code == 200, initiate.text
    urls = initiate.json()
    put = httpx.put(urls["upload_url"], content=path.read_bytes(), headers={"content-type": content_type})
    assert put.status_code == 200, put.text
    return urls["file_url"]


def long_compose(base: str, image_url: str, seconds: float = 20) -> dict:
    tracks = [{"id": "v", "type": "video",
               "keyframes": [{"timestamp": 0, "duration": seconds * 1000, "url": image_url}]}]
    response = httpx.post(f"{base}/queue/fal-ai/ffmpeg-api/compose", json={"tracks": tracks})
    assert response.status_code == 200, response.text
    return response.json()


def wait_state(base: str, request_id: str, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{base}/queue/fal-ai/x/requests/{request_id}/status").json()
        if body["status"] == state:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{request_id} never reached {state}")


def cancel_after_first_step(fal, endpoint: str, arguments: dict, what: str = "denoising step") -> list[str]:
    """Submit a long job with fal's client, cancel it once it has logged a step, check it ended as
    cancelled (400), and return the step messages it logged."""
    import fal_client
    import pytest

    handle = fal.submit(endpoint, arguments=arguments)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = fal.status(endpoint, handle.request_id, with_logs=True)
        # The first status may be Queued, which carries no logs.
        if any(entry["message"].startswith(what) for entry in (getattr(status, "logs", None) or [])):
            break
        time.sleep(0.05)
    handle.cancel()
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 400
    final = fal.status(endpoint, handle.request_id, with_logs=True)
    return [entry["message"] for entry in final.logs if entry["message"].startswith(what)]
