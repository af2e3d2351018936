"""The Flux endpoints through fal's Python client, against the session's server in tiny mode.

The tiny Flux has Flux's real architecture with random weights, written to disk and loaded through
the same loader as real weights, so every request here runs the real diffusers pipeline.
"""

from __future__ import annotations

import base64
import io

import fal_client
import httpx
import numpy as np
import pytest
from mediagen import make_image
from PIL import Image
from wire_helpers import cancel_after_first_step

SMALL = {"width": 128, "height": 128}
FAST = {"image_size": SMALL, "num_inference_steps": 2}


def fetch_image(url: str) -> Image.Image:
    if url.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    response = httpx.get(url)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def assert_fal_image_output(output: dict, count: int, width: int, height: int, content_type: str,
                            prompt: str) -> None:
    assert set(output) == {"images", "timings", "seed", "has_nsfw_concepts", "prompt"}, output
    assert output["prompt"] == prompt and isinstance(output["seed"], int)
    assert output["has_nsfw_concepts"] == [False] * count
    assert output["timings"]["inference"] > 0
    assert len(output["images"]) == count
    for image in output["images"]:
        assert set(image) == {"url", "width", "height", "content_type", "file_name", "file_size"}, image
        assert (image["width"], image["height"]) == (width, height)
        assert image["content_type"] == content_type
        picture = fetch_image(image["url"])
        assert picture.size == (width, height)
        assert picture.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[content_type]
        if not image["url"].startswith("data:"):
            assert image["file_size"] == len(httpx.get(image["url"]).content)
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
        assert pixels.std() > 1.0, "a flat image: the pipeline did not really run"


def test_flux_dev_with_the_editors_input(fal):
    """What the editor sends (starter-kit.md §2.1), including fields Flux ignores."""
    arguments = {"prompt": "Coffee beans falling", "image_size": "landscape_16_9", "aspect_ratio": "16:9",
                 "seconds_total": 30, "num_inference_steps": 2}
    output = fal.subscribe("fal-ai/flux/dev", arguments=arguments)
    assert_fal_image_output(output, 1, 1024, 576, "image/jpeg", "Coffee beans falling")


@pytest.mark.parametrize("endpoint", ["fal-ai/flux/schnell", "fal-ai/flux-pro/v1.1-ultra",
                                      "fal-ai/stable-diffusion-v35-large"])
def test_every_text_to_image_id(fal, endpoint):
    output = fal.run(endpoint, arguments={"prompt": "a red car", **FAST, "output_format": "png"})
    assert_fal_image_output(output, 1, 128, 128, "image/png", "a red car")


@pytest.mark.parametrize(("image_size", "size"), [
    ("square_1_1", (1024, 1024)), ("portrait_16_9", (576, 1024)), ({"width": 200, "height": 100}, (208, 96)),
])
def test_image_size_presets_and_rounding(fal, image_size, size):
    output = fal.run("fal-ai/flux/schnell", arguments={"prompt": "x", "image_size": image_size,
                                                       "num_inference_steps": 1})
    assert (output["images"][0]["width"], output["images"][0]["height"]) == size


def test_aspect_ratio_when_no_image_size(fal):
    output = fal.run("fal-ai/flux-pro/v1.1-ultra", arguments={"prompt": "x", "aspect_ratio": "9:16",
                                                              "num_inference_steps": 1})
    image = output["images"][0]
    width, height = image["width"], image["height"]
    assert width % 16 == 0 and height % 16 == 0
    # 9:16 itself (within the rounding of each side to 16 pixels), at about one megapixel.
    assert abs(width / height - 9 / 16) <= 16 / height, (width, height)
    assert width * height == pytest.approx(1024 * 1024, rel=0.05), (width, height)


