"""uploadthing's protocol by hand (httpx on a real server): upload targets are written once and expire.

The real client's happy path and refusals are in tests/test_uploadthing_client.py; here are the cases
a well-behaved client never produces: a second write, a body larger than announced, a form with
another field, an unknown target, and expiry (on the API object with a clock the test moves).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from thorgen.media.store import MediaStore
from thorgen.protocol.uploadthing import TARGET_TTL_S, Refusal, UploadThingApi, form_file

ACTION = "/api/uploadthing?actionType=upload&slug=fileUploader"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def announce(server, name: str = "a.png", size: int = len(PNG), kind: str = "image/png") -> dict:
    response = httpx.post(server.base_url + ACTION, json={"input": None, "files": [
        {"name": name, "size": size, "type": kind, "lastModified": 1}]})
    assert response.status_code == 200, response.text
    [target] = response.json()
    return target


def put(url: str, data: bytes, field: str = "file") -> httpx.Response:
    return httpx.put(url, files={field: ("a.png", data, "image/png")}, headers={"Range": "bytes=0-"})


def stored(server) -> set[str]:
    return {path.name for path in (server.data_dir / "files").iterdir()}


def test_a_target_is_written_once(server):
    target = announce(server)
    assert httpx.head(target["url"]).headers["x-ut-range-start"] == "0"
    first = put(target["url"], PNG)
    assert first.status_code == 200, first.text
    assert first.json()["url"].endswith(target["key"]) and httpx.get(first.json()["url"]).content == PNG
    second = put(target["url"], b"\x89PNG other bytes")
    assert second.status_code == 409 and "written once" in second.json()["message"]
    assert httpx.head(target["url"]).status_code == 409
    assert httpx.get(first.json()["url"]).content == PNG


@pytest.mark.parametrize(("body", "field", "status"), [
    (PNG + b"more", "file", 413),  # more bytes than announced
    (PNG[:-1], "file", 400),  # fewer
    (PNG, "other", 400),  # not the field uploadthing's client sends
])
def test_a_body_other_than_announced_stores_nothing(server, body: bytes, field: str, status: int):
    target = announce(server)
    before = stored(server)
    response = put(target["url"], body, field)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["message"], str)
    assert stored(server) == before
    assert put(target["url"], PNG).status_code == 200  # the target stays usable until it expires


def test_unknown_target_slug_and_action(server):
    assert put(server.base_url + "/api/uploadthing/ingest/nope", PNG).status_code == 404
    assert httpx.post(server.base_url + "/api/uploadthing?actionType=upload&slug=other",
                      json={"files": []}).status_code == 404
    bad = httpx.post(server.base_url + "/api/uploadthing?actionType=delete&slug=fileUploader", json={"files": []})
    assert bad.status_code == 400 and "actionType" in bad.json()["message"]
    broken = httpx.post(server.base_url + ACTION, content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["message"].startswith("Invalid input")
    two = httpx.post(server.base_url + ACTION, json={"files": [
        {"name": "a.png", "size": 1, "type": "image/png"}, {"name": "b.png", "size": 1, "type": "image/png"}]})
    assert two.status_code == 400 and "FileCountMismatch" in two.json()["message"]


def test_targets_expire(tmp_path: Path):
    now = [1000.0]
    api = UploadThingApi(MediaStore(tmp_path / "files"), clock=lambda: now[0])
    body = b'{"files": [{"name": "a.wav", "size": 4, "type": "audio/wav"}]}'
    [target] = api.prepare("fileUploader", "upload", body, "http://127.0.0.1:1")
    target_id = target["url"].rsplit("/", 1)[1]
    assert api.open_target(target_id).size == 4
    now[0] += TARGET_TTL_S
    with pytest.raises(Refusal) as refused:
        api.open_target(target_id)
    assert refused.value.status == 404 and "expired" in refused.value.message
    assert not api.targets  # forgotten, not kept around


def test_form_parser_reads_across_chunk_boundaries():
    boundary = b"b0undary"
    data = bytes(range(256)) * 40 + b"\r\n--b0undar"  # a near-delimiter inside the file
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n")

    async def read(chunk: int) -> bytes:
        async def stream():
            for start in range(0, len(body), chunk):
                yield body[start:start + chunk]
        return b"".join([part async for part in form_file(stream(), boundary, len(data))])

    for chunk in (1, 7, 64, 4096, len(body)):
        assert asyncio.run(read(chunk)) == data, chunk


@pytest.mark.parametrize(("kind", "name", "limit"), [
    ("image/png", "a.png", 16 * 1024**2), ("video/mp4", "a.mp4", 512 * 1024**2), ("audio/wav", "a.wav", 64 * 1024**2)])
def test_the_kits_limits_per_type(tmp_path: Path, kind: str, name: str, limit: int):
    api = UploadThingApi(MediaStore(tmp_path / "files"))

    def announce_size(size: int) -> list:
        body = b'{"files": [{"name": "%s", "size": %d, "type": "%s"}]}' % (name.encode(), size, kind.encode())
        return api.prepare("fileUploader", "upload", body, "http://127.0.0.1:1")

    assert len(announce_size(limit)) == 1
    with pytest.raises(Refusal) as refused:
        announce_size(limit + 1)
    assert refused.value.status == 400 and "FileSizeMismatch" in refused.value.message
    assert not list((tmp_path / "files").iterdir())
