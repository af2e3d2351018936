"""PyAV probing, frame reading and waveforms on media made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest
from mediagen import make_audio, make_image, make_video

from thorgen.media.frames import read_frame
from thorgen.media.probe import MediaError, probe
from thorgen.media.waveform import waveform


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    return {
        "video": make_video(folder / "v.mp4", seconds=2.0),
        "silent_video": make_video(folder / "s.mp4", seconds=1.0, with_audio=False, width=180, height=320),
        "wav": make_audio(folder / "a.wav", seconds=1.5, sample_rate=22050, channels=1),
        "mp3": make_audio(folder / "a.mp3", seconds=2.0),
        "png": make_image(folder / "i.png", width=500, height=500),
        "jpg": make_image(folder / "i.jpg"),
        "garbage": _write(folder / "g.mp4", b"this is not a video" * 100),
        "silence": _silence(folder / "quiet.wav"),
    }


def _write(path, data):
    path.write_bytes(data)
    return path


def _silence(path):
    make_audio(path, seconds=1.0, freq=0.0)  # sin(0) = 0: digital silence
    return path


def test_probe_video(files):
    info = probe(files["video"])
    assert info["media_type"] == "video" and info["codec"] == "h264" and info["container"] == "mov"
    assert info["duration"] == pytest.approx(2.0, abs=0.05)
    assert info["fps"] == 24 and info["frame_count"] == 48
    assert info["resolution"] == {"aspect_ratio": "16:9", "width": 320, "height": 180}
    assert info["format"]["pixel_format"] == "yuv420p"
    assert info["audio"]["codec"] == "aac" and info["audio"]["channels"] == 2


def test_probe_video_without_audio_is_portrait(files):
    info = probe(files["silent_video"])
    assert info["audio"] is None and info["resolution"]["aspect_ratio"] == "9:16"


@pytest.mark.parametrize("name,seconds,rate,channels,codec", [
    ("wav", 1.5, 22050, 1, "pcm_s16le"), ("mp3", 2.0, 44100, 2, "mp3")])
def test_probe_audio(files, name, seconds, rate, channels, codec):
    info = probe(files[name])
    assert info["media_type"] == "audio" and info["codec"] == codec
    assert info["duration"] == pytest.approx(seconds, abs=0.03)
    assert info["sample_rate"] == rate and info["channels"] == channels


@pytest.mark.parametrize("name,ratio", [("png", "1:1"), ("jpg", "16:9")])
def test_probe_image_has_no_duration(files, name, ratio):
    info = probe(files[name])
    assert info["media_type"] == "image" and "duration" not in info
    assert info["resolution"]["aspect_ratio"] == ratio


def test_garbage_is_a_media_error(files):
    with pytest.raises(MediaError):
        probe(files["garbage"])


def test_first_middle_last_frames_differ(files):
    def box_x(which):
        pixels = np.asarray(read_frame(files["video"], which))
        return np.argwhere(pixels.sum(axis=2) > 700)[:, 1].mean()  # the white box's column

    first, middle, last = box_x("first"), box_x("middle"), box_x("last")
    assert first < middle < last
    assert last > 250  # the box ends at the right edge: the real last frame, not a keyframe


def test_frame_of_an_image_is_the_image(files):
    assert read_frame(files["png"], "last").size == (500, 500)


def test_waveform_shape_and_values(files):
    values, duration = waveform(files["mp3"], points_per_second=5, precision=3)
    assert duration == pytest.approx(2.0, abs=0.03) and len(values) == 10
    assert all(0 <= v <= 1 for v in values) and min(values) > 0.1
    assert all(len(str(v).split(".")[-1]) <= 3 for v in values)
    quiet, _ = waveform(files["silence"], points_per_second=4)
    assert max(quiet) < 0.01


def test_waveform_of_video_uses_its_audio_and_no_audio_is_an_error(files):
    values, _ = waveform(files["video"], points_per_second=2)
    assert len(values) == 4 and max(values) > 0.1
    with pytest.raises(MediaError):
        waveform(files["silent_video"])
