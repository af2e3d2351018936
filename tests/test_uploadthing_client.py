"""The video-starter-kit's uploads: the real `uploadthing` 7.4.4 client under Node against thorgen.

tests/js/uploadthing.mjs runs the client the kit pins (route config, upload action, HEAD, the form PUT
with progress) and then fal's ffmpeg-api/metadata on each returned URL through @fal-ai/client 1.2.1,
as the kit's left panel does next. Refusals run in their own process so the file store can be counted
before and after: nothing may be stored.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from mediagen import make_audio, make_image, make_video

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(NODE is None, reason="node is needed to run the uploadthing client (tests/js)")


def run_script(mode: str, server, *args: str) -> dict[str, dict[str, Any]]:
    if not (JS_DIR / "node_modules" / "uploadthing" / "package.json").exists():
        pytest.fail(f"tests/js has no node_modules/uploadthing: run `npm ci` in {JS_DIR}")
    done = subprocess.run([NODE, "uploadthing.mjs", mode, server.base_url, *args], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    steps = {record["step"]: record for record in map(json.loads, filter(None, done.stdout.splitlines()))}
    report = f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}\n{server.log()[-3000:]}"
    assert done.returncode == 0 and "done" in steps, report
    return steps


def stored_files(server) -> set[str]:
    return {path.name for path in (server.data_dir / "files").iterdir()}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uploadthing-media")
    make_image(folder / "still.png")
    make_video(folder / "clip.mp4", seconds=2.0)
    make_audio(folder / "music.wav", seconds=3.0)
    return folder


@pytest.fixture(scope="module")
def uploads(server, media: Path) -> dict[str, dict[str, Any]]:
    return run_script("uploads", server, str(media))


def test_route_config_is_the_kits(uploads):
    assert uploads["route_config"]["client_version"] == "7.4.4"
    [route] = uploads["route_config"]["config"]
    assert route["slug"] == "fileUploader"
    assert {kind: rule["maxFileSize"] for kind, rule in route["config"].items()} == {
        "image": "16MB", "video": "512MB", "audio": "64MB"}
    assert all(rule["maxFileCount"] == 1 for rule in route["config"].values())


@pytest.mark.parametrize(("name", "media_type", "content_type"), [
    ("still.png", "image", "image/png"), ("clip.mp4", "video", "video/mp4"), ("music.wav", "audio", "audio/wav")])
def test_upload_then_metadata_as_the_kit_does(uploads, server, media: Path, name: str, media_type: str,
                                             content_type: str):
    step = uploads[f"upload_{name}"]
    uploaded = step["uploaded"]
    assert step["count"] == 1 and uploaded["name"] == name and uploaded["type"] == content_type
    for field in ("url", "appUrl"):  # what 7.4.4's client hands back; the kit reads url
        assert uploaded[field].startswith(server.base_url + "/files/"), (field, uploaded)
    assert uploaded["size"] == step["size"] == (media / name).stat().st_size
    assert uploaded["fileHash"] and uploaded["serverData"] is None
    assert step["downloaded"] == {"status": 200, "content_type": content_type, "same_bytes": True}
    # The form PUT the client sends, and the progress it reports (XMLHttpRequest upload events).
    assert step["put_status"] == 200 and step["put_headers"]["content-type"].startswith("multipart/form-data")
    assert step["put_headers"]["Range"] == "bytes=0-" and step["put_headers"]["x-uploadthing-version"] == "7.4.4"
    # The browser counts the whole form body (boundaries too), so a small file ends a little past 100.
    assert step["put_progress_events"] >= 1 and step["progress"][-1] >= 100
    metadata = step["metadata"]
    assert metadata["media_type"] == media_type and metadata["url"] == uploaded["url"]
    if media_type == "video":
        assert metadata["duration"] == pytest.approx(2.0, abs=0.15) and metadata["start_frame_url"]
    if media_type == "audio":
        assert metadata["duration"] == pytest.approx(3.0, abs=0.15)


def test_over_the_limit_and_wrong_type_are_refused_and_nothing_is_stored(server):
    before = stored_files(server)
    steps = run_script("refusals", server)
    over, wrong = steps["over_limit"]["error"], steps["wrong_type"]["error"]
    assert over["constructor"] == "UploadThingError" and over["code"] == "BAD_REQUEST"
    assert "FileSizeMismatch" in over["message"] and "16MB" in over["message"]
    assert wrong["constructor"] == "UploadThingError" and wrong["code"] == "BAD_REQUEST"
    assert "InvalidFileType" in wrong["message"] and "application/pdf" in wrong["message"]
    assert steps["over_limit"]["puts"] == steps["wrong_type"]["puts"] == 0
    assert stored_files(server) == before
    assert httpx.get(f"{server.base_url}/health").status_code == 200
