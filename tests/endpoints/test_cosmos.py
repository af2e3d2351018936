"""The Cosmos video endpoints through fal's Python client, against the session's server in tiny mode.

The tiny Cosmos Predict2.5 has the real architecture (Qwen2.5-VL text encoder, Cosmos DiT, Wan VAE)
with random weights, written to disk and loaded through the same loader as real weights. Tiny mode
makes 112x64 (16:9) clips, and the tiny model's position embedding stops at 29 frames.
"""

from __future__ import annotations

import base64
from pathlib import Path

import av
import fal_client
import httpx
import numpy as np
import pytest
from mediagen import make_image, make_video
from wire_helpers import cancel_after_first_step

FAST = {"num_frames": 9, "num_inference_steps": 2}


def probe(url: str, tmp_path: Path, name: str = "clip") -> dict:
    """Download a video and read it with PyAV: container, codec, pixel format, size, frames, fps."""
    if url.startswith("data:"):
        data = base64.b64decode(url.split(",", 1)[1])
    else:
        response = httpx.get(url)
        assert response.status_code == 200, url
        data = response.content
    path = tmp_path / name
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return {"format": container.format.name, "codec": stream.codec_context.name,
                "pix_fmt": stream.codec_context.pix_fmt, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "frames": len(frames),
                "fps": float(stream.average_rate or 0), "bytes": len(data),
                "std": float(np.stack(frames).astype(np.float32).std()), "data": data}


def assert_video_output(output: dict, tmp_path: Path, width: int, height: int, frames: int) -> dict:
    assert set(output) == {"video", "seed"}, output  # never "images": the editor would show a still
    video = output["video"]
    assert set(video) == {"url", "content_type", "file_name", "file_size", "width", "height", "fps", "duration",
                          "num_frames"}, video
    assert (video["width"], video["height"], video["num_frames"]) == (width, height, frames)
    assert video["fps"] == 16.0 and video["duration"] == pytest.approx(frames / 16)
    assert video["content_type"] == "video/mp4" and video["file_name"].endswith(".mp4")
    found = probe(video["url"], tmp_path)
    assert found["format"].startswith("mov,mp4") and found["codec"] == "h264" and found["pix_fmt"] == "yuv420p"
    assert (found["width"], found["height"], found["frames"]) == (width, height, frames)
    assert found["fps"] == pytest.approx(16.0)
    assert found["bytes"] == video["file_size"]
    assert found["std"] > 1.0, "a flat video: the pipeline did not really run"
    return found


def test_text_to_video(fal, tmp_path):
    output = fal.subscribe("fal-ai/cosmos-predict-2.5/text-to-video",
                           arguments={"prompt": "a robot arm welding", **FAST, "seed": 7})
    found = assert_video_output(output, tmp_path, 112, 64, 9)
    assert output["seed"] == 7
    # faststart: the index (moov) comes before the media data, so a browser can play while loading
    assert 0 < found["data"].find(b"moov") < found["data"].find(b"mdat")


@pytest.mark.parametrize(("aspect_ratio", "size"), [("9:16", (64, 112)), ("1:1", (64, 64))])
def test_aspect_ratio_sets_the_size(fal, tmp_path, aspect_ratio, size):
    output = fal.run("fal-ai/cosmos-predict-2.5/text-to-video",
                     arguments={"prompt": "waves", **FAST, "aspect_ratio": aspect_ratio})
    assert_video_output(output, tmp_path, *size, 9)


def test_flux_image_to_video_then_metadata(fal, tmp_path):
    """The editor's "Make Video": a Flux image, then {id}/image-to-video with exactly what it sends."""
    image = fal.run("fal-ai/flux/dev", arguments={"prompt": "a lighthouse", "image_size": "landscape_16_9",
                                                  "num_inference_steps": 2})["images"][0]
    arguments = {"prompt": "waves crash", "image_size": "landscape_16_9", "aspect_ratio": "16:9",
                 "image_url": image["url"], "advanced_camera_control": "not an object", **FAST}
    output = fal.subscribe("fal-ai/minimax/video-01-live/image-to-video", arguments=arguments)
    assert_video_output(output, tmp_path, 112, 64, 9)

    metadata = fal.run("fal-ai/ffmpeg-api/metadata",
                       arguments={"media_url": output["video"]["url"], "extract_frames": True})["media"]
    assert metadata["media_type"] == "video"
    assert metadata["duration"] == pytest.approx(9 / 16, abs=0.07)
    assert (metadata["resolution"]["width"], metadata["resolution"]["height"]) == (112, 64)
    assert metadata["start_frame_url"] and metadata["end_frame_url"]
    assert httpx.get(metadata["end_frame_url"]).status_code == 200


