"""Stable Audio (fal-ai/stable-audio, fal-ai/minimax-music) through fal's Python client, tiny mode.

The tiny Stable Audio has the real component classes (Oobleck VAE, T5, DiT, cosine DPM scheduler)
with random weights, loaded from disk by the real loader: 44.1 kHz stereo, and a window of
256 latents × 256 hop = 65536 samples (≈1.486 s), which is the longest clip it can make.
"""

from __future__ import annotations

from pathlib import Path

import av
import fal_client
import httpx
import numpy as np
import pytest
from mediagen import make_audio, make_video
from wire_helpers import cancel_after_first_step

RATE = 44100
TINY_WINDOW_SAMPLES = 256 * 256  # the tiny model's window: DiT sample_size × VAE hop


def download(url: str, path: Path) -> Path:
    response = httpx.get(url)
    assert response.status_code == 200, url
    path.write_bytes(response.content)
    return path


def decode(path: Path) -> tuple[str, int, int, np.ndarray]:
    """(codec, sample_rate, channels, samples as (channels, n) float) of the file's audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        codec, rate, channels = stream.codec_context.name, stream.codec_context.sample_rate, stream.channels
        planes = [frame.to_ndarray() for frame in container.decode(stream)]
    data = np.concatenate(planes, axis=1)
    if data.shape[0] == 1 and channels == 2:  # packed s16: one interleaved plane
        data = data.reshape(-1, 2).T
    return codec, rate, channels, data.astype(np.float32)


def test_stable_audio_wav_has_the_asked_length_and_a_waveform(fal, tmp_path):
    output = fal.subscribe("fal-ai/stable-audio", arguments={
        "prompt": "calm piano with soft rain", "seconds_total": 1.25, "steps": 3, "seed": 5}, with_logs=True)
    assert set(output) == {"audio_file"}
    audio = output["audio_file"]
    assert set(audio) == {"url", "content_type", "file_name", "file_size"}
    assert audio["content_type"] == "audio/wav" and audio["file_name"].endswith(".wav")
    path = download(audio["url"], tmp_path / "music.wav")
    assert audio["file_size"] == path.stat().st_size
    codec, rate, channels, samples = decode(path)
    assert (codec, rate, channels) == ("pcm_s16le", RATE, 2)
    assert samples.shape == (2, int(1.25 * RATE)), "duration must equal seconds_total to the sample"
    assert samples.std() > 0, "silence: the pipeline did not really run"

    waveform = fal.run("fal-ai/ffmpeg-api/waveform", arguments={
        "media_url": audio["url"], "points_per_second": 5, "precision": 3})
    assert len(waveform["waveform"]) == round(1.25 * 5)
    assert all(0 <= value <= 1 for value in waveform["waveform"])
    assert waveform["duration"] == pytest.approx(1.25, abs=1 / RATE)


def test_minimax_music_with_the_editors_input(fal, tmp_path):
    """The editor sends seconds_total 30 and maybe a reference track: cut to the model's window, ignored."""
    reference = fal.upload_file(make_audio(tmp_path / "reference.wav", seconds=0.5))
    handle = fal.submit("fal-ai/minimax-music", arguments={
        "prompt": "lofi beats", "image_size": "landscape_16_9", "aspect_ratio": "16:9", "seconds_total": 30,
        "reference_audio_url": reference, "steps": 2})
    output = handle.get()
    assert set(output) == {"audio"}
    audio = output["audio"]
    assert set(audio) == {"url", "content_type", "file_name", "file_size", "duration"}
    assert audio["duration"] == TINY_WINDOW_SAMPLES / RATE
    codec, rate, channels, samples = decode(download(audio["url"], tmp_path / "music.wav"))
    assert (codec, rate, channels, samples.shape[1]) == ("pcm_s16le", RATE, 2, TINY_WINDOW_SAMPLES)
    logs = [entry["message"] for entry in fal.status("fal-ai/minimax-music", handle.request_id, with_logs=True).logs]
    assert any("reference_audio_url is ignored" in message for message in logs), logs
    assert any("makes at most 1.49 s" in message for message in logs), logs


def test_same_seed_same_audio_and_mp3_on_request(fal, tmp_path):
    arguments = {"prompt": "drums", "seconds_total": 1, "steps": 2, "seed": 11}
    first = fal.run("fal-ai/stable-audio", arguments=arguments)["audio_file"]
    second = fal.run("fal-ai/stable-audio", arguments=arguments)["audio_file"]
    other = fal.run("fal-ai/stable-audio", arguments={**arguments, "seed": 12})["audio_file"]
    data = [httpx.get(f["url"]).content for f in (first, second, other)]
    assert data[0] == data[1] and data[0] != data[2]

    mp3 = fal.run("fal-ai/minimax-music", arguments={**arguments, "output_format": "mp3"})["audio"]
    assert mp3["content_type"] == "audio/mpeg" and mp3["duration"] == 1.0
    codec, rate, channels, _ = decode(download(mp3["url"], tmp_path / "music.mp3"))
    assert (codec, rate, channels) == ("mp3float", RATE, 2)


