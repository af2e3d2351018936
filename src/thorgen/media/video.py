"""Writing generated frames as a video file, and reading a video's frames back, with PyAV.

The formats are fal's ``video_output_type`` choices: H.264 MP4 (yuv420p, faststart, what every
browser plays), VP9 WebM, GIF and ProRes 4444 MOV.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from thorgen.media.pixels import DEFAULT_MAX_PIXELS, open_video
from thorgen.media.probe import MediaError


@dataclass(frozen=True)
class VideoFormat:
    ext: str
    content_type: str
    container: str
    codec: str
    pix_fmt: str


FORMATS = {
    "X264 (.mp4)": VideoFormat("mp4", "video/mp4", "mp4", "libx264", "yuv420p"),
    "VP9 (.webm)": VideoFormat("webm", "video/webm", "webm", "libvpx-vp9", "yuv420p"),
    "GIF (.gif)": VideoFormat("gif", "image/gif", "gif", "gif", "rgb8"),
    "PRORES4444 (.mov)": VideoFormat("mov", "video/quicktime", "mov", "prores_ks", "yuva444p10le"),
}
# fal's video_quality -> constant rate factor (lower is better) for H.264 and VP9.
QUALITY_CRF = {"low": 30, "medium": 24, "high": 18, "maximum": 12}


def write_video(frames: Sequence[Image.Image], path: Path, fps: int, output_type: str = "X264 (.mp4)",
                quality: str = "high") -> None:
    """Encode RGB frames (all one size) at ``fps``; the file has exactly ``len(frames)`` frames."""
    spec = FORMATS[output_type]
    width, height = frames[0].size
    options = {"movflags": "+faststart"} if spec.container in ("mp4", "mov") else {}
    with av.open(str(path), "w", format=spec.container, options=options) as container:
        stream: av.video.stream.VideoStream = container.add_stream(  # type: ignore[assignment]
            spec.codec, rate=Fraction(fps), options=_codec_options(spec, quality))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _codec_options(spec: VideoFormat, quality: str) -> dict[str, str]:
    crf = str(QUALITY_CRF[quality])
    if spec.codec == "libx264":
        return {"crf": crf, "preset": "veryfast"}
    if spec.codec == "libvpx-vp9":
        return {"crf": crf, "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if spec.codec == "prores_ks":
        return {"profile": "4"}  # 4444
    return {}


def last_frames(path: Path, count: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """The last ``count`` frames of a video as RGB images (fewer if it is shorter)."""
    kept: deque[av.VideoFrame] = deque(maxlen=count)
    with open_video(path, max_pixels, "The video") as container:
        try:
            for frame in container.decode(video=0):
                kept.append(frame)
        except av.error.FFmpegError as exc:  # damaged data, or a frame past max_pixels
            raise MediaError(f"The video could not be decoded ({type(exc).__name__})") from None
    return [frame.to_image() for frame in kept]


def with_audio(video_path: Path, samples: np.ndarray, sample_rate: int, out_path: Path) -> tuple[int, int, float]:
    """The video at ``video_path`` with ``samples`` ((channels, n) float32 in [-1, 1]) as its only sound:
    H.264 yuv420p + AAC MP4 with faststart, at the source's size (rounded down to even) and frame rate.
    Any audio the source had is dropped. Returns (width, height, duration in seconds of video)."""
    channels = samples.shape[0]
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(video_path)) as source, \
            av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as target:
        src = source.streams.video[0]
        rate = src.average_rate or Fraction(16)
        width, height = src.codec_context.width // 2 * 2, src.codec_context.height // 2 * 2
        video: av.video.stream.VideoStream = target.add_stream(  # type: ignore[assignment]
            "libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio: av.audio.stream.AudioStream = target.add_stream(  # type: ignore[assignment]
            "aac", rate=sample_rate, layout=layout)
        frames = 0
        for frame in source.decode(src):
            picture = frame.reformat(width=width, height=height, format="yuv420p")
            picture.pts, picture.time_base = frames, 1 / rate
            target.mux(video.encode(picture))
            frames += 1
        target.mux(video.encode(None))
        clean = np.ascontiguousarray(np.clip(samples, -1.0, 1.0).astype(np.float32))
        for start in range(0, clean.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(clean[:, start:start + 1024]), format="fltp",
                                               layout=layout)
            chunk.sample_rate, chunk.pts, chunk.time_base = sample_rate, start, Fraction(1, sample_rate)
            target.mux(audio.encode(chunk))
        target.mux(audio.encode(None))
    return width, height, float(frames / rate)
