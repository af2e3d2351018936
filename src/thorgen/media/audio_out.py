"""Write a mono float waveform to WAV (PCM16), MP3 or FLAC with PyAV (its wheel carries the encoders).

Speech endpoints hand over the model's samples; this encodes them, resampling or duplicating to
stereo only when the caller asks for another rate or two channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import av
import numpy as np

# format -> (container, codec, sample format the encoder takes)
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16"),
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "flac": ("flac", "flac", "s16"),
}


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, fmt: str = "wav", *,
                out_rate: int | None = None, channels: int = 1, bitrate: int | None = None) -> int:
    """Encode ``samples`` (1-D float in [-1, 1]) to ``path`` in ``fmt``; the number of samples per channel
    written (after resampling), from which the caller states the exact duration."""
    container_name, codec, sample_format = FORMATS[fmt]
    out_rate = out_rate or sample_rate
    layout = "stereo" if channels == 2 else "mono"
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(path), "w", format=container_name) as container:
        stream = cast(av.audio.stream.AudioStream, container.add_stream(codec, rate=out_rate, layout=layout))
        if bitrate and fmt == "mp3":
            stream.bit_rate = bitrate
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=out_rate)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
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
