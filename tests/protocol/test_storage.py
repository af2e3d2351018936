"""Storage flows fal's clients use beyond the single PUT (both multipart variants, the v3 token), and
the write-once rules: an upload target is made by an initiate call, takes one write, and expires."""

from __future__ import annotations

import time
import uuid

import httpx
from mediagen import make_video
from server_process import ServerProcess
from wire_helpers import upload, wait_state


def test_js_multipart_upload_joins_parts_in_order(server):
    base = server.base_url
    init = httpx.post(f"{base}/rest/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
                      json={"content_type": "video/mp4", "file_name": "big.mp4"}).json()
    path, _, query = init["upload_url"].partition("?")
    parts = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    etags = []
    for number in (2, 1, 3):  # parts may arrive out of order
        response = httpx.put(f"{path}/{number}?{query}", content=parts[number - 1])
        assert response.status_code == 200
        assert response.json()["partNumber"] == number
        etags.append({"partNumber": number, "etag": response.json()["etag"]})
    done = httpx.post(f"{path}/complete?{query}", json={"parts": etags})
    assert done.status_code == 200
    assert httpx.get(init["file_url"]).content == b"".join(parts)
    # Completed once: the same URLs cannot add a part or complete again.
    assert httpx.put(f"{path}/1?{query}", content=b"z").status_code == 409
    assert httpx.post(f"{path}/complete?{query}", json={"parts": etags}).status_code == 409
    assert httpx.get(init["file_url"]).content == b"".join(parts)


def test_python_v3_token_and_multipart(server):
    base = server.base_url
    token = httpx.post(f"{base}/rest/storage/auth/token?storage_type=fal-cdn-v3", json={}).json()
    assert token["base_url"] == f"{base}/cdn" and token["token_type"] == "Bearer"
    auth = {"authorization": f"{token['token_type']} {token['token']}"}
    start = httpx.post(f"{token['base_url']}/files/upload/multipart",
                       headers={**auth, "x-fal-file-name": "song.wav", "content-type": "audio/wav"}).json()
    access_url, upload_id = start["access_url"], start["uploadId"]
    assert access_url.endswith(".wav")
    for number, chunk in ((1, b"RIFF"), (2, b"data")):
        response = httpx.put(f"{access_url}/multipart/{upload_id}/{number}", content=chunk, headers=auth)
        assert response.status_code == 200 and response.headers["etag"]
    done = httpx.post(f"{access_url}/multipart/{upload_id}/complete", json={"parts": []}, headers=auth)
    assert done.status_code == 200
    assert httpx.get(access_url).content == b"RIFFdata"
    replay = httpx.put(f"{access_url}/multipart/{upload_id}/1", content=b"EVIL", headers=auth)
    assert replay.status_code == 409 and httpx.get(access_url).content == b"RIFFdata"


def test_cdn_upload_needs_the_token(server):
    refused = httpx.post(f"{server.base_url}/cdn/files/upload", content=b"x",
                         headers={"authorization": "Bearer 99999999999999.forged"})
    assert refused.status_code == 403


def test_complete_without_parts_is_a_clear_400(server):
    init = httpx.post(f"{server.base_url}/rest/storage/upload/initiate-multipart",
                      json={"content_type": "video/mp4", "file_name": "x.mp4"}).json()
    path, _, query = init["upload_url"].partition("?")
    response = httpx.post(f"{path}/complete?{query}", json={"parts": []})
    assert response.status_code == 400 and "No parts" in response.json()["detail"]


def _initiate(base: str, name: str = "a.png", content_type: str = "image/png") -> dict:
    response = httpx.post(f"{base}/rest/storage/upload/initiate", json={"content_type": content_type,
                                                                          "file_name": name})
    assert response.status_code == 200, response.text
    return response.json()


def test_put_over_a_finished_output_is_refused(server, tmp_path):
    clip = upload(server.base_url, make_video(tmp_path / "clip.mp4", seconds=0.5), "video/mp4")
    submitted = httpx.post(f"{server.base_url}/queue/fal-ai/ffmpeg-api/extract-frame",
                           json={"video_url": clip}).json()
    wait_state(server.base_url, submitted["request_id"], "COMPLETED")
    output_url = httpx.get(submitted["response_url"]).json()["images"][0]["url"]
    original = httpx.get(output_url).content
    key = output_url.rsplit("/", 1)[1]
    other = _initiate(server.base_url)  # a valid token, but for another key
    other_token = other["upload_url"].split("?token=")[1]
    for token in (None, other_token, "open"):
        params = {"token": token} if token else {}
        response = httpx.put(f"{server.base_url}/uploads/{key}", params=params, content=b"EVIL")
        assert response.status_code == 403, response.text
        assert response.json()["error_type"] == "upload_forbidden"
    assert httpx.get(output_url).content == original


def test_put_without_initiate_is_refused_and_stores_nothing(server):
    key = f"{uuid.uuid4().hex}.png"
    response = httpx.put(f"{server.base_url}/uploads/{key}", content=b"png")
    assert response.status_code == 403 and "initiate" in response.json()["detail"]
    assert httpx.get(f"{server.base_url}/files/{key}").status_code == 404


def test_a_signed_upload_url_takes_one_write(server):
    urls = _initiate(server.base_url)
    assert httpx.put(urls["upload_url"], content=b"first").status_code == 200
    replay = httpx.put(urls["upload_url"], content=b"second")
    assert replay.status_code == 409 and replay.json()["error_type"] == "upload_exists"
    assert httpx.get(urls["file_url"]).content == b"first"


def test_an_expired_upload_url_is_refused(tmp_path):
    process = ServerProcess(tmp_path / "data", env={"THORGEN_STORAGE__UPLOAD_TTL_S": "0.2"}).start()
    try:
        urls = _initiate(process.base_url)
        expires_ms = int(urls["upload_url"].split("?token=")[1].split(".")[0])
        time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 0.01)  # only as long as the TTL needs
        response = httpx.put(urls["upload_url"], content=b"late")
        assert response.status_code == 410 and "upload_ttl_s" in response.json()["detail"]
        assert httpx.get(urls["file_url"]).status_code == 404
    finally:
        process.stop()
