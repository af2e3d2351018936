"""write_audio: exact sample counts in WAV, overshooting audio scaled down rather than clipped, MP3 readable."""

from __future__ import annotations

import av
import numpy as np
import pytest

from thorgen.media.audio_out import write_audio


def read_wav(path) -> tuple[int, np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels, rate = stream.channels, stream.codec_context.sample_rate
        packed = np.concatenate([frame.to_ndarray() for frame in container.decode(stream)], axis=1)
    return rate, packed.reshape(-1, channels).T / 32768  # FFmpeg maps [-1, 1) onto [-32768, 32767]


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_holds_every_sample_and_loud_audio_is_scaled_not_clipped(tmp_path, channels):
    count = 22050 + 7  # not a multiple of the 1152-sample chunks
    ramp = np.linspace(-2.0, 1.0, count, dtype=np.float32)  # peaks at -2: twice too loud
    samples = np.stack([ramp] * channels)
    duration = write_audio(tmp_path / "out.wav", samples, 44100) / 44100
    assert duration == count / 44100
    rate, back = read_wav(tmp_path / "out.wav")
    assert rate == 44100 and back.shape == (channels, count)
    np.testing.assert_allclose(back, samples / 2, atol=1 / 32767)  # the whole ramp halved, its shape kept


def test_quiet_audio_is_left_as_it_is_and_mp3_decodes(tmp_path):
    quiet = (0.25 * np.sin(np.linspace(0, 200, 44100))).astype(np.float32)[None, :].repeat(2, axis=0)
    write_audio(tmp_path / "quiet.wav", quiet, 44100)
    _, back = read_wav(tmp_path / "quiet.wav")
    np.testing.assert_allclose(back, quiet, atol=1 / 32767)
    assert write_audio(tmp_path / "quiet.mp3", quiet, 44100, "mp3") == 44100
    with av.open(str(tmp_path / "quiet.mp3")) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.channels, stream.codec_context.sample_rate) == ("mp3float", 2, 44100)
