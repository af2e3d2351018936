"""Stable Audio (fal-ai/stable-audio, fal-ai/minimax-music) through fal's Python client, tiny mode.

The tiny Stable Audio has the real component classes (Oobleck VAE, T5, DiT, cosine DPM scheduler)
with random weights, loaded from disk by the real loader: 44.1 kHz stereo, and the window of Stable
Audio Open 1.0: 1024 latents × 2048 hop = 2,097,152 samples (≈47.55 s), the longest clip it can make.
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
TINY_WINDOW_SAMPLES = 1024 * 2048  # the tiny model's window: DiT sample_size × VAE hop (Open 1.0's too)


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


# What the editor sends with every music job (its duration field is never shown).
EDITOR_MUSIC = {"prompt": "lofi beats", "image_size": "landscape_16_9", "aspect_ratio": "16:9", "seconds_total": 30}


@pytest.mark.parametrize("endpoint,key", [("fal-ai/stable-audio", "audio_file"), ("fal-ai/minimax-music", "audio")])
def test_music_with_the_editors_exact_input_is_30_seconds(fal, tmp_path, endpoint, key):
    """Tiny mode serves the editor's input as it is (default steps and all): the window is Open 1.0's."""
    audio = fal.subscribe(endpoint, arguments=EDITOR_MUSIC)[key]
    codec, rate, channels, samples = decode(download(audio["url"], tmp_path / "music.wav"))
    assert (codec, rate, channels, samples.shape[1]) == ("pcm_s16le", RATE, 2, 30 * RATE)
    assert samples.std() > 0


def test_minimax_music_ignores_a_reference_and_cuts_to_the_models_window(fal, tmp_path):
    """minimax-music has no length field at fal: past the window it is cut (logged), not refused."""
    reference = fal.upload_file(make_audio(tmp_path / "reference.wav", seconds=0.5))
    handle = fal.submit("fal-ai/minimax-music", arguments={
        **EDITOR_MUSIC, "seconds_total": 60, "reference_audio_url": reference, "steps": 2})
    output = handle.get()
    assert set(output) == {"audio"}
    audio = output["audio"]
    assert set(audio) == {"url", "content_type", "file_name", "file_size", "duration"}
    assert audio["duration"] == TINY_WINDOW_SAMPLES / RATE
    codec, rate, channels, samples = decode(download(audio["url"], tmp_path / "music.wav"))
    assert (codec, rate, channels, samples.shape[1]) == ("pcm_s16le", RATE, 2, TINY_WINDOW_SAMPLES)
    logs = [entry["message"] for entry in fal.status("fal-ai/minimax-music", handle.request_id, with_logs=True).logs]
    assert any("reference_audio_url is ignored" in message for message in logs), logs
    assert any("60 s asked for; the model 'stable-audio-open' makes at most 47.55 s" in m for m in logs), logs


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


PAST_WINDOW = "must be at most 47.55 seconds: the longest audio the model 'stable-audio-open' makes"


@pytest.mark.parametrize(("arguments", "loc", "kind", "msg"), [
    ({"prompt": "x", "seconds_total": 47.6, "steps": 1}, ["body", "seconds_total"], "less_than_equal", PAST_WINDOW),
    ({"prompt": "x", "seconds_total": 600}, ["body", "seconds_total"], "less_than_equal", PAST_WINDOW),
    ({"prompt": "x", "seconds_total": 1, "seconds_start": 1, "steps": 1}, ["body", "seconds_start"], "less_than",
     "must be less than the end of the audio (1 s)"),
])
def test_lengths_the_model_cannot_make_are_a_422_at_submit(fal, arguments, loc, kind, msg):
    """Refused by submit itself (the window is read from the installed model's config), not in the result."""
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit("fal-ai/stable-audio", arguments=arguments)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"] == [{"loc": loc, "msg": msg, "type": kind}]


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
    # 50 s at 4 fps (small and quick to make): longer than the 47.55 s window. Its tone is dropped.
    clip = fal.upload_file(make_video(tmp_path / "long.mp4", 160, 90, fps=4, seconds=50))
    handle = fal.submit("fal-ai/mmaudio-v2", arguments={"prompt": "rain", "video_url": clip, "num_steps": 2})
    video = handle.get()["video"]
    assert video["duration"] == pytest.approx(50)
    sound = _streams(video["url"], tmp_path)["sound"]
    assert sound.shape[1] == pytest.approx(50 * 44100, abs=2048)
    window = TINY_WINDOW_SAMPLES
    assert np.abs(sound[:, window - 40000:window - 4000]).max() > 0.001, "no music up to the window's end"
    assert np.abs(sound[:, window + 4000:window + 100000]).max() < 0.001, "not silent after the window"
    logs = [e["message"] for e in fal.status("fal-ai/mmaudio-v2", handle.request_id, with_logs=True).logs]
    assert any("makes at most 47.55 s" in m for m in logs), logs


def test_mmaudio_needs_a_video(fal, tmp_path):
    url = fal.upload_file(make_audio(tmp_path / "tone.wav", seconds=0.5))
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.run("fal-ai/mmaudio-v2", arguments={"prompt": "x", "video_url": url})
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == ["body", "video_url"]
