"""Decode any file's first audio stream to a float32 array at a chosen rate and channel count."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from thorgen.media.probe import MediaError, open_media


def decode_audio(path: Path, *, sample_rate: int, channels: int) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 in [-1, 1]."""
    layout = "stereo" if channels == 2 else "mono"
    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError("The file has no audio stream")
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as exc:
            raise MediaError(f"The audio could not be decoded ({type(exc).__name__})") from None
    if not chunks:
        return np.zeros((channels, 0), np.float32), sample_rate
    return np.concatenate(chunks, axis=1).astype(np.float32), sample_rate
