"""What only a browser shows, in headless Chromium (Debian's `chromium`, driven by playwright-core).

tests/js/browser.mjs runs the cases; see its header. The page comes from a second loopback origin,
which this thorgen is told to allow (server.cors_origins), as the kit's dev server is by default:
- cors_cache: an <audio> loads a thorgen file, then fetch() of the same URL must not be blocked by a
  cached response without CORS headers (the kit's timeline preview does exactly this);
- video_plays: a thorgen MP4 plays in a <video>;
- upload: the uploadthing 7.4.4 client, running in the page, uploads through /api/uploadthing.
Skips, saying why, where no chromium binary is installed (scripts/setup.sh --test installs it as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mediagen import make_audio, make_image, make_video
from server_process import ServerProcess, free_port

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
TIMEOUT_S = 150

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is needed to drive the browser (tests/js, playwright-core)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary: install Debian's `chromium` package "
                                                "(scripts/setup.sh --test does as root), or set CHROMIUM"),
]


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
                   page_port: int) -> Iterator[ServerProcess]:
    """A thorgen that allows the test page's origin, as it allows the kit's dev server."""
    process = ServerProcess(tmp_path_factory.mktemp("browser") / "data",
                            env={"THORGEN_SERVER__CORS_ORIGINS": f"http://127.0.0.1:{page_port}"},
                            args=["--tiny", "--models-dir", str(models_dir)]).start()
    yield process
    process.stop()


def upload(server: ServerProcess, path: Path, content_type: str) -> str:
    """Into thorgen's file store through fal's storage API (initiate, then PUT)."""
    initiate = httpx.post(f"{server.base_url}/rest/storage/upload/initiate",
                          json={"content_type": content_type, "file_name": path.name})
    assert initiate.status_code == 200, initiate.text
    put = httpx.put(initiate.json()["upload_url"], content=path.read_bytes(), headers={"content-type": content_type})
    assert put.status_code == 200, put.text
    return initiate.json()["file_url"]


@pytest.fixture(scope="module")
def cases(browser_server: ServerProcess, page_port: int,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if not (JS_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        pytest.fail(f"tests/js has no node_modules/playwright-core: run `npm ci` in {JS_DIR}")
    media = tmp_path_factory.mktemp("browser-media")
    make_audio(media / "music.wav", seconds=2.0)
    make_video(media / "clip.mp4", seconds=2.0)
    make_image(media / "still.png")
    audio_url = upload(browser_server, media / "music.wav", "audio/wav")
    video_url = upload(browser_server, media / "clip.mp4", "video/mp4")
    env = {**os.environ, "CHROMIUM": CHROMIUM or ""}
    done = subprocess.run([NODE, "browser.mjs", browser_server.base_url, str(page_port), audio_url, video_url,
                           str(media / "still.png")], cwd=JS_DIR, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    (media / "browser.jsonl").write_text(done.stdout)  # every request and console line, for a post-mortem
    steps = {record["step"]: record for record in map(json.loads, filter(None, done.stdout.splitlines()))}
    steps["_report"] = {"text": f"exit {done.returncode}\n{done.stdout[-8000:]}\n{done.stderr[-3000:]}"}
    assert "browser" in steps and "crash" not in steps, steps["_report"]["text"]
    return steps


def step(cases: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    record = cases.get(name)
    assert record is not None, cases["_report"]["text"]
    assert record["ok"], json.dumps(record, indent=1)[-6000:]
    return record


def test_a_file_fetched_after_an_audio_element_loaded_it(cases):
    record = cases["cors_cache"]
    assert record.get("fresh", {}).get("ok"), record  # past the cache, CORS is answered
    record = step(cases, "cors_cache")
    assert record["element"]["duration"] > 0
    assert record["fetch"]["ok"] and record["fetch"]["status"] == 200 and record["fetch"]["length"] > 0
    assert not [line for line in record["console"] if "CORS" in line], record["console"]


def test_a_thorgen_video_plays(cases):
    record = step(cases, "video_plays")
    assert record["canPlayType"] in ("probably", "maybe")
    assert record["duration"] == pytest.approx(2.0, abs=0.15)
    assert record["readyState"] >= 2 and record["currentTime"] > 0
    assert (record["width"], record["height"]) == (320, 180)


def test_upload_through_the_uploadthing_client_in_the_page(cases, browser_server: ServerProcess, page_port: int):
    record = step(cases, "upload")
    uploaded = record["uploaded"]
    assert uploaded["url"].startswith(browser_server.base_url + "/files/") and record["same_bytes"]
    assert uploaded["name"] == "still.png" and uploaded["type"] == "image/png"
    assert record["progress"] and record["progress"][-1] >= 100
    # What the browser sent: the action same-origin (through the page's rewrite), the bytes cross-origin.
    action = next(r for r in record["requests"] if r["method"] == "POST" and "/api/uploadthing?" in r["url"])
    assert action["headers"]["content-type"] == "application/json"
    assert action["headers"]["origin"] == f"http://127.0.0.1:{page_port}"
    ingest = next(r for r in record["requests"] if r["method"] == "PUT")
    assert ingest["url"].startswith(browser_server.base_url + "/api/uploadthing/ingest/") and ingest["status"] == 200
    assert ingest["headers"]["content-type"].startswith("multipart/form-data; boundary=")