def test_editor_defaults_are_capped_to_what_the_model_makes(fal, tmp_path):
    """No num_frames / steps (the editor sends none): 93 asked, the tiny model stops at 29, and says so."""
    handle = fal.submit("fal-ai/kling-video/v1.5/pro",
                        arguments={"prompt": "x", "image_size": "landscape_16_9", "aspect_ratio": "16:9",
                                   "seconds_total": 30, "num_inference_steps": 2})
    output = handle.get()
    assert_video_output(output, tmp_path, 112, 64, 29)
    logs = [entry["message"] for entry in fal.status("fal-ai/kling-video", handle.request_id, with_logs=True).logs]
    assert any("at most 29 frames" in message for message in logs), logs


def test_image_to_video_takes_the_images_shape_without_aspect_ratio(fal, tmp_path):
    url = fal.upload_file(make_image(tmp_path / "tall.png", 360, 640))
    output = fal.run("fal-ai/cosmos-predict-2.5/image-to-video",
                     arguments={"prompt": "x", "image_url": url, **FAST})
    assert_video_output(output, tmp_path, 64, 112, 9)


def run_with_logs(fal, endpoint: str, arguments: dict) -> tuple[dict, list[str]]:
    handle = fal.submit(endpoint, arguments=arguments)
    output = handle.get()
    return output, [entry["message"] for entry in fal.status(endpoint, handle.request_id, with_logs=True).logs]


def test_images_first_entry_is_the_first_frame(fal, tmp_path):
    """Cosmos takes the first images[] entry (LTX's key-frame shape) as its first frame: a tall image
    makes a tall clip (no aspect_ratio given), the job says image-to-video, and another image with the
    same seed makes another clip. (The LTX id itself is LTX-Video's now: tests/endpoints/test_ltx.py.)"""
    endpoint = "fal-ai/cosmos-predict-2.5/text-to-video"
    clips = []
    for name, color in [("red", (250, 20, 20)), ("blue", (20, 20, 250))]:
        url = fal.upload_file(make_image(tmp_path / f"{name}.png", 360, 640, color=color))
        output, logs = run_with_logs(fal, endpoint, {
            "prompt": "x", "images": [{"start_frame_num": 0, "image_url": url}], **FAST, "seed": 11})
        found = assert_video_output(output, tmp_path, 64, 112, 9)
        assert any(message.startswith("image-to-video: 64x112") for message in logs), logs
        clips.append(found["data"])
    assert clips[0] != clips[1], "two different first frames made the same clip: the image was not used"


def test_video_to_video_continues_a_clip(fal, tmp_path):
    first = fal.run("fal-ai/cosmos-predict-2.5/text-to-video", arguments={"prompt": "x", **FAST})
    output = fal.run("fal-ai/cosmos-predict-2.5/video-to-video",
                     arguments={"prompt": "x", "video_url": first["video"]["url"], "num_frames": 13,
                                "num_inference_steps": 2})
    assert_video_output(output, tmp_path, 112, 64, 13)


def test_video_to_video_is_conditioned_on_the_clip(fal, tmp_path):
    """Same prompt and seed, two different clips to continue: two different results (a clip that is
    read and then not handed to the pipeline would give the same clip twice)."""
    clips = []
    for name, color in [("red", (220, 30, 30)), ("green", (30, 220, 30))]:
        url = fal.upload_file(make_video(tmp_path / f"{name}.mp4", 224, 128, fps=16, seconds=1.0,
                                         with_audio=False, color=color))
        output, logs = run_with_logs(fal, "fal-ai/cosmos-predict-2.5/video-to-video", {
            "prompt": "x", "video_url": url, "num_frames": 13, "num_inference_steps": 2, "seed": 5})
        found = assert_video_output(output, tmp_path, 112, 64, 13)
        assert any(message.startswith("video-to-video: 112x64") for message in logs), logs
        clips.append(found["data"])
    assert clips[0] != clips[1], "two different clips made the same continuation: the clip was not used"


@pytest.mark.parametrize(("output_type", "content_type", "format_name", "codec"), [
    ("VP9 (.webm)", "video/webm", "matroska,webm", "vp9"),
    ("GIF (.gif)", "image/gif", "gif", "gif"),
])
def test_other_output_types(fal, tmp_path, output_type, content_type, format_name, codec):
    output = fal.run("fal-ai/cosmos-predict-2.5/text-to-video",
                     arguments={"prompt": "x", **FAST, "video_output_type": output_type})
    assert output["video"]["content_type"] == content_type
    found = probe(output["video"]["url"], tmp_path)
    assert found["format"] == format_name and found["codec"] == codec and found["frames"] == 9


def test_sync_mode_returns_the_clip_inline(fal, tmp_path):
    output = fal.run("fal-ai/cosmos-predict-2.5/text-to-video", arguments={"prompt": "x", **FAST, "sync_mode": True})
    assert output["video"]["url"].startswith("data:video/mp4;base64,")
    assert probe(output["video"]["url"], tmp_path)["frames"] == 9