def test_same_seed_same_image_and_seed_echoed(fal):
    arguments = {"prompt": "a lighthouse", **FAST, "seed": 1234, "output_format": "png"}
    first = fal.run("fal-ai/flux/dev", arguments=arguments)
    second = fal.run("fal-ai/flux/dev", arguments=arguments)
    other = fal.run("fal-ai/flux/dev", arguments={**arguments, "seed": 99})
    assert first["seed"] == second["seed"] == 1234 and other["seed"] == 99
    pixels = [np.asarray(fetch_image(o["images"][0]["url"])) for o in (first, second, other)]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])


def test_random_seed_is_returned_and_reproduces(fal):
    first = fal.run("fal-ai/flux/dev", arguments={"prompt": "a fox", **FAST, "output_format": "png"})
    again = fal.run("fal-ai/flux/dev", arguments={"prompt": "a fox", **FAST, "output_format": "png",
                                                  "seed": first["seed"]})
    assert np.array_equal(np.asarray(fetch_image(first["images"][0]["url"])),
                          np.asarray(fetch_image(again["images"][0]["url"])))


def test_num_images_and_sync_mode(fal, server):
    output = fal.run("fal-ai/flux/dev", arguments={"prompt": "two cats", **FAST, "num_images": 2,
                                                   "sync_mode": True})
    assert_fal_image_output(output, 2, 128, 128, "image/jpeg", "two cats")
    urls = [image["url"] for image in output["images"]]
    assert all(url.startswith("data:image/jpeg;base64,") for url in urls)
    assert urls[0] != urls[1]


def test_sync_mode_keeps_no_file(fal, server):
    """fal's sync_mode: the images come back inline and nothing is stored (families.base.store_image
    writes each output once, then reads it back and removes it)."""
    files = server.data_dir / "files"

    def stored() -> list[str]:
        return sorted(str(path) for path in files.rglob("*") if path.is_file())

    before = stored()
    output = fal.run("fal-ai/flux/dev", arguments={"prompt": "inline only", **FAST, "sync_mode": True})
    assert output["images"][0]["url"].startswith("data:image/jpeg;base64,")
    assert stored() == before


def test_image_to_image_follows_the_input_image(fal, tmp_path):
    source = make_image(tmp_path / "source.png", width=200, height=120)
    url = fal.upload_file(source)
    output = fal.subscribe("fal-ai/flux/dev/image-to-image", arguments={
        "image_url": url, "prompt": "make it red", "strength": 0.5, "num_inference_steps": 4, "seed": 7},
        with_logs=True)
    assert_fal_image_output(output, 1, 208, 128, "image/jpeg", "make it red")


def test_image_to_image_output_depends_on_the_input_image(fal, tmp_path):
    """Same prompt, seed and strength, two different input images: two different outputs (an input
    replaced by anything fixed, such as grey, would give the same image twice)."""
    pictures = []
    for name, color in [("red", (230, 30, 30)), ("blue", (30, 30, 230))]:
        url = fal.upload_file(make_image(tmp_path / f"{name}.png", width=128, height=128, color=color))
        output = fal.run("fal-ai/flux/dev/image-to-image", arguments={
            "image_url": url, "prompt": "same", "strength": 0.5, "num_inference_steps": 2, "seed": 7,
            "output_format": "png"})
        pictures.append(np.asarray(fetch_image(output["images"][0]["url"]).convert("RGB"), dtype=np.int16))
    assert not np.array_equal(pictures[0], pictures[1])


def test_step_logs_and_queue_updates(fal):
    updates = []
    handle = fal.submit("fal-ai/flux/dev", arguments={"prompt": "logs", **FAST, "num_inference_steps": 3})
    for event in handle.iter_events(with_logs=True, interval=0.05):
        updates.append(event)
    handle.get()
    final = fal.status("fal-ai/flux/dev", handle.request_id, with_logs=True)
    messages = [entry["message"] for entry in final.logs]
    assert [m for m in messages if m.startswith("denoising step")] == [f"denoising step {i}/3" for i in (1, 2, 3)]
    assert isinstance(updates[-1], fal_client.Completed)


def test_cancel_stops_at_the_next_step(fal, server):
    steps = cancel_after_first_step(fal, "fal-ai/flux/dev", {"prompt": "long", "image_size": "square_hd",
                                                               "num_inference_steps": 50})
    assert 1 <= len(steps) < 50, steps


