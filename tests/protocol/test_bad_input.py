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


KF = ["body", "tracks", 0, "keyframes", 0]
# (name, method, path, json body or raw bytes, expected status, for a 422: (loc, type, a part of msg))
# Every 422 says why: which field, what kind of problem, in words.
SUBMIT_CASES = [
    ("malformed json", "POST", META, b'{"media_url": ', 422,
     (["body"], "json_invalid", "Request body is not valid JSON")),
    ("json array body", "POST", META, [1, 2], 422, (["body"], "dict_type", "Input should be a JSON object")),
    ("missing field", "POST", META, {}, 422, (["body", "media_url"], "missing", "Field required")),
    ("null url", "POST", META, {"media_url": None}, 422,
     (["body", "media_url"], "type_error", "Expected `str`, got `null`")),
    ("wrong type", "POST", META, {"media_url": 5}, 422, (["body", "media_url"], "type_error", "got `int`")),
    ("wrong bool", "POST", META, {"media_url": "data:,x", "extract_frames": "maybe"}, 422,
     (["body", "extract_frames"], "type_error", "Expected `bool`")),
    ("tracks not a list", "POST", COMPOSE, {"tracks": "nope"}, 422,
     (["body", "tracks"], "type_error", "Expected `array`")),
    ("keyframe missing duration", "POST", COMPOSE, timeline(timestamp=0), 422,
     ([*KF, "duration"], "missing", "Field required")),
    ("negative timestamp", "POST", COMPOSE, timeline(timestamp=-5, duration=10), 422,
     ([*KF, "timestamp"], "value_error", ">= 0")),
    ("absurd duration", "POST", COMPOSE, timeline(timestamp=0, duration=1e12), 422,
     ([*KF, "duration"], "value_error", "<= 3600000")),
    ("timeline past an hour", "POST", COMPOSE, timeline(timestamp=3_000_000, duration=3_000_000), 422,
     ([*KF, "duration"], "value_error", "may not run past 3600 s")),
    ("no keyframe has a url", "POST", COMPOSE,
     {"tracks": [{"type": "video", "keyframes": [{"timestamp": 0, "duration": 1, "url": None}]}]}, 422,
     (["body", "tracks"], "value_error", "nothing to compose")),
    ("unknown track type", "POST", COMPOSE, {"tracks": [{"type": "hologram", "keyframes": []}]}, 422,
     (["body", "tracks", 0, "type"], "value_error", "Invalid enum value 'hologram'")),
    ("absurd points per second", "POST", WAVE, {"media_url": "data:,x", "points_per_second": 1e9}, 422,
     (["body", "points_per_second"], "value_error", "<= 100")),
    ("negative precision", "POST", WAVE, {"media_url": "data:,x", "precision": -1}, 422,
     (["body", "precision"], "value_error", ">= 0")),
    ("even smoothing window", "POST", WAVE, {"media_url": "data:,x", "smoothing_window": 4}, 422,
     (["body", "smoothing_window"], "value_error", "odd number")),
    ("bad priority header", "POST", META, {"media_url": "data:,x"}, 422,
     (["header", "x-fal-queue-priority"], "enum", "'normal' or 'low'")),
    ("bad webhook", "POST", META + "?fal_webhook=ftp://x", {"media_url": "data:,x"}, 422,
     (["query", "fal_webhook"], "url_scheme", "http(s) URL")),
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
    ("initiate with junk", "POST", "/rest/storage/upload/initiate", {"content_type": 5}, 422,
     (["body", "content_type"], "string_type", "Must be a string")),
]