def _decoded_frames(data: bytes, path: Path) -> np.ndarray:
    path.write_bytes(data)
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_same_seed_same_clip(fal, tmp_path):
    """The same seed gives the same file: the generation is seeded and x264 and the MP4 muxer are
    deterministic (no creation time is written). On a failure the message tells a different
    generation (decoded frames far apart) from a different encoding (frames nearly equal)."""
    outputs = [fal.run("fal-ai/cosmos-predict-2.5/text-to-video", arguments={"prompt": "x", **FAST, "seed": 3})
               for _ in range(2)]
    data = [httpx.get(output["video"]["url"]).content for output in outputs]
    if data[0] != data[1]:
        frames = [_decoded_frames(clip, tmp_path / f"clip{i}.mp4").astype(np.int16) for i, clip in enumerate(data)]
        first = next((k for k, (a, b) in enumerate(zip(data[0], data[1], strict=False)) if a != b), None)
        far = [int(np.abs(a - b).max()) for a, b in zip(frames[0], frames[1], strict=False)]
        pytest.fail(f"same seed, different MP4 bytes (first difference at byte {first}); largest decoded "
                    f"pixel difference per frame: {far}")
    assert len(data[0]) > 1000


def test_step_logs_and_cancel(fal):
    steps = cancel_after_first_step(fal, "fal-ai/cosmos-predict-2.5/text-to-video",
                                    {"prompt": "long", "num_frames": 9, "num_inference_steps": 100})
    assert steps[0] == "denoising step 1/100" and len(steps) < 100, steps


@pytest.mark.parametrize(("endpoint", "arguments", "loc"), [
    ("fal-ai/cosmos-predict-2.5/text-to-video", {"prompt": "x", "num_frames": 5}, ["body", "num_frames"]),
    ("fal-ai/cosmos-predict-2.5/text-to-video", {"prompt": "x", "num_frames": 200}, ["body", "num_frames"]),
    ("fal-ai/cosmos-predict-2.5/text-to-video", {"prompt": "x", "aspect_ratio": "2:1"}, ["body", "aspect_ratio"]),
    ("fal-ai/cosmos-predict-2.5/text-to-video", {"prompt": "x", "video_output_type": "AVI"},
     ["body", "video_output_type"]),
    ("fal-ai/cosmos-predict-2.5/image-to-video", {"prompt": "x"}, ["body", "image_url"]),
    ("fal-ai/cosmos-predict-2.5/video-to-video", {"prompt": "x"}, ["body", "video_url"]),
    ("fal-ai/veo2", {"prompt": "x", "num_inference_steps": 0}, ["body", "num_inference_steps"]),
    # An endpoint check at submit (not the schema): two conditionings at once.
    ("fal-ai/cosmos-predict-2.5/text-to-video", {"prompt": "x", "image_url": "data:,a", "video_url": "data:,b"},
     ["body", "video_url"]),
])
def test_bad_input_is_a_422_naming_the_field(fal, endpoint, arguments, loc):
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments=arguments)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == loc


def test_unreadable_media_is_a_422(fal, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not media at all")
    url = fal.upload_file(text)
    for endpoint, field in [("fal-ai/cosmos-predict-2.5/image-to-video", "image_url"),
                            ("fal-ai/cosmos-predict-2.5/video-to-video", "video_url")]:
        with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
            fal.run(endpoint, arguments={"prompt": "x", field: url, **FAST})
        assert caught.value.status_code == 422
        assert caught.value.response.json()["detail"][0]["loc"] == ["body", field]


@pytest.mark.parametrize("endpoint", ["fal-ai/sync-lipsync", "fal-ai/topaz/upscale/video",
                                      "fal-ai/topaz/upscale/video/image-to-video"])
def test_what_thorgen_cannot_do_fails_the_job_clearly(fal, endpoint):
    """Accepted (the editor makes an item), then failed with a message saying why."""
    handle = fal.submit(endpoint, arguments={"prompt": "", "video_url": "http://example.invalid/a.mp4"})
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 501
    assert "not available in thorgen" in caught.value.response.json()["detail"]


@pytest.mark.parametrize(("endpoint", "what"), [
    ("fal-ai/sync-lipsync", "lip sync"), ("fal-ai/sync-lipsync/image-to-video", "lip sync"),
    ("fal-ai/topaz/upscale/video", "upscaling"), ("fal-ai/topaz/upscale/video/image-to-video", "upscaling"),
])
def test_what_thorgen_cannot_do_is_listed_as_unavailable_with_why(server, endpoint, what):
    """/endpoints, /info and the start-up log do not call these ready; the listing says why."""
    rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
    row = rows[endpoint]
    assert row["available"] is False and "not available locally" in row["reason"] and what in row["reason"], row
    assert httpx.get(f"{server.base_url}/info").json()["endpoints"] == sum(r["available"] for r in rows.values())
    ready = next(line for line in server.log().splitlines() if "endpoints ready" in line)
    assert endpoint not in ready.split(": ", 1)[-1].split(", "), ready