@pytest.mark.parametrize(("endpoint", "arguments", "loc"), [
    ("fal-ai/flux/dev", {"prompt": "x", "num_inference_steps": 0}, ["body", "num_inference_steps"]),
    ("fal-ai/flux/dev", {"prompt": "x", "num_images": 5}, ["body", "num_images"]),
    ("fal-ai/flux/dev", {"prompt": "x", "guidance_scale": 50}, ["body", "guidance_scale"]),
    ("fal-ai/flux/dev", {"prompt": "x", "output_format": "gif"}, ["body", "output_format"]),
    ("fal-ai/flux/dev", {"image_size": "square"}, ["body", "prompt"]),
    ("fal-ai/flux/dev", {"prompt": ""}, ["body", "prompt"]),
    ("fal-ai/flux/dev", {"prompt": "x", "seed": -1}, ["body", "seed"]),
    ("fal-ai/flux/schnell", {"prompt": "x", "num_inference_steps": 20}, ["body", "num_inference_steps"]),
    ("fal-ai/flux/dev/image-to-image", {"prompt": "x"}, ["body", "image_url"]),
    ("fal-ai/flux/dev/image-to-image", {"prompt": "x", "image_url": "a", "strength": 0}, ["body", "strength"]),
])
def test_out_of_range_input_is_a_422_naming_the_field(fal, endpoint, arguments, loc):
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments=arguments)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(("endpoint", "arguments", "loc", "kind", "msg"), [
    ("fal-ai/flux/dev", {"prompt": "x", "image_size": "huge"}, ["body", "image_size"], "enum",
     "Unknown image_size preset 'huge'"),
    ("fal-ai/flux/dev", {"prompt": "x", "image_size": {"width": 5000, "height": 512}}, ["body", "image_size", "width"],
     "value_error", "must be between 64 and 2048 pixels (rounded to a multiple of 16), got 5000"),
    ("fal-ai/flux/schnell", {"prompt": "x", "aspect_ratio": "5:1"}, ["body", "aspect_ratio"], "enum",
     "aspect_ratio must be one of"),
    ("fal-ai/flux/dev/image-to-image", {"prompt": "x", "image_url": "a", "strength": 0.05, "num_inference_steps": 10},
     ["body", "strength"], "value_error", "strength × num_inference_steps must be at least 1 step"),
])
def test_bad_sizes_and_strengths_are_a_422_at_submit(fal, endpoint, arguments, loc, kind, msg):
    """The endpoint's own checks (presets, side range, steps left) run at submit: no job is queued."""
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments=arguments)
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"]
    assert len(detail) == 1 and (detail[0]["loc"], detail[0]["type"]) == (loc, kind), detail
    assert msg in detail[0]["msg"], detail


def test_image_to_image_with_an_unreadable_image(fal, tmp_path):
    text = tmp_path / "not-an-image.png"
    text.write_bytes(b"hello, I am not a picture")
    url = fal.upload_file(text)
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.run("fal-ai/flux/dev/image-to-image", arguments={"prompt": "x", "image_url": url})
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == ["body", "image_url"]


def test_info_and_metrics_show_the_loaded_model(fal, server):
    fal.run("fal-ai/flux/dev", arguments={"prompt": "x", **FAST})
    info = httpx.get(f"{server.base_url}/info").json()
    runtime = info["runtime"]
    assert runtime["tiny"] is True and "noise" in runtime["note"]
    assert runtime["budget_bytes"] > 0 and "MemAvailable" in runtime["budget"]
    loaded = {model["name"]: model for model in runtime["loaded"]}
    assert loaded["flux-dev"]["bytes"] > 100_000
    assert "has_nsfw_concepts is always false" in info["safety_checkers"]["flux"]
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'thorgen_model_bytes{model="flux-dev"}' in metrics
    assert "thorgen_model_budget_bytes" in metrics and "thorgen_model_evictions_total" in metrics
