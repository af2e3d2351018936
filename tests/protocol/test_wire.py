"""fal's wire protocol spoken over raw HTTP, the details the official clients depend on."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from mediagen import make_audio, make_image
from server_process import ServerProcess
from wire_helpers import long_compose, upload, wait_state

METADATA = "fal-ai/ffmpeg-api/metadata"


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """One utility worker and fast keep-alives, so a long compose holds the lane."""
    env = {"THORGEN_LANES__UTILITY_WORKERS": "1", "THORGEN_LIMITS__SSE_KEEPALIVE_S": "0.05"}
    process = ServerProcess(tmp_path_factory.mktemp("slow") / "data", env=env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def audio_url(server, tmp_path_factory) -> str:
    path = make_audio(tmp_path_factory.mktemp("wire") / "tone.wav", seconds=1.0)
    return upload(server.base_url, path, "audio/wav")


def test_submit_returns_fal_shape_and_urls_on_this_server(server, audio_url):
    response = httpx.post(f"{server.base_url}/queue/{METADATA}", json={"media_url": audio_url})
    body = response.json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert set(body) >= {"request_id", "response_url", "status_url", "cancel_url", "queue_position"}
    assert body["status"] == "IN_QUEUE"
    # status/result/cancel use owner/alias only; the sub-path stays with the job.
    assert body["status_url"] == f"{server.base_url}/queue/fal-ai/ffmpeg-api/requests/{body['request_id']}/status"
    deadline = time.monotonic() + 60
    final = httpx.get(body["status_url"], params={"logs": "1"})
    while final.json()["status"] != "COMPLETED":
        assert final.status_code == 202
        assert time.monotonic() < deadline, f"not COMPLETED within 60 s: {final.json()}"
        time.sleep(0.05)
        final = httpx.get(body["status_url"], params={"logs": "1"})
    assert final.status_code == 200
    result = httpx.get(body["response_url"])
    assert result.headers["x-fal-request-id"] == body["request_id"]
    assert result.json()["media"]["media_type"] == "audio"
    assert httpx.get(body["response_url"]).json() == result.json()  # repeatable


@pytest.mark.parametrize("logs,expect_list", [("0", False), ("1", True), ("true", True), ("false", False)])
def test_status_always_has_queue_position_and_logs_keys(server, audio_url, logs, expect_list):
    submitted_at = time.monotonic()
    request_id = httpx.post(f"{server.base_url}/queue/{METADATA}", json={"media_url": audio_url}).json()["request_id"]
    wait_state(server.base_url, request_id, "COMPLETED")
    elapsed = time.monotonic() - submitted_at
    body = httpx.get(f"{server.base_url}/queue/fal-ai/ffmpeg-api/requests/{request_id}/status",
                     params={"logs": logs}).json()
    assert "queue_position" in body and "logs" in body
    assert isinstance(body["logs"], list) is expect_list
    if expect_list:
        entry = body["logs"][0]
        assert set(entry) == {"message", "level", "source", "timestamp"}
    # The job ran (reading a file takes more than no time) and within the time the client waited;
    # test_queue_paths.py bounds it from below by a run the test itself held.
    assert 0 < body["metrics"]["inference_time"] <= elapsed


def test_status_stream_is_sse_whatever_accept_says_and_closes_after_completed(slow_server, tmp_path):
    image_url = upload(slow_server.base_url, make_image(tmp_path / "s.png"), "image/png")
    request_id = long_compose(slow_server.base_url, image_url, seconds=30)["request_id"]
    url = f"{slow_server.base_url}/queue/fal-ai/ffmpeg-api/requests/{request_id}/status/stream?logs=1"
    events, comments = [], 0
    with httpx.stream("GET", url, headers={"accept": "application/json"}, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            elif line.startswith(":"):
                comments += 1
    statuses = [event["status"] for event in events]
    assert statuses[-1] == "COMPLETED" and statuses.count("COMPLETED") == 1
    assert "IN_PROGRESS" in statuses
    # 0.05 s keep-alives (10 s by default) while the log stays quiet between encoder updates.
    assert comments >= 1


def test_cancel_running_queued_finished_and_unknown(slow_server, tmp_path):
    base = slow_server.base_url
    image_url = upload(base, make_image(tmp_path / "c.png"), "image/png")
    running = long_compose(base, image_url, seconds=60)["request_id"]
    queued = long_compose(base, image_url, seconds=60)["request_id"]
    wait_state(base, running, "IN_PROGRESS")
    assert httpx.get(f"{base}/queue/fal-ai/ffmpeg-api/requests/{queued}/status").json()["queue_position"] == 0

    for request_id in (queued, running):
        response = httpx.put(f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "CANCELLATION_REQUESTED"
    for request_id in (queued, running):
        body = wait_state(base, request_id, "COMPLETED", timeout=30)
        assert body["error_type"] == "request_cancelled"
        result = httpx.get(f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}")
        assert result.status_code == 400 and result.json()["error_type"] == "request_cancelled"

    again = httpx.put(f"{base}/queue/fal-ai/ffmpeg-api/requests/{running}/cancel")
    assert again.status_code == 400 and again.json()["status"] == "ALREADY_COMPLETED"
    missing = httpx.put(f"{base}/queue/fal-ai/ffmpeg-api/requests/00000000-0000-0000-0000-000000000000/cancel")
    assert missing.status_code == 404 and missing.json()["status"] == "NOT_FOUND"


@pytest.mark.parametrize("target", [
    "https://queue.fal.run/fal-ai/ffmpeg-api/metadata",
    "https://fal.run/fal-ai/ffmpeg-api/metadata",
])
@pytest.mark.parametrize("path", ["/api/fal", "/api/fal/proxy"])
def test_proxy_protocol_dispatches_on_target_url(server, audio_url, target, path):
    response = httpx.post(f"{server.base_url}{path}", json={"media_url": audio_url},
                          headers={"x-fal-target-url": target, "x-fal-queue-priority": "normal"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    if target.startswith("https://queue."):
        assert body["status_url"].startswith(server.base_url)
    else:
        assert body["media"]["media_type"] == "audio"
        assert response.headers["x-fal-request-id"]


@pytest.mark.parametrize("host", ["rest.fal.ai", "rest.alpha.fal.ai"])
def test_proxy_storage_initiate_on_both_rest_hosts(server, host):
    response = httpx.post(f"{server.base_url}/api/fal/proxy", json={"content_type": "image/png", "file_name": "a.png"},
                          headers={"x-fal-target-url": f"https://{host}/storage/upload/initiate?storage_type=fal-cdn-v3"})
    body = response.json()
    assert body["upload_url"].startswith(f"{server.base_url}/uploads/")
    assert body["file_url"].startswith(f"{server.base_url}/files/") and body["file_url"].endswith(".png")


def test_proxy_rejects_missing_or_foreign_target(server):
    assert httpx.post(f"{server.base_url}/api/fal", json={}).status_code == 400
    foreign = httpx.post(f"{server.base_url}/api/fal", json={}, headers={"x-fal-target-url": "https://evil.example/x"})
    assert foreign.status_code == 400 and "fal host" in foreign.json()["detail"]


def test_cors_preflight_and_simple_responses(server):
    preflight = httpx.options(f"{server.base_url}/api/fal", headers={
        "origin": "http://localhost:3000",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization,x-fal-target-url,x-fal-queue-priority",
    })
    assert preflight.status_code == 204
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "x-fal-target-url", "x-fal-queue-priority", "content-type"):
        assert header in allowed
    upload_preflight = httpx.options(f"{server.base_url}/uploads/{'0' * 32}.png", headers={
        "origin": "http://localhost:3000", "access-control-request-method": "PUT",
        "access-control-request-headers": "content-type"})
    assert upload_preflight.status_code == 204
    # API answers name the allowed origin, never "*" (tests/protocol/test_trust.py has the rest).
    health = httpx.get(f"{server.base_url}/health", headers={"origin": "http://localhost:3000"})
    assert health.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_files_answer_range_requests_with_206(server, audio_url):
    whole = httpx.get(audio_url)
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "audio/wav"
    part = httpx.get(audio_url, headers={"range": "bytes=100-199", "origin": "http://localhost:3000"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    assert part.headers["access-control-allow-origin"] == "*"
    head = httpx.head(audio_url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(whole.content)


def test_unknown_endpoint_and_request_are_404_naming_them(server):
    response = httpx.post(f"{server.base_url}/queue/fal-ai/no-such-model", json={"prompt": "x"})
    assert response.status_code == 404 and "fal-ai/no-such-model" in response.json()["detail"]
    missing = httpx.get(f"{server.base_url}/queue/fal-ai/x/requests/not-a-request/status")
    assert missing.status_code == 404 and "not-a-request" in missing.json()["detail"]


def test_endpoints_info_openapi_and_metrics(server):
    listing = httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]
    ids = {row["id"]: row for row in listing}
    for endpoint in ("metadata", "waveform", "extract-frame", "compose"):
        assert ids[f"fal-ai/ffmpeg-api/{endpoint}"]["available"] is True
    assert httpx.get(f"{server.base_url}/").json()["info"] == "/info"
    info = httpx.get(f"{server.base_url}/info").json()
    assert info["server"] == "thorgen" and info["local"] is True and "utility" in info["lanes"]
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    body = spec["paths"]["/run/fal-ai/ffmpeg-api/compose"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/ComposeInput")
    assert "tracks" in spec["components"]["schemas"]["ComposeInput"]["properties"]
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'thorgen_queue_depth{lane="gpu"}' in metrics and "thorgen_jobs_total" in metrics


def test_webhook_receives_fal_body(tmp_path):
    """A loopback receiver is a private address: it is opened in limits.fetch_allowed_hosts."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env = {"THORGEN_LIMITS__FETCH_ALLOWED_HOSTS": json.dumps([f"127.0.0.1:{hook.server_port}"])}
    process = ServerProcess(tmp_path / "data", env=env).start()
    try:
        audio_url = upload(process.base_url, make_audio(tmp_path / "tone.wav", seconds=1.0), "audio/wav")
        webhook = f"http://127.0.0.1:{hook.server_port}/hook"
        request_id = httpx.post(f"{process.base_url}/queue/{METADATA}", params={"fal_webhook": webhook},
                                json={"media_url": audio_url}).json()["request_id"]
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.stop()
        hook.shutdown()
    assert received, "webhook never arrived"
    assert received[0]["request_id"] == request_id and received[0]["status"] == "OK"
    assert received[0]["payload"]["media"]["media_type"] == "audio"


