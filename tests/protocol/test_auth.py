"""The API key, where it matters: fal's queue and proxy routes, the operations routes, the open ones.

Every refusal below must fail if the key check accepted any non-empty credential.
"""

from __future__ import annotations

import fal_client
import httpx
import pytest
from conftest import point_fal_client_at
from mediagen import make_audio
from server_process import ServerProcess

KEY = "tg-4f1c2a9e7b3d4c5e8f6a0b1c2d3e4f5a"
KEY_SHAPED = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")  # same length and prefix, one character off
METADATA = "fal-ai/ffmpeg-api/metadata"

RIGHT = [f"Key {KEY}", f"Bearer {KEY}", f"key  {KEY}"]
WRONG = [None, "", "Key", "Key nope", f"Key {KEY_SHAPED}", f"Bearer {KEY_SHAPED}", f"Basic {KEY}",
         f"Key {KEY} extra", f"Key {KEY[:-1]}", KEY]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("auth") / "data",
                            env={"THORGEN_SERVER__API_KEY": KEY}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def finished(keyed, tmp_path_factory) -> dict:
    """An uploaded file and a completed job, made with the right key."""
    headers = {"authorization": f"Key {KEY}"}
    initiate = httpx.post(f"{keyed.base_url}/rest/storage/upload/initiate", headers=headers,
                          json={"content_type": "audio/wav", "file_name": "t.wav"}).json()
    path = make_audio(tmp_path_factory.mktemp("auth-media") / "t.wav", seconds=0.5)
    assert httpx.put(initiate["upload_url"], content=path.read_bytes()).status_code == 200
    submit = httpx.post(f"{keyed.base_url}/queue/{METADATA}", headers=headers,
                        json={"media_url": initiate["file_url"]}).json()
    # The status stream closes once the job has COMPLETED: reading it to the end waits for that.
    httpx.get(f"{submit['status_url']}/stream", headers=headers, timeout=60)
    assert httpx.get(submit["status_url"], headers=headers).json()["status"] == "COMPLETED"
    return {"file_url": initiate["file_url"], "request_id": submit["request_id"], "submit": submit}


def auth_header(value: str | None) -> dict[str, str]:
    return {} if value is None else {"authorization": value}


def calls(base: str, finished: dict) -> dict[str, tuple[str, str, dict | None, dict[str, str]]]:
    """Each fal call a client makes: method, URL, JSON body, extra headers."""
    request_id = finished["request_id"]
    proxy = {"x-fal-target-url": f"https://queue.fal.run/{METADATA}"}
    return {
        "submit": ("POST", f"{base}/queue/{METADATA}", {"media_url": finished["file_url"]}, {}),
        "status": ("GET", f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/status", None, {}),
        "result": ("GET", f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}", None, {}),
        "cancel": ("PUT", f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/cancel", None, {}),
        "run": ("POST", f"{base}/run/{METADATA}", {"media_url": finished["file_url"]}, {}),
        "proxy-submit": ("POST", f"{base}/api/fal", {"media_url": finished["file_url"]}, proxy),
        "proxy-status": ("GET", f"{base}/api/fal/proxy", None, {
            "x-fal-target-url": f"https://queue.fal.run/fal-ai/ffmpeg-api/requests/{request_id}/status"}),
        "initiate": ("POST", f"{base}/rest/storage/upload/initiate",
                     {"content_type": "image/png", "file_name": "x.png"}, {}),
    }


CALLS = ["submit", "status", "result", "cancel", "run", "proxy-submit", "proxy-status", "initiate"]


@pytest.mark.parametrize("credential", WRONG)
@pytest.mark.parametrize("call", CALLS)
def test_fal_calls_without_the_right_key_are_401(keyed, finished, call, credential):
    method, url, body, headers = calls(keyed.base_url, finished)[call]
    response = httpx.request(method, url, json=body, headers={**headers, **auth_header(credential)})
    assert response.status_code == 401, f"{call} with {credential!r}: {response.status_code} {response.text}"
    assert response.json()["error_type"] == "unauthorized" and KEY not in response.text


@pytest.mark.parametrize("credential", RIGHT)
@pytest.mark.parametrize("call", CALLS)
def test_fal_calls_with_the_right_key_as_key_or_bearer_pass(keyed, finished, call, credential):
    method, url, body, headers = calls(keyed.base_url, finished)[call]
    response = httpx.request(method, url, json=body, headers={**headers, "authorization": credential}, timeout=60)
    expected = 400 if call == "cancel" else 200  # cancelling a finished job: fal's 400
    assert response.status_code == expected, f"{call}: {response.status_code} {response.text}"


@pytest.mark.parametrize("path", ["/", "/info", "/metrics", "/endpoints", "/openapi.json"])
def test_operations_routes_need_the_key(keyed, path):
    assert httpx.get(f"{keyed.base_url}{path}").status_code == 401
    assert httpx.get(f"{keyed.base_url}{path}", headers={"authorization": f"Key {KEY_SHAPED}"}).status_code == 401
    assert httpx.get(f"{keyed.base_url}{path}", headers={"authorization": f"Key {KEY}"}).status_code == 200


def test_health_ready_and_files_stay_open(keyed, finished):
    assert httpx.get(f"{keyed.base_url}/health").status_code == 200
    assert httpx.get(f"{keyed.base_url}/ready").status_code == 200
    # Files are capability URLs: a <video> tag sends no Authorization.
    assert httpx.get(finished["file_url"]).status_code == 200
    assert httpx.get(finished["submit"]["status_url"]).status_code == 401


def test_fal_python_client_with_right_and_wrong_key(keyed, finished):
    point_fal_client_at(keyed.base_url)
    good = fal_client.SyncClient(key=KEY, default_timeout=60)
    out = good.subscribe(METADATA, arguments={"media_url": finished["file_url"]})
    assert out["media"]["media_type"] == "audio"
    assert good.upload(b"RIFF0000", "audio/wav").startswith(f"{keyed.base_url}/files/")
    bad = fal_client.SyncClient(key=KEY_SHAPED, default_timeout=60)
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        bad.submit(METADATA, arguments={"media_url": finished["file_url"]})
    assert caught.value.status_code == 401


def test_metrics_public_opens_metrics_only(tmp_path):
    process = ServerProcess(tmp_path / "data", env={"THORGEN_SERVER__API_KEY": KEY,
                                                    "THORGEN_SERVER__METRICS_PUBLIC": "true"}).start()
    try:
        assert httpx.get(f"{process.base_url}/metrics").status_code == 200
        assert httpx.get(f"{process.base_url}/info").status_code == 401
    finally:
        process.stop()
