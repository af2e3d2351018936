"""The export renderer on its own: canvas choice, timing, gaps, audio mix, faststart, cancel."""

from __future__ import annotations

import av
import numpy as np
import pytest
from mediagen import make_audio, make_image, make_video

from thorgen.media.compose import Clip, compose


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compose")
    return {
        "landscape": make_video(folder / "l.mp4", seconds=1.5),
        "portrait": make_video(folder / "p.mp4", width=180, height=320, seconds=1.0, with_audio=False),
        "still": make_image(folder / "s.png", color=(20, 200, 20)),
        "music": make_audio(folder / "m.wav", seconds=3.0),
    }


def frames_by_time(path):
    with av.open(str(path)) as container:
        return {round(float(f.time), 3): f.to_ndarray(format="rgb24") for f in container.decode(video=0)}


def at(frames, t):
    return frames[min(frames, key=lambda s: abs(s - t))]


def test_timeline_timing_gap_and_audio(sources, tmp_path):
    out, thumb = tmp_path / "o.mp4", tmp_path / "o.jpg"
    result = compose([
        Clip(sources["landscape"], 0, 1000, "video"),          # cut short: 1.5 s clip shown for 1 s
        Clip(sources["still"], 1500, 1000, "video"),           # gap 1.0-1.5 s
        Clip(sources["music"], 0, 2500, "audio"),
    ], out, thumb)
    assert (result.width, result.height, result.fps) == (1024, 576, 30)
    assert result.duration == pytest.approx(2.5, abs=0.04)
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: moov before mdat"
    frames = frames_by_time(out)
    assert at(frames, 0.5).mean() > 40                       # the red clip
    assert at(frames, 1.25).max() < 10                       # black gap
    green = at(frames, 2.0)
    assert green[..., 1].mean() > green[..., 0].mean() + 50  # the green still, cover-fitted
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == 48000
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert np.abs(samples).max() > 0.1
    assert thumb.read_bytes()[:2] == b"\xff\xd8"             # JPEG


def test_portrait_first_clip_gives_portrait_canvas_and_silent_track(sources, tmp_path):
    out = tmp_path / "p.mp4"
    result = compose([Clip(sources["portrait"], 0, 1000, "video")], out, tmp_path / "p.jpg")
    assert (result.width, result.height) == (576, 1024)
    with av.open(str(out)) as container:
        assert container.streams.audio, "an export always carries an audio stream"


def test_later_clip_covers_an_earlier_one(sources, tmp_path):
    out = tmp_path / "over.mp4"
    compose([Clip(sources["landscape"], 0, 1500, "video"), Clip(sources["still"], 500, 500, "video")],
            out, tmp_path / "over.jpg")
    frame = at(frames_by_time(out), 0.75)
    assert frame[..., 1].mean() > frame[..., 0].mean()


def test_cancel_removes_the_partial_file(sources, tmp_path):
    out = tmp_path / "c.mp4"
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        compose([Clip(sources["still"], 0, 10_000, "video")], out, tmp_path / "c.jpg", check_cancel=cancel)
    assert not out.exists()