@pytest.mark.parametrize(("arguments", "loc"), [
    ({"prompt": "x", "seconds_total": 2, "steps": 1}, ["body", "seconds_total"]),  # past the 1.49 s window
    ({"prompt": "x", "seconds_total": 1, "seconds_start": 1, "steps": 1}, ["body", "seconds_start"]),
])
def test_lengths_the_model_cannot_make_are_a_422(fal, arguments, loc):
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.run("fal-ai/stable-audio", arguments=arguments)
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"][0]
    assert detail["loc"] == loc
    if loc[-1] == "seconds_total":
        assert "at most 1.49 seconds" in detail["msg"]


@pytest.mark.parametrize(("endpoint", "arguments", "loc"), [
    ("fal-ai/stable-audio", {"prompt": "x", "steps": 0}, ["body", "steps"]),
    ("fal-ai/stable-audio", {"prompt": "x", "seconds_total": 0}, ["body", "seconds_total"]),
    ("fal-ai/stable-audio", {"seconds_total": 1}, ["body", "prompt"]),
    ("fal-ai/minimax-music", {"prompt": "x", "output_format": "ogg"}, ["body", "output_format"]),
])
def test_bad_input_is_a_422_at_submit(fal, endpoint, arguments, loc):
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments=arguments)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == loc


def test_step_logs_and_cancel_at_the_next_step(fal):
    done = fal.submit("fal-ai/stable-audio", arguments={"prompt": "logs", "seconds_total": 1, "steps": 3})
    done.get()
    logs = [entry["message"] for entry in fal.status("fal-ai/stable-audio", done.request_id, with_logs=True).logs]
    assert [m for m in logs if m.startswith("denoising step")] == [f"denoising step {i}/3" for i in (1, 2, 3)]

    steps = cancel_after_first_step(fal, "fal-ai/stable-audio", {"prompt": "long", "seconds_total": 1, "steps": 1000})
    assert 1 <= len(steps) < 1000, steps


def _streams(url: str, tmp_path: Path) -> dict:
    path = tmp_path / "with-sound.mp4"
    path.write_bytes(httpx.get(url).content)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return {"video": video.codec_context.name, "audio": audio.codec_context.name, "frames": frames,
            "size": (video.codec_context.width, video.codec_context.height), "rate": audio.codec_context.sample_rate,
            "sound": sound, "data": path.read_bytes()}


@pytest.mark.parametrize("endpoint", ["fal-ai/mmaudio-v2", "fal-ai/mmaudio-v2/image-to-video"])
def test_mmaudio_puts_music_as_long_as_the_clip_under_it(fal, tmp_path, endpoint):
    """The editor's "add sound to a video": only a video back, with an AAC track made for its length."""
    clip = fal.upload_file(make_video(tmp_path / "silent.mp4", 160, 90, fps=24, seconds=1.0, with_audio=False))
    handle = fal.submit(endpoint, arguments={"prompt": "gentle piano", "video_url": clip, "num_steps": 4,
                                             "image_size": "landscape_16_9", "seconds_total": 30})
    output = handle.get()
    assert list(output) == ["video"]
    video = output["video"]
    assert (video["width"], video["height"]) == (160, 90) and video["duration"] == pytest.approx(1.0)
    found = _streams(video["url"], tmp_path)
    assert found["video"] == "h264" and found["audio"] == "aac" and found["frames"] == 24
    assert found["size"] == (160, 90) and found["rate"] == 44100
    assert found["sound"].shape[1] == pytest.approx(44100, abs=2048)  # AAC pads to whole 1024-sample frames
    assert np.abs(found["sound"]).max() > 0.001, "silent: no music was put under the video"
    assert 0 < found["data"].find(b"moov") < found["data"].find(b"mdat")
    logs = [e["message"] for e in fal.status("fal-ai/mmaudio-v2", handle.request_id, with_logs=True).logs]
    assert any("does not look at the video" in m for m in logs)


def test_mmaudio_on_a_clip_longer_than_the_model_makes_ends_in_silence(fal, tmp_path):
    clip = fal.upload_file(make_video(tmp_path / "long.mp4", 160, 90, fps=24, seconds=2.5))  # with a tone: dropped
    handle = fal.submit("fal-ai/mmaudio-v2", arguments={"prompt": "rain", "video_url": clip, "num_steps": 2})
    video = handle.get()["video"]
    assert video["duration"] == pytest.approx(2.5)
    sound = _streams(video["url"], tmp_path)["sound"]
    assert sound.shape[1] == pytest.approx(2.5 * 44100, abs=2048)
    assert np.abs(sound[:, 44100:65000]).max() > 0.001 and np.abs(sound[:, 70000:105000]).max() < 0.001
    logs = [e["message"] for e in fal.status("fal-ai/mmaudio-v2", handle.request_id, with_logs=True).logs]
    assert any("makes at most 1.49 s" in m for m in logs), logs


def test_mmaudio_needs_a_video(fal, tmp_path):
    url = fal.upload_file(make_audio(tmp_path / "tone.wav", seconds=0.5))
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.run("fal-ai/mmaudio-v2", arguments={"prompt": "x", "video_url": url})
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == ["body", "video_url"]
