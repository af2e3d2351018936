"""fal's official JS client (@fal-ai/client) against a real thorgen on a loopback port.

Two versions run the same flow (tests/js/flow.mjs):
- editor: 1.2.1, the version video-starter-kit's lockfile pins, configured as its src/lib/fal.ts
  does (string proxyUrl, credentials resolver returning null) under a browser shim, so every call
  goes to ``/api/fal`` with ``x-fal-target-url`` and the upload PUT goes straight to thorgen;
- latest: the newest 1.x (pinned in tests/js/package.json) with ``proxyUrl: {url, when: "always"}``.

The flow prints one JSON line per step; the assertions on the outcome live here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from mediagen import make_audio, make_image, make_video

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
NPM = shutil.which("npm")
FLOW_TIMEOUT_S = 300  # the editor flow makes a 121-frame LTX clip and three Kokoro clips too
CLIP_SECONDS, MUSIC_SECONDS, VOICE_SECONDS = 2.0, 3.0, 1.0
DURATION_TOLERANCE = 0.15
FAL_DEFAULT_POINTS_PER_SECOND = 4  # fal-ai/ffmpeg-api/waveform's default
EDITOR_POINTS_PER_SECOND = 5  # what the editor's track.tsx sends

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed to run fal's JS client (tests/js); install Node.js >= 20",
)

# Where each client version is expected to send its calls.
PROXY_PATH = {"editor": "/api/fal", "latest": "/api/fal/proxy"}
TARGET_HOSTS = {
    "editor": ("https://queue.fal.run/", "https://rest.alpha.fal.ai/"),  # 1.2.1's REST host
    "latest": ("https://queue.fal.run/", "https://fal.run/", "https://rest.fal.ai/"),
}


@dataclass
class FlowRun:
    mode: str
    returncode: int
    stdout: str
    stderr: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    server_log: str = ""

    def report(self) -> str:
        return (f"node flow.mjs {self.mode} exited {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-8000:]}\n--- stderr ---\n{self.stderr[-4000:]}\n"
                f"--- server log (tail) ---\n{self.server_log[-4000:]}")

    def step(self, name: str) -> dict[str, Any]:
        record = self.steps.get(name)
        assert record is not None, f"step {name!r} did not run\n{self.report()}"
        assert record["ok"], f"step {name!r} failed\n{self.report()}"
        return record


@pytest.fixture(scope="session")
def js_client_dir() -> Path:
    """tests/js with its node_modules; CI runs `npm ci` beforehand, this only fills a gap."""
    packages = ("fal-client-1-2-1", "fal-client-latest")
    if not all((JS_DIR / "node_modules" / name / "package.json").exists() for name in packages):
        done = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed ({done.returncode}):\n"
                        f"{done.stdout}\n{done.stderr}")
    return JS_DIR


@pytest.fixture(scope="module")
def js_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("js-media")
    make_video(folder / "clip.mp4", seconds=CLIP_SECONDS)
    make_image(folder / "still.png")
    make_audio(folder / "music.wav", seconds=MUSIC_SECONDS)
    make_audio(folder / "voice.wav", seconds=VOICE_SECONDS, freq=880.0)
    return folder


@pytest.fixture(scope="module", params=["editor", "latest"])
def flow(request: pytest.FixtureRequest, server, js_client_dir: Path, js_media: Path) -> FlowRun:
    mode = request.param
    # The editor runs in a browser with no fal key: keep the test process's FAL_KEY away from node.
    env = {key: value for key, value in os.environ.items() if not key.startswith("FAL_KEY")}
    env["FLOW_TIMEOUT_MS"] = str((FLOW_TIMEOUT_S - 10) * 1000)
    try:
        done = subprocess.run([NODE, "flow.mjs", mode, server.base_url, str(js_media)],
                              cwd=js_client_dir, env=env, capture_output=True, text=True,
                              timeout=FLOW_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"node flow.mjs {mode} ran past {FLOW_TIMEOUT_S} s\n{out[-8000:]}\n"
                    f"--- server log (tail) ---\n{server.log()[-4000:]}")
    run = FlowRun(mode, done.returncode, done.stdout, done.stderr, server_log=server.log())
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            run.steps[record["step"]] = record
    return run


def test_flow_runs_to_the_end(flow: FlowRun):
    failed = [name for name, record in flow.steps.items() if not record["ok"]]
    assert flow.returncode == 0 and not failed and "done" in flow.steps, flow.report()
    client = flow.step("client")
    assert client["package"] == "@fal-ai/client"
    if flow.mode == "editor":
        assert client["version"] == "1.2.1"
    else:
        dependencies = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
        pinned = dependencies["fal-client-latest"]
        assert pinned == f"npm:@fal-ai/client@{client['version']}"


def test_every_call_goes_through_the_proxy_route(flow: FlowRun, server):
    calls = flow.step("traffic")["calls"]
    assert calls, flow.report()
    proxy_url = server.base_url + PROXY_PATH[flow.mode]
    puts = []
    for call in calls:
        assert "error" not in call, f"transport error on {call}\n{flow.report()}"
        if call["target"] is None:
            # Only the raw upload PUT skips the proxy, going straight to the URL thorgen handed out.
            assert call["method"] == "PUT" and call["url"].startswith(server.base_url + "/"), call
            assert call["status"] == 200, call
            puts.append(call)
            continue
        assert call["url"] == proxy_url, call
        assert call["target"].startswith(TARGET_HOSTS[flow.mode]), call
        assert 200 <= call["status"] < 300 or call["status"] == 422, call
        if flow.mode == "editor":
            # A browser with no saved key: no Authorization, and fetch sets the User-Agent itself.
            assert call["authorization"] is None and call["user_agent"] is None, call
        else:
            assert call["authorization"] == "Key local", call
        is_result = re.search(r"^https://queue\.fal\.run/.+/requests/[^/?]+$", call["target"])
        if is_result and call["status"] == 200:
            assert call["request_id"], f"a result without the x-fal-request-id header: {call}"
    # Four explicit uploads and the Blob inputs' automatic ones (metadata; the LTX key frame in editor,
    # image-to-image in latest).
    assert len(puts) == 6, puts
    streams = [call for call in calls if call["target"] and "/status/stream" in call["target"]]
    assert streams, "streaming mode never asked for /status/stream"
    for call in streams:
        assert call["response_content_type"].startswith("text/event-stream"), call


def test_storage_upload_returns_absolute_urls_on_thorgen(flow: FlowRun, server):
    upload = flow.step("upload")
    assert set(upload["urls"]) == {"clip", "still", "music", "voice"}
    for key, url in upload["urls"].items():
        assert url.startswith(server.base_url + "/"), url
        fetched = upload["fetched"][key]
        assert fetched["status"] == 200 and fetched["same_bytes"], fetched
        assert fetched["length"] == upload["sizes"][key]
    assert upload["fetched"]["clip"]["content_type"] == "video/mp4"
    assert upload["fetched"]["still"]["content_type"] == "image/png"


def test_metadata_with_streaming_status(flow: FlowRun, server):
    step = flow.step("metadata_streaming")
    assert step["media_type"] == "video"
    assert step["duration"] == pytest.approx(CLIP_SECONDS, abs=DURATION_TOLERANCE)
    assert step["requestId"], "no x-fal-request-id header on the result"
    assert step["statuses"] and step["statuses"][-1] == "COMPLETED", step["statuses"]
    resolution = step["media"]["resolution"]
    assert (resolution["width"], resolution["height"]) == (320, 180)
    for key in ("start_frame_url", "end_frame_url"):
        url = step[key]
        assert isinstance(url, str) and url.startswith(server.base_url + "/"), (key, url)
        frame = httpx.get(url)
        assert frame.status_code == 200 and frame.headers["content-type"].startswith("image/"), url


def test_metadata_with_polling_status(flow: FlowRun):
    step = flow.step("metadata_polling")
    assert step["media_type"] == "audio"
    assert step["duration"] == pytest.approx(MUSIC_SECONDS, abs=DURATION_TOLERANCE)
    assert step["sample_rate"] == 44100 and step["channels"] == 2
    assert step["requestId"]
    assert step["statuses"][-1] == "COMPLETED"


def test_blob_input_is_uploaded_by_the_client(flow: FlowRun, server):
    step = flow.step("metadata_blob_input")
    assert len(step["upload_puts"]) == 1
    assert step["upload_puts"][0].startswith(server.base_url + "/")
    assert step["url"].startswith(server.base_url + "/")
    assert step["media_type"] == "audio"
    assert step["duration"] == pytest.approx(VOICE_SECONDS, abs=DURATION_TOLERANCE)


def test_waveform(flow: FlowRun):
    step = flow.step("waveform")
    assert step["length"] == pytest.approx(MUSIC_SECONDS * FAL_DEFAULT_POINTS_PER_SECOND, abs=2)
    assert step["points"] == step["length"]
    assert step["editor_length"] == pytest.approx(MUSIC_SECONDS * EDITOR_POINTS_PER_SECOND, abs=2)
    assert step["editor_precision"] == 3 and step["editor_max_decimals"] <= 3
    assert step["editor_all_numbers"] and -1.0 <= step["min"] <= step["max"] <= 1.0
    assert step["max"] > 0.05  # a 440 Hz tone is not silence


def test_compose_renders_the_editor_timeline(flow: FlowRun, server, tmp_path: Path):
    step = flow.step("compose")
    assert step["statuses"][-1] == "COMPLETED"
    for key in ("video_url", "thumbnail_url"):
        assert step[key].startswith(("http://", "https://")), step[key]
    thumbnail = httpx.get(step["thumbnail_url"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"].startswith("image/")

    response = httpx.get(step["video_url"], timeout=60)
    assert response.status_code == 200, response.text[:500]
    video_path = tmp_path / f"{flow.mode}-export.mp4"
    video_path.write_bytes(response.content)
    with av.open(str(video_path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (1024, 576)
        assert float(video.average_rate) == pytest.approx(30.0, abs=0.01)
        assert container.streams.audio, "the export has no audio stream"
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(3.5, abs=DURATION_TOLERANCE)


def test_bad_input_is_a_validation_error(flow: FlowRun):
    step = flow.step("validation_error")
    assert step["constructor"] == "ValidationError" and step["instance_of_validation_error"], step
    assert step["status"] == 422
    assert isinstance(step["body"]["detail"], list)
    assert step["fieldErrors"] == step["body"]["detail"]
    field_errors = step["fieldErrors"]
    assert any(error["loc"][-1] == "media_url" for error in field_errors), field_errors
    assert step["media_url_errors"], "getFieldErrors('media_url') found nothing"


def test_queue_api_by_hand(flow: FlowRun):
    step = flow.step("queue_by_hand")
    assert step["statuses"][-1] == "COMPLETED"
    assert {"request_id", "status_url", "response_url", "cancel_url"} <= set(step["submit_keys"])
    assert step["result_request_id"] == step["request_id"]
    assert step["duration"] == pytest.approx(CLIP_SECONDS, abs=DURATION_TOLERANCE)
    if flow.mode == "latest":  # asked with logs=1
        assert isinstance(step["completed_logs"], int) and step["completed_logs"] >= 1, step
        assert all(isinstance(entry["message"], str) for entry in step["log_sample"])


def test_sync_run_through_the_proxy(flow: FlowRun, server):
    if flow.mode != "latest":
        pytest.skip("the editor never calls fal.run")
    image = flow.step("run")["image"]
    assert image["url"].startswith(server.base_url + "/")
    frame = httpx.get(image["url"])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"


def test_flux_image_with_the_editors_input(flow: FlowRun, server):
    step = flow.step("flux_image")
    image = step["image"]
    assert (image["width"], image["height"]) == (1024, 576)  # landscape_16_9
    assert image["content_type"] == "image/jpeg" and image["url"].startswith(server.base_url + "/")
    assert step["status"] == 200 and step["downloaded_type"] == "image/jpeg"
    assert step["downloaded_length"] == image["file_size"] and isinstance(step["seed"], int)


def test_make_video_from_the_flux_image(flow: FlowRun, server):
    """The editor's Make Video with its exact input (no num_frames or steps: the tiny model's 29 frames)."""
    step = flow.step("make_video")
    video = step["video"]
    assert step["keys"] == ["video", "seed"]
    assert (video["width"], video["height"], video["num_frames"], video["fps"]) == (112, 64, 29, 16)
    assert video["content_type"] == "video/mp4" and video["url"].startswith(server.base_url + "/")
    assert step["status"] == 200 and step["downloaded_type"] == "video/mp4"
    assert step["downloaded_length"] == video["file_size"]
    metadata = step["metadata"]
    assert metadata["media_type"] == "video" and metadata["duration"] == pytest.approx(29 / 16, abs=0.07)
    assert (metadata["resolution"]["width"], metadata["resolution"]["height"]) == (112, 64)
    assert metadata["start_frame_url"] and metadata["end_frame_url"]


def test_voiceover_with_the_editors_input(flow: FlowRun, server):
    step = flow.step("voiceover")
    if "skipped" in step:
        pytest.skip(step["skipped"])
    audio = step["audio"]
    assert audio["content_type"] == "audio/wav" and audio["url"].startswith(server.base_url + "/")
    assert audio["duration"] > 0 and step["status"] == 200 and step["downloaded_type"] == "audio/wav"
    assert step["downloaded_length"] == audio["file_size"]


def test_flux_image_to_image_with_a_blob(flow: FlowRun, server):
    if flow.mode == "editor":
        pytest.skip("the editor sends image-to-image only to video models")
    step = flow.step("flux_image_to_image_blob")
    assert (step["image"]["width"], step["image"]["height"]) == (640, 368)  # the 640x360 still, to 16s
    assert step["seed"] == 3


def test_music_with_the_editors_input(flow: FlowRun, server):
    """minimax-music, the editor's default: seconds_total 30 is made as it is (the tiny window is 47.55 s)."""
    step = flow.step("music")
    audio = step["audio"]
    assert audio["content_type"] == "audio/wav" and audio["url"].startswith(server.base_url + "/")
    assert audio["duration"] == 30.0
    assert step["status"] == 200 and step["downloaded_type"] == "audio/wav"
    assert step["downloaded_length"] == audio["file_size"]
    assert step["waveform_length"] == round(audio["duration"] * EDITOR_POINTS_PER_SECOND)


