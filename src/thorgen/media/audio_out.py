"""Encode generated audio to WAV (PCM 16-bit) or MP3 with PyAV, and say exactly how long it is."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

AudioFormat = Literal["wav", "mp3"]
CHUNK = 1152  # samples per frame: MP3's frame size, also fine for PCM


def write_audio(samples: np.ndarray, sample_rate: int, path: Path, fmt: AudioFormat = "wav") -> float:
    """Write (channels, samples) float audio; returns its duration in seconds (samples ÷ rate).

    A model's output can overshoot [-1, 1], which 16-bit PCM would clip harshly: such audio is scaled
    down to a peak of 1 (never up, so quiet audio stays quiet). The duration is that of the samples
    written; an MP3 decoder may add the encoder's padding.
    """
    if samples.ndim != 2 or samples.shape[0] not in (1, 2):
        raise ValueError(f"expected (1 or 2 channels, samples), got shape {samples.shape}")
    channels, count = samples.shape
    layout = "stereo" if channels == 2 else "mono"
    audio = np.nan_to_num(samples.astype(np.float32))
    peak = float(np.abs(audio).max()) if count else 0.0
    if peak > 1.0:
        audio /= peak
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("pcm_s16le" if fmt == "wav" else "libmp3lame", rate=sample_rate,
                                      layout=layout)
        if fmt == "mp3":
            stream.bit_rate = 192_000
        for start in range(0, count, CHUNK):
            chunk = audio[:, start:start + CHUNK]
            if fmt == "mp3":  # lame takes planar float
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            else:  # WAV: packed (interleaved) 16-bit
                packed = np.round(chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return count / sample_rate
