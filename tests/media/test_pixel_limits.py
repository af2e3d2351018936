"""Pixels are capped before they are decoded or scaled (limits.max_image_pixels), never after.

Hostile files are a few dozen bytes: a PNG header that declares 60000×60000 pixels, or a real PNG
one pixel wide that a cover-fit would scale up to billions of pixels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import av
import httpx
import pytest
from mediagen import make_image, make_png_header, make_thin_png, make_video
from wire_helpers import upload

from thorgen.media.pixels import TooManyPixels, check_size, cover, open_image, open_video

LIMIT = 8192 * 8192  # the default of limits.max_image_pixels


def test_check_size_names_the_size_and_the_setting():
    check_size(8192, 8192, LIMIT)
    with pytest.raises(TooManyPixels) as caught:
        check_size(8193, 8192, LIMIT)
    assert "8193x8192" in str(caught.value) and "limits.max_image_pixels" in str(caught.value)
    assert caught.value.kind == "too_many_pixels"


def test_a_declared_huge_image_is_refused_from_its_header(tmp_path):
    hostile = make_png_header(tmp_path / "huge.png", 60000, 60000)
    assert hostile.stat().st_size < 100
    with pytest.raises(TooManyPixels):
        open_image(hostile)
    with pytest.raises(TooManyPixels):
        open_video(hostile)


def test_a_video_past_the_limit_is_refused_from_its_header(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 320, 180, fps=4, seconds=0.5, with_audio=False)
    with pytest.raises(TooManyPixels):
        open_video(clip, max_pixels=320 * 180 - 1)
    open_video(clip, max_pixels=320 * 180).close()


def test_cover_output_is_capped_too(tmp_path):
    image = open_image(make_image(tmp_path / "small.png", 64, 36))
    assert cover(image, 1024, 576).size == (1024, 576)
    with pytest.raises(TooManyPixels):
        cover(image, 100_000, 100_000)


# Compose with a 1-pixel-wide still and a 2-pixel-wide video, in a process that may map only 3 GiB:
# scaled up to cover the 576×1024 canvas before cropping, the still alone would be 576×5,760,000
# pixels (10 GB); cropped first, each frame is the canvas's size.
_COMPOSE_UNDER_A_MEMORY_CAP = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    cap = 3 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from thorgen.media.compose import Clip, compose
    folder = Path(sys.argv[1])
    clips = [Clip(folder / "thin.png", 0, 500, "video"), Clip(folder / "thin.mp4", 500, 500, "video")]
    result = compose(clips, folder / "out.mp4", folder / "thumb.jpg")
    print(result.width, result.height)
""")


def test_compose_never_scales_a_thin_picture_past_the_canvas(tmp_path):
    make_thin_png(tmp_path / "thin.png", 1, 10_000)
    make_video(tmp_path / "thin.mp4", 2, 4096, fps=4, seconds=1, with_audio=False)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _COMPOSE_UNDER_A_MEMORY_CAP, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["576", "1024"]
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30  # 1 s at 30 fps


# -- through a server: a 422 naming the field, before anything is allocated --------------------------

def _result(base: str, endpoint: str, arguments: dict) -> httpx.Response:
    submitted = httpx.post(f"{base}/queue/{endpoint}", json=arguments)
    assert submitted.status_code == 200, submitted.text
    request_id = submitted.json()["request_id"]
    with httpx.stream("GET", f"{base}/queue/{endpoint}/requests/{request_id}/status/stream", timeout=120) as events:
        for line in events.iter_lines():
            if '"COMPLETED"' in line:
                break
    return httpx.get(f"{base}/queue/{endpoint}/requests/{request_id}")


def _assert_too_many_pixels(response: httpx.Response, loc: list) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert len(detail) == 1 and detail[0]["loc"] == loc and detail[0]["type"] == "too_many_pixels", detail
    assert "limits.max_image_pixels" in detail[0]["msg"], detail
    return detail[0]["msg"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, server) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("hostile")
    return {"declared": upload(server.base_url, make_png_header(folder / "huge.png", 60000, 60000), "image/png"),
            "over_pil": upload(server.base_url, make_png_header(folder / "big.png", 15000, 15000), "image/png")}


def test_extract_frame_refuses_a_declared_60000_square_png(server, hostile):
    response = _result(server.base_url, "fal-ai/ffmpeg-api/extract-frame", {"video_url": hostile["declared"]})
    assert "60000x60000" in _assert_too_many_pixels(response, ["body", "video_url"])


def test_metadata_refuses_a_declared_huge_png(server, hostile):
    response = _result(server.base_url, "fal-ai/ffmpeg-api/metadata", {"media_url": hostile["over_pil"]})
    _assert_too_many_pixels(response, ["body", "media_url"])


@pytest.mark.parametrize("which", ["declared", "over_pil"])
def test_compose_refuses_a_huge_still_naming_its_keyframe(server, hostile, which):
    tracks = [{"id": "a", "type": "video", "keyframes": [{"timestamp": 0, "duration": 1000, "url": hostile[which]}]}]
    response = _result(server.base_url, "fal-ai/ffmpeg-api/compose", {"tracks": tracks})
    _assert_too_many_pixels(response, ["body", "tracks", 0, "keyframes", 0, "url"])


def test_flux_image_to_image_refuses_a_huge_input(server, hostile):
    response = _result(server.base_url, "fal-ai/flux/dev/image-to-image",
                       {"prompt": "x", "image_url": hostile["over_pil"], "num_inference_steps": 2})
    _assert_too_many_pixels(response, ["body", "image_url"])


def test_cosmos_refuses_a_huge_conditioning_image(server, hostile):
    response = _result(server.base_url, "fal-ai/cosmos-predict-2.5/image-to-video",
                       {"prompt": "x", "image_url": hostile["declared"], "num_inference_steps": 2})
    _assert_too_many_pixels(response, ["body", "image_url"])


def test_the_limit_is_configurable(tmp_path):
    from server_process import ServerProcess

    process = ServerProcess(tmp_path / "data", env={"THORGEN_LIMITS__MAX_IMAGE_PIXELS": "100000"}).start()
    try:
        small = upload(process.base_url, make_image(tmp_path / "small.png", 320, 180), "image/png")  # 57,600
        large = upload(process.base_url, make_image(tmp_path / "large.png", 640, 360), "image/png")  # 230,400
        clip = upload(process.base_url, make_video(tmp_path / "large.mp4", 640, 360, fps=4, seconds=0.5,
                                                   with_audio=False), "video/mp4")
        assert _result(process.base_url, "fal-ai/ffmpeg-api/extract-frame", {"video_url": small}).status_code == 200
        for url in (large, clip):
            response = _result(process.base_url, "fal-ai/ffmpeg-api/extract-frame", {"video_url": url})
            assert "640x360 = 230,400 pixels" in _assert_too_many_pixels(response, ["body", "video_url"])
    finally:
        process.stop()
