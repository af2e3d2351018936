"""Bad input of every kind gets a clear 4xx: never a 5xx, never a hang, never a lost job."""

from __future__ import annotations

import time

import httpx
import pytest

META = "/queue/fal-ai/ffmpeg-api/metadata"
COMPOSE = "/queue/fal-ai/ffmpeg-api/compose"


def timeline(**keyframe) -> dict:
    return {"tracks": [{"type": "video", "keyframes": [{"url": "data:,x", **keyframe}]}]}
WAVE = "/queue/fal-ai/ffmpeg-api/waveform"


# (name, method, path, json body or raw bytes, expected status, field the 422 must name or None)
SUBMIT_CASES = [
    ("malformed json", "POST", META, b'{"media_url": ', 422, None),
    ("json array body", "POST", META, [1, 2], 422, None),
    ("missing field", "POST", META, {}, 422, "media_url"),
    ("null url", "POST", META, {"media_url": None}, 422, "media_url"),
    ("wrong type", "POST", META, {"media_url": 5}, 422, "media_url"),
    ("wrong bool", "POST", META, {"media_url": "data:,x", "extract_frames": "maybe"}, 422, "extract_frames"),
    ("tracks not a list", "POST", COMPOSE, {"tracks": "nope"}, 422, "tracks"),
    ("keyframe missing duration", "POST", COMPOSE, timeline(timestamp=0), 422, "duration"),
    ("negative timestamp", "POST", COMPOSE, timeline(timestamp=-5, duration=10), 422, "timestamp"),
    ("absurd duration", "POST", COMPOSE, timeline(timestamp=0, duration=1e12), 422, "duration"),
    ("unknown track type", "POST", COMPOSE, {"tracks": [{"type": "hologram", "keyframes": []}]}, 422, "type"),
    ("absurd points per second", "POST", WAVE, {"media_url": "data:,x", "points_per_second": 1e9}, 422,
     "points_per_second"),
    ("negative precision", "POST", WAVE, {"media_url": "data:,x", "precision": -1}, 422, "precision"),
    ("bad priority header", "POST", META, {"media_url": "data:,x"}, 422, "x-fal-queue-priority"),
    ("bad webhook", "POST", META + "?fal_webhook=ftp://x", {"media_url": "data:,x"}, 422, "fal_webhook"),
    ("unknown endpoint", "POST", "/queue/fal-ai/not-here", {"prompt": "x"}, 404, None),
    ("unknown request status", "GET", "/queue/fal-ai/x/requests/nope/status", None, 404, None),
    ("unknown request result", "GET", "/queue/fal-ai/x/requests/nope", None, 404, None),
    ("unknown request stream", "GET", "/queue/fal-ai/x/requests/nope/status/stream", None, 404, None),
    ("status by POST", "POST", "/queue/fal-ai/x/requests/nope/status", {}, 405, None),
    ("submit by GET", "GET", META, None, 405, None),
    ("file path traversal", "GET", "/files/..%2F..%2Fjobs.sqlite3", None, 404, None),
    ("file path traversal plain", "GET", "/files/../jobs.sqlite3", None, 404, None),
    ("upload traversal", "PUT", "/uploads/..%2Fjobs.sqlite3", b"x", 404, None),
    ("unknown storage call", "POST", "/rest/storage/nothing", {}, 404, None),
    ("initiate with junk", "POST", "/rest/storage/upload/initiate", {"content_type": 5}, 422, "content_type"),
]


@pytest.mark.parametrize("name,method,path,body,status,field", SUBMIT_CASES, ids=[c[0] for c in SUBMIT_CASES])
def test_bad_request_gets_clear_4xx(server, name, method, path, body, status, field):
    headers = {"x-fal-queue-priority": "urgent"} if name == "bad priority header" else {}
    kwargs = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    response = httpx.request(method, server.base_url + path, headers=headers, timeout=10, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])
        if field:
            assert detail[0]["loc"][-1] == field, detail


# Inputs that pass the schema and fail inside the job: COMPLETED with an error, result 422.
JOB_CASES = [
    ("loopback url", "http://127.0.0.1:9/x.wav", "private"),
    ("metadata service url", "http://169.254.169.254/latest/meta-data", "private"),
    ("private range url", "http://192.168.1.10/x.mp4", "private"),
    ("ipv6 loopback", "http://[::1]:9/x.wav", None),
    ("unresolvable host", "http://does-not-exist.invalid/x.wav", "does not resolve"),
    ("ftp scheme", "ftp://example.com/x.wav", "Unsupported URL"),
    ("not a url", "just words", "Unsupported URL"),
    ("own file that does not exist", None, "not found"),
    ("data uri that is not media", "data:text/plain,hello", None),
    ("bad base64", "data:audio/wav;base64,%%%", None),
]


@pytest.mark.parametrize("name,url,message", JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_unusable_file_url_fails_the_job_with_422_naming_the_field(server, name, url, message):
    if url is None:
        url = f"{server.base_url}/files/{'ab' * 16}.wav"
    submit = httpx.post(server.base_url + META, json={"media_url": url})
    assert submit.status_code == 200, submit.text
    request_id = submit.json()["request_id"]
    deadline = time.monotonic() + 30
    status_url = f"{server.base_url}/queue/fal-ai/x/requests/{request_id}/status"
    while (status := httpx.get(status_url).json())["status"] != "COMPLETED":
        assert time.monotonic() < deadline, "job hung"
        time.sleep(0.05)
    result = httpx.get(f"{server.base_url}/queue/fal-ai/x/requests/{request_id}")
    assert result.status_code == 422, result.text
    assert result.json()["detail"][0]["loc"] == ["body", "media_url"]
    if message:
        assert message in status["error"]


def test_oversized_upload_is_413(tmp_path):
    from server_process import ServerProcess

    process = ServerProcess(tmp_path / "data", env={"THORGEN_STORAGE__MAX_UPLOAD_BYTES": "1000"}).start()
    try:
        urls = httpx.post(f"{process.base_url}/rest/storage/upload/initiate",
                          json={"content_type": "video/mp4", "file_name": "big.mp4"}).json()
        response = httpx.put(urls["upload_url"], content=b"x" * 5000)
        assert response.status_code == 413 and "upload limit" in response.json()["detail"]
        chunked = httpx.put(urls["upload_url"], content=iter([b"x" * 600, b"x" * 600]))
        assert chunked.status_code == 413
        assert httpx.get(urls["file_url"]).status_code == 404  # nothing half-written is served
        assert httpx.get(f"{process.base_url}/health").status_code == 200
    finally:
        process.stop()


def test_oversized_json_body_is_413(server):
    response = httpx.post(server.base_url + META, content=b'{"media_url": "' + b"a" * (40 * 1024**2) + b'"}',
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
