"""A peak waveform of an audio (or video) file: one value in [0, 1] per point."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from thorgen.media.audio import decode_audio
from thorgen.media.probe import MediaError


def waveform(path: Path, points_per_second: float = 4.0, precision: int = 2,
             smoothing_window: int = 3) -> tuple[list[float], float]:
    samples, rate = decode_audio(path, sample_rate=8000, channels=1)
    if samples.size == 0:
        raise MediaError("The audio stream holds no samples")
    duration = samples.shape[1] / rate
    points = max(1, round(duration * points_per_second))
    # Peak per window, not RMS: the editor draws |v| as bar heights, and peaks keep short
    # transients (consonants, drum hits) visible.
    edges = np.linspace(0, samples.shape[1], points + 1).astype(int)
    mono = np.abs(samples[0])
    peaks = np.array([mono[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    if smoothing_window > 1 and points >= smoothing_window:
        kernel = np.ones(smoothing_window) / smoothing_window
        peaks = np.convolve(np.pad(peaks, smoothing_window // 2, mode="edge"), kernel, mode="valid")
    values = np.clip(np.round(peaks, precision), 0.0, 1.0)
    return [float(v) for v in values], round(duration, 4)