def test_kokoro_voices_with_the_editors_input(flow: FlowRun, server):
    """Through @fal-ai/client: two voices give different audio, the same voice twice the same."""
    if flow.mode != "editor":
        pytest.skip("run in the editor flow only")
    step = flow.step("kokoro_voices")
    if "skipped" in step:
        pytest.skip(step["skipped"])
    heart, again, adam = step["heart"], step["again"], step["adam"]
    for clip in (heart, again, adam):
        assert clip["audio"]["content_type"] == "audio/wav" and clip["status"] == 200
        assert clip["audio"]["url"].startswith(server.base_url + "/") and clip["audio"]["duration"] > 0
    assert heart["sha256"] == again["sha256"] and heart["sha256"] != adam["sha256"]


def test_ltx_key_frames_with_the_editors_input(flow: FlowRun, server):
    """Three key frames (a gallery URL, an upload, a Blob the client uploads) at frames 0, 8 and 16, sent
    as the editor sends them: a 121-frame H.264 clip from LTX-Video (24 fps, tiny 128x64)."""
    if flow.mode != "editor":
        pytest.skip("run in the editor flow only")
    step = flow.step("ltx_key_frames")
    video = step["video"]
    assert step["keys"] == ["video", "seed"]
    assert (video["width"], video["height"], video["num_frames"], video["fps"]) == (128, 64, 121, 24)
    assert step["status"] == 200 and step["downloaded_type"] == "video/mp4"
    assert step["downloaded_length"] == video["file_size"]