def test_api_key_when_configured(tmp_path):
    process = ServerProcess(tmp_path / "data", env={"THORGEN_SERVER__API_KEY": "s3cret"}).start()
    try:
        base = process.base_url
        denied = httpx.post(f"{base}/queue/{METADATA}", json={"media_url": "x"})
        assert denied.status_code == 401 and "s3cret" not in denied.text
        initiate = httpx.post(f"{base}/rest/storage/upload/initiate", headers={"authorization": "Key s3cret"},
                              json={"content_type": "audio/wav", "file_name": "t.wav"}).json()
        # The browser PUTs to the signed upload URL bare; a forged one is refused.
        forged = initiate["upload_url"].split("?")[0] + "?token=nope"
        assert httpx.put(forged, content=b"x").status_code == 403
        assert httpx.put(initiate["upload_url"], content=b"RIFF").status_code == 200
        assert httpx.get(initiate["file_url"]).content == b"RIFF"  # downloads stay open for <video> tags
        # A signed URL takes one write: replaying it cannot replace the file.
        assert httpx.put(initiate["upload_url"], content=b"EVIL").status_code == 409
        assert httpx.get(initiate["file_url"]).content == b"RIFF"
        assert "s3cret" not in process.log()
    finally:
        process.stop()


def test_public_url_wins_when_configured(tmp_path):
    process = ServerProcess(tmp_path / "data", env={"THORGEN_SERVER__PUBLIC_URL": "https://media.example.org"}).start()
    try:
        body = httpx.post(f"{process.base_url}/rest/storage/upload/initiate",
                          json={"content_type": "audio/wav", "file_name": "a.wav"}).json()
        assert body["file_url"].startswith("https://media.example.org/files/")
    finally:
        process.stop()


def test_proxy_reaches_the_cdn_upload_too(server):
    token = httpx.post(f"{server.base_url}/api/fal/proxy", json={},
                       headers={"x-fal-target-url": "https://rest.fal.ai/storage/auth/token?storage_type=fal-cdn-v3"}).json()
    upload = httpx.post(f"{server.base_url}/api/fal/proxy", content=b"RIFFdata", headers={
        "x-fal-target-url": "https://v3.fal.media/files/upload", "content-type": "audio/wav",
        "x-fal-file-name": "a.wav", "authorization": f"Bearer {token['token']}"})
    assert upload.status_code == 200
    assert httpx.get(upload.json()["access_url"]).content == b"RIFFdata"