@pytest.mark.parametrize("name,method,path,body,status,expected", SUBMIT_CASES, ids=[c[0] for c in SUBMIT_CASES])
def test_bad_request_gets_clear_4xx(server, name, method, path, body, status, expected):
    headers = {"x-fal-queue-priority": "urgent"} if name == "bad priority header" else {}
    if isinstance(body, bytes) and method == "POST":
        headers["content-type"] = "application/json"  # declared JSON, so the body itself is judged
    kwargs = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    response = httpx.request(method, server.base_url + path, headers=headers, timeout=10, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        loc, kind, words = expected
        assert isinstance(detail, list) and len(detail) == 1, detail
        assert (detail[0]["loc"], detail[0]["type"]) == (loc, kind), detail
        assert words in detail[0]["msg"], detail


# Inputs that pass the schema and fail inside the job: COMPLETED with an error, result 422 that says why.
# (name, url, a part of msg, type)
JOB_CASES = [
    ("loopback url", "http://127.0.0.1:9/x.wav", "is a loopback, private or link-local", "url_forbidden"),
    ("metadata service url", "http://169.254.169.254/latest/meta-data", "is a loopback, private or link-local",
     "url_forbidden"),
    ("private range url", "http://192.168.1.10/x.mp4", "is a loopback, private or link-local", "url_forbidden"),
    ("ipv6 loopback", "http://[::1]:9/x.wav", "::1 is a loopback, private or link-local", "url_forbidden"),
    ("unresolvable host", "http://does-not-exist.invalid/x.wav", "does not resolve", "url_unreachable"),
    ("ftp scheme", "ftp://example.com/x.wav", "Unsupported URL", "url_scheme"),
    ("not a url", "just words", "Unsupported URL", "url_scheme"),
    ("own file that does not exist", None, "File not found on this server", "url_not_found"),
    ("data uri that is not media", "data:text/plain,hello", "Not a media file thorgen can read", "media_unreadable"),
    ("bad base64", "data:audio/wav;base64,%%%", "Malformed data: URI (bad base64)", "url_parsing"),
]


@pytest.mark.parametrize("name,url,message,kind", JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_unusable_file_url_fails_the_job_with_422_naming_the_field(server, name, url, message, kind):
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
    detail = result.json()["detail"]
    assert len(detail) == 1, detail
    assert (detail[0]["loc"], detail[0]["type"]) == (["body", "media_url"], kind), detail
    assert message in detail[0]["msg"] and message in status["error"], (detail, status["error"])


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


# Bodies msgspec rejects with something other than its DecodeError: each is still the client's 422.
HOSTILE_JSON = [
    ("nested 5000 deep", b"[" * 5000 + b"]" * 5000),
    ("nested 100000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("invalid utf-8 in a string", b'{"media_url": "data:,\xff\xfe"}'),
]


@pytest.mark.parametrize("name,body", HOSTILE_JSON, ids=[c[0] for c in HOSTILE_JSON])
def test_hostile_json_is_422_json_invalid(server, name, body):
    for path in (META, "/run/fal-ai/ffmpeg-api/metadata", "/rest/storage/upload/initiate"):
        response = httpx.post(server.base_url + path, content=body,
                              headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"]
        assert detail[0]["type"] == "json_invalid" and detail[0]["loc"] == ["body"], detail
        assert detail[0]["msg"].startswith("Request body is not valid JSON"), detail


def test_unparsable_target_url_is_400(server):
    response = httpx.post(server.base_url + "/api/fal/proxy", json={},
                          headers={"x-fal-target-url": "https://[::1/x"}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error_type"] == "invalid_target_url"


# Request ids that are not ids thorgen issued (uuid4): 404, and never echoed into a header.
# httpx percent-encodes the path as written; the server decodes it back to these characters.
MALFORMED_IDS = [("non-latin-1", "r\u00e9\u20ac"), ("nul", "%00"), ("crlf", "x%0d%0aSet-Cookie:%20a=b"),
                 ("plain word", "nope"), ("uuid with a tail", "6f1c0b8e-2d1a-4c3e-9a55-1b2c3d4e5f60x")]


@pytest.mark.parametrize("name,request_id", MALFORMED_IDS, ids=[c[0] for c in MALFORMED_IDS])
@pytest.mark.parametrize("method,tail", [("PUT", "/cancel"), ("GET", "/status"), ("GET", ""),
                                         ("GET", "/status/stream")])
def test_malformed_request_id_is_404_and_not_reflected(server, name, request_id, method, tail):
    url = f"{server.base_url}/queue/fal-ai/ffmpeg-api/requests/{request_id}{tail}"
    response = httpx.request(method, url, timeout=10)
    assert response.status_code == 404, response.text
    assert response.json()["error_type"] == "request_not_found"
    assert "x-fal-request-id" not in response.headers
    assert all("set-cookie" not in name.lower() for name in response.headers)


def test_unknown_well_formed_request_id_is_404(server):
    request_id = "6f1c0b8e-2d1a-4c3e-9a55-1b2c3d4e5f60"
    for method, tail in (("PUT", "/cancel"), ("GET", "/status"), ("GET", "")):
        response = httpx.request(method, f"{server.base_url}/queue/fal-ai/x/requests/{request_id}{tail}")
        assert response.status_code == 404, response.text
