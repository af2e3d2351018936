"""Write generated audio to WAV (PCM 16-bit), MP3 or FLAC with PyAV (its wheel carries the encoders).

Music hands over (channels, samples) float arrays, speech a mono 1-D one; both come out at the
model's own rate and channels unless the caller asks for another rate or channel count. The count of
samples written is returned, so callers state the duration exactly (samples ÷ rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import av
import numpy as np

AudioFormat = Literal["wav", "mp3", "flac"]
# format -> (container, codec, sample format the encoder takes)
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16"),
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "flac": ("flac", "flac", "s16"),
}


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, fmt: str = "wav", *,
                out_rate: int | None = None, channels: int | None = None, bitrate: int | None = None) -> int:
    """Encode float audio in [-1, 1] (1-D mono, or (channels, samples)) to ``path``; returns the samples
    per channel written (after any resampling).

    A model's output can overshoot [-1, 1], which 16-bit PCM would clip harshly: such audio is scaled
    down to a peak of 1 (never up, so quiet audio stays quiet). An MP3 decoder may add the encoder's
    padding; the count returned is what was encoded.
    """
    audio = np.atleast_2d(np.nan_to_num(np.asarray(samples, dtype=np.float32)))
    if audio.shape[0] not in (1, 2):
        raise ValueError(f"expected mono or (1 or 2 channels, samples), got shape {np.shape(samples)}")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    container_name, codec, sample_format = FORMATS[fmt]
    out_rate = out_rate or sample_rate
    in_layout = "stereo" if audio.shape[0] == 2 else "mono"
    out_layout = "stereo" if (channels or audio.shape[0]) == 2 else "mono"
    with av.open(str(path), "w", format=container_name) as container:
        stream = cast(av.audio.stream.AudioStream, container.add_stream(codec, rate=out_rate, layout=out_layout))
        if fmt == "mp3":
            stream.bit_rate = bitrate or 192_000
        resampler = av.AudioResampler(format=sample_format, layout=out_layout, rate=out_rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=in_layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        written = 0
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            converted.pts = None
            written += converted.samples
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return written
