"""Make small test media with PyAV and Pillow: no files checked in, nothing downloaded."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def make_image(path: Path, width: int = 640, height: int = 360, color: tuple[int, int, int] = (30, 120, 200)) -> Path:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = color
    pixels[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = (240, 240, 240)
    Image.fromarray(pixels).save(path)
    return Path(path)


def _tone(seconds: float, sample_rate: int, freq: float) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_audio(path: Path, seconds: float = 2.0, sample_rate: int = 44100, channels: int = 2,
               freq: float = 440.0) -> Path:
    """A sine tone; WAV (16-bit PCM) or MP3 by extension."""
    mp3 = str(path).endswith(".mp3")
    layout = "stereo" if channels == 2 else "mono"
    samples = _tone(seconds, sample_rate, freq)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame" if mp3 else "pcm_s16le", rate=sample_rate, layout=layout)
        for start in range(0, len(samples), 1152):
            chunk = np.repeat(samples[start:start + 1152][None, :], channels, axis=0)
            if mp3:  # planar float
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            else:  # packed 16-bit
                packed = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return Path(path)


def make_video(path: Path, width: int = 320, height: int = 180, fps: int = 24, seconds: float = 2.0,
               with_audio: bool = True, color: tuple[int, int, int] = (200, 50, 50)) -> Path:
    """H.264 yuv420p MP4 of a box moving across a coloured background, with an AAC tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="stereo") if with_audio else None
        frames = int(round(seconds * fps))
        box = max(8, height // 4)
        for index in range(frames):
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[:] = color
            x = int((width - box) * index / max(1, frames - 1))
            pixels[height // 2 - box // 2: height // 2 + box // 2, x:x + box] = (255, 255, 255)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples = _tone(seconds, 44100, 440.0)
            for start in range(0, len(samples), 1024):
                chunk = samples[start:start + 1024]
                frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return Path(path)


def make_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG of about 60 bytes that declares width×height RGB pixels and holds none: hostile input
    that must be refused from its header, before anything is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                           + chunk(b"IEND", b""))
    return Path(path)


def make_thin_png(path: Path, width: int = 1, height: int = 10_000) -> Path:
    """A real, valid PNG a pixel or so wide: tiny on disk, enormous if scaled up to cover a canvas."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :] = (40, 200, 90)
    Image.fromarray(pixels).save(path)
    return Path(path)
