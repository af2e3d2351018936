"""LTX-Video through fal's Python client against the session's server in tiny mode, and a look inside
the pipeline that shows each key frame reaches the transformer at its own frame number.

The tiny LTX-Video has 0.9.5's structure (video VAE with 32x spatial and 8x temporal compression,
timestep-conditioned decoder, T5 encoder, LTX transformer) with random weights, written in the diffusers
layout and loaded through the same loader as real weights. Tiny mode makes 128x64 (16:9) clips.
"""

from __future__ import annotations

import fal_client
import numpy as np
import pytest
from mediagen import make_image
from test_cosmos import probe
from wire_helpers import cancel_after_first_step

MULTI = "fal-ai/ltx-video-v095/multiconditioning"
FAST = {"num_frames": 25, "num_inference_steps": 2}
COLORS = [(250, 20, 20), (20, 250, 20), (20, 20, 250), (240, 240, 30)]


def assert_ltx_video(output: dict, tmp_path, width: int, height: int, frames: int, fps: int = 24) -> dict:
    assert set(output) == {"video", "seed"}, output
    video = output["video"]
    assert (video["width"], video["height"], video["num_frames"], video["fps"]) == (width, height, frames, fps)
    assert video["duration"] == pytest.approx(frames / fps) and video["content_type"] == "video/mp4"
    found = probe(video["url"], tmp_path)
    assert found["format"].startswith("mov,mp4") and found["codec"] == "h264" and found["pix_fmt"] == "yuv420p"
    assert (found["width"], found["height"], found["frames"]) == (width, height, frames)
    assert found["fps"] == pytest.approx(fps) and found["bytes"] == video["file_size"]
    assert found["std"] > 1.0, "a flat video: the pipeline did not really run"
    return found


def run_with_logs(fal, endpoint: str, arguments: dict) -> tuple[dict, list[str]]:
    handle = fal.submit(endpoint, arguments=arguments)
    output = handle.get()
    return output, [entry["message"] for entry in fal.status(endpoint, handle.request_id, with_logs=True).logs]


def upload_images(fal, tmp_path, colors) -> list[str]:
    return [fal.upload_file(make_image(tmp_path / f"key{i}.png", 640, 360, color=c)) for i, c in enumerate(colors)]


def test_text_to_video(fal, tmp_path):
    output, logs = run_with_logs(fal, "fal-ai/ltx-video-v095", {"prompt": "a robot arm welding", **FAST, "seed": 3})
    assert_ltx_video(output, tmp_path, 128, 64, 25)
    assert output["seed"] == 3
    assert any(message.startswith("LTXPipeline: 128x64, 25 frames") for message in logs), logs


def test_image_to_video_takes_the_images_shape(fal, tmp_path):
    url = fal.upload_file(make_image(tmp_path / "tall.png", 360, 640))
    output, logs = run_with_logs(fal, "fal-ai/ltx-video-v095/image-to-video",
                                 {"prompt": "x", "image_url": url, **FAST, "frame_rate": 25})
    assert_ltx_video(output, tmp_path, 64, 128, 25, fps=25)
    assert any(message.startswith("LTXImageToVideoPipeline: 64x128") for message in logs), logs


def test_editor_input_with_three_key_frames(fal, tmp_path):
    """The editor's exact body (its base fields, no num_frames or steps, three key frames on its 8-frame
    grid, sent to the id with the /image-to-video it appends): a 121-frame clip from LTXConditionPipeline
    with each key frame at its frame number; the same input twice gives the same clip, and another image
    at frame 16 alone gives another clip."""
    urls = upload_images(fal, tmp_path, COLORS)
    endpoint = f"{MULTI}/image-to-video"

    def body(third: str) -> dict:
        return {"prompt": "Coffee beans falling", "image_size": "landscape_16_9", "aspect_ratio": "16:9",
                "seconds_total": 30, "seed": 5,
                "images": [{"start_frame_num": 0, "image_url": urls[0]}, {"start_frame_num": 8, "image_url": urls[1]},
                           {"start_frame_num": 16, "image_url": third}]}

    output, logs = run_with_logs(fal, endpoint, body(urls[2]))
    first = assert_ltx_video(output, tmp_path, 128, 64, 121)
    assert any(message.startswith("LTXConditionPipeline: 128x64, 121 frames at 24 fps, 40 steps") for message in logs)
    for frame in (0, 8, 16):
        assert any(message.startswith(f"key frame at frame {frame} (strength 1)") for message in logs), logs
    again = probe(fal.run(endpoint, arguments=body(urls[2]))["video"]["url"], tmp_path, "again")
    other = probe(fal.run(endpoint, arguments=body(urls[3]))["video"]["url"], tmp_path, "other")
    assert again["data"] == first["data"], "the same input and seed made another clip"
    assert other["data"] != first["data"], "another image at frame 16 made the same clip: it was not used"


@pytest.mark.parametrize(("frame", "message"), [(12, "multiple of 8"), (32, "past the clip's last frame"),
                                                 (0, "Two key frames at frame 0")])
def test_bad_key_frames_are_a_422_at_submit(fal, tmp_path, frame, message):
    urls = upload_images(fal, tmp_path, COLORS[:2])
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(MULTI, arguments={"prompt": "x", **FAST, "images": [
            {"start_frame_num": 0, "image_url": urls[0]}, {"start_frame_num": frame, "image_url": urls[1]}]})
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"][0]
    assert detail["loc"] == ["body", "images", 1, "start_frame_num"] and message in detail["msg"], detail


