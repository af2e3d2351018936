"""Probe a media file with PyAV (the wheel carries ffmpeg's libraries; no ffprobe binary needed).

Returns fal's metadata fields for video, audio or image, without the url/file fields the caller adds.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

# Codecs PyAV reports for still images (a PNG opens as a one-frame "video").
IMAGE_CODECS = {"png", "mjpeg", "webp", "bmp", "tiff", "gif", "jpegls", "jpeg2000"}
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif")
COMMON_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "3:4": 3 / 4, "21:9": 21 / 9,
                 "3:2": 3 / 2, "2:3": 2 / 3}


# PyAV names decoders; fal (ffprobe) names codecs.
CODEC_NAMES = {"mp3float": "mp3", "aac_fixed": "aac", "opus": "opus", "libdav1d": "av1", "vorbis": "vorbis"}


class MediaError(ValueError):
    """The file is not media PyAV can decode; the message says so in words.

    ``kind`` is the 422's ``type``; ``field`` (optional) names the input the file came from.
    """

    kind = "media_unreadable"

    def __init__(self, message: str, field: str | list[str | int] | None = None):
        super().__init__(message)
        self.field = field


def aspect_ratio(width: int, height: int) -> str:
    ratio = width / height
    for name, value in COMMON_RATIOS.items():
        if abs(ratio - value) / value < 0.02:
            return name
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def open_media(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"Not a media file thorgen can read ({type(exc).__name__})") from None


def probe(path: Path) -> dict[str, Any]:
    with open_media(path) as container:
        container_name = container.format.name.split(",")[0]
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None and (video.codec_context.name in IMAGE_CODECS and
                                  (container.format.name in IMAGE_FORMATS or _frame_count(container, video) <= 1)):
            return {"media_type": "image", "codec": video.codec_context.name, "container": container_name,
                    "resolution": _resolution(video)}
        duration = _duration(container)
        if duration is None or duration <= 0:
            duration = _decoded_duration(path)
        bitrate = container.bit_rate or None
        if video is not None:
            fps = float(video.average_rate or video.guessed_rate or 0)
            return {
                "media_type": "video",
                "duration": round(duration, 4),
                "bitrate": bitrate,
                "codec": video.codec_context.name,
                "container": container_name,
                "fps": round(fps, 3) if fps % 1 else int(fps),
                "frame_count": _frame_count(container, video),
                "timebase": str(video.time_base or Fraction(1, 1)),
                "resolution": _resolution(video),
                "format": {
                    "container": container_name,
                    "video_codec": video.codec_context.name,
                    "profile": video.codec_context.profile,
                    "level": video.codec_context.level if video.codec_context.level not in (None, -99) else None,
                    "pixel_format": video.codec_context.pix_fmt,
                    "bitrate": video.bit_rate or bitrate,
                },
                "audio": _audio_track(audio) if audio is not None else None,
            }
        if audio is not None:
            track = _audio_track(audio)
            return {"media_type": "audio", "duration": round(duration, 4), "bitrate": bitrate,
                    "codec": track["codec"], "container": container_name, "channels": track["channels"],
                    "sample_rate": track["sample_rate"]}
    raise MediaError("The file has neither a video nor an audio stream")


def _resolution(video: av.video.stream.VideoStream) -> dict[str, Any]:
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        raise MediaError("The video stream has no frame size")
    return {"aspect_ratio": aspect_ratio(width, height), "width": width, "height": height}


def _audio_track(audio: av.audio.stream.AudioStream) -> dict[str, Any]:
    context = audio.codec_context
    return {
        "codec": CODEC_NAMES.get(context.name, context.name),
        "channels": context.channels,
        "sample_rate": context.sample_rate,
        "bitrate": audio.bit_rate or context.bit_rate or None,
    }


def _duration(container: av.container.InputContainer) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    for stream in container.streams:
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    return None


def _frame_count(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> int:
    if video.frames:
        return video.frames
    container.seek(0)
    count = sum(1 for packet in container.demux(video) if packet.size)
    container.seek(0)
    return count


def _decoded_duration(path: Path) -> float:
    """Last resort for streams without a duration: decode and add up."""
    with open_media(path) as container:
        stream = (container.streams.audio or container.streams.video)[0]
        end = 0.0
        for frame in container.decode(stream):
            if isinstance(frame, av.AudioFrame) and frame.time is not None:
                end = max(end, frame.time + frame.samples / frame.sample_rate)
            elif isinstance(frame, av.VideoFrame) and frame.time is not None:
                end = max(end, frame.time)
        return end
