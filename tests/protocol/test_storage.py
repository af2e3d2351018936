"""Storage flows fal's clients use beyond the single PUT: both multipart variants and the v3 token."""

from __future__ import annotations

import httpx


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


def test_complete_without_parts_is_a_clear_400(server):
    init = httpx.post(f"{server.base_url}/rest/storage/upload/initiate-multipart",
                      json={"content_type": "video/mp4", "file_name": "x.mp4"}).json()
    path, _, query = init["upload_url"].partition("?")
    response = httpx.post(f"{path}/complete?{query}", json={"parts": []})
    assert response.status_code == 400 and "No parts" in response.json()["detail"]