def test_step_logs_and_cancel(fal):
    steps = cancel_after_first_step(fal, "fal-ai/ltx-video-v095", {"prompt": "x", "num_frames": 257,
                                                                    "num_inference_steps": 100})
    assert steps and len(steps) < 100, steps


# -- inside the pipeline: where each key frame goes ------------------------------------------------

def test_each_key_frame_reaches_the_transformer_at_its_frame_number():
    """How the three key frames are shown to be injected (random weights decode nothing recognisable,
    so the proof is in latent space): the transformer's first call is captured. LTXConditionPipeline
    puts frame 0's image into the first latent frame and every later key frame in front of the video
    tokens as extra tokens whose time coordinate is that key frame's number. The test finds exactly one
    latent frame of tokens at times 8 and 16 (the video's own latent frames sit at 0, 1, 9, 17, ...), and
    with full strength those tokens are the VAE latents of the image given for that frame: nearer to its
    latents than to any other image's, and changing the image at 8 changes only the tokens at 8."""
    import torch
    from PIL import Image

    from thorgen.families import ltx

    pipe = ltx.build_tiny()
    # Random weights give the VAE's posterior a spread as wide as the gaps between images: narrow it (the
    # log-variance channel of the encoder's last conv) so an encoded image is its mean, and keep the
    # pipeline's per-step noise on conditioning tokens off. Nothing else about the pipeline changes.
    with torch.no_grad():
        pipe.vae.encoder.conv_out.conv.bias[-1] = -40.0
    images = [Image.new("RGB", (128, 64), color) for color in COLORS]
    latent_tokens = (64 // 32) * (128 // 32)

    def first_call(keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}

        def capture(module, args, kwargs):
            seen.setdefault("tokens", kwargs["hidden_states"][0].clone())
            seen.setdefault("time", kwargs["video_coords"][0, 0].clone())

        handle = pipe.transformer.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            frames = [ltx.KeyFrame(image_url="", start_frame_num=frame) for _, frame in keys]
            run, extra = ltx._pipeline_for(pipe, frames, [images[i] for i, _ in keys])
            run(prompt="x", width=128, height=64, num_frames=25, frame_rate=24, num_inference_steps=2,
                guidance_scale=1.0, generator=torch.Generator().manual_seed(0), max_sequence_length=64,
                image_cond_noise_scale=0.0, output_type="latent", **extra)
        finally:
            handle.remove()
        return seen["tokens"], torch.round(seen["time"] * 24)

    def encoded(image: Image.Image) -> torch.Tensor:
        pixels = pipe.video_processor.preprocess(image, 64, 128).unsqueeze(2)
        with torch.no_grad():
            latents = pipe.vae.encode(pixels).latent_dist.mode()
        latents = pipe._normalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std)
        return pipe._pack_latents(latents, 1, 1)[0]

    tokens, time = first_call([(0, 0), (1, 8), (2, 16)])
    for index, frame in [(1, 8), (2, 16)]:
        at = time == frame
        assert int(at.sum()) == latent_tokens, (frame, time.tolist())
        distances = [float((tokens[at] - encoded(image)).norm()) for image in images]
        assert int(np.argmin(distances)) == index, (frame, distances)
        assert distances[index] < 1e-3 * min(d for i, d in enumerate(distances) if i != index), distances
    swapped, swapped_time = first_call([(0, 0), (3, 8), (2, 16)])
    assert torch.equal(swapped_time, time)
    assert not torch.allclose(swapped[time == 8], tokens[time == 8])
    assert torch.equal(swapped[time == 16], tokens[time == 16])


def test_endpoint_models_sends_the_editors_other_video_ids_to_ltx(server, models_dir, tmp_path, fal):
    """[endpoint_models] points Cosmos's text-to-video at ltx-video: the editor's other video ids (aliases
    of it) make LTX clips (24 fps, LTX's 32-pixel sizes), with the editor's image as the first frame;
    /endpoints names the model that answers."""
    import httpx
    from conftest import point_fal_client_at
    from server_process import ServerProcess

    config = tmp_path / "config.toml"
    config.write_text('[endpoint_models]\n"fal-ai/cosmos-predict-2.5/text-to-video" = "ltx-video"\n')
    switched = ServerProcess(tmp_path / "data", config=config, args=["--tiny", "--models-dir", str(models_dir)])
    switched.start().wait_ready()
    try:
        rows = {row["id"]: row for row in httpx.get(f"{switched.base_url}/endpoints").json()["endpoints"]}
        assert rows["fal-ai/veo2"]["model"] == "ltx-video", rows["fal-ai/veo2"]
        point_fal_client_at(switched.base_url)
        url = fal.upload_file(make_image(tmp_path / "tall.png", 360, 640))
        output, logs = run_with_logs(fal, "fal-ai/veo2/image-to-video", {
            "prompt": "waves", "image_size": "landscape_16_9", "seconds_total": 30, "image_url": url,
            "num_frames": 17, "num_inference_steps": 2})
        assert_ltx_video(output, tmp_path, 64, 128, 17)
        assert any(message.startswith("LTXImageToVideoPipeline: 64x128") for message in logs), logs
    finally:
        switched.stop()
