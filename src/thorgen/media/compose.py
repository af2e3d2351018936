"""The editor's export: render a timeline of video, image and audio clips to an H.264/AAC MP4.

Semantics follow the editor's own preview (Remotion, 30 fps): each clip starts at its timestamp and
plays from the beginning of its media for its duration; images are drawn with object-fit cover; a
later-starting clip covers an earlier one where they overlap; gaps are black and silent; video clips
keep their own sound, mixed with the audio tracks by plain summing (no auto-attenuation).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from thorgen.media.audio import decode_audio
from thorgen.media.pixels import (
    DEFAULT_MAX_PIXELS,
    check_size,
    check_still_header,
    cover,
    cover_crop,
    open_image,
    open_video,
)
from thorgen.media.probe import MediaError, probe

FPS = 30
SAMPLE_RATE = 48000
AUDIO_FRAME = 1024
# The editor's canvas sizes (video-preview.tsx): 16:9, 9:16 and 1:1.
CANVASES = {"landscape": (1024, 576), "portrait": (576, 1024), "square": (1024, 1024)}


@dataclass
class Clip:
    path: Path
    start_ms: float
    duration_ms: float
    track_type: str  # "video" (videos and still images) or "audio"
    loc: str | list[str | int] = "tracks"  # the input it came from, named by a 422 about it


@dataclass
class ComposeResult:
    width: int
    height: int
    fps: int
    duration: float
    has_audio: bool


@dataclass
class _Visual:
    clip: Clip
    kind: str  # "video" or "image"
    source_size: tuple[int, int]
    max_pixels: int = DEFAULT_MAX_PIXELS
    still: av.VideoFrame | None = None  # images: the cover-fitted picture, converted once
    frames: Generator[tuple[float, av.VideoFrame], None, None] | None = field(default=None, repr=False)
    current: av.VideoFrame | None = None
    upcoming: tuple[float, av.VideoFrame] | None = None

    @property
    def start(self) -> float:
        return self.clip.start_ms / 1000

    @property
    def end(self) -> float:
        return (self.clip.start_ms + self.clip.duration_ms) / 1000


def compose(clips: list[Clip], out_path: Path, thumbnail_path: Path,
            on_progress: Callable[[float], None] | None = None,
            check_cancel: Callable[[], None] | None = None,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> ComposeResult:
    if not clips:
        raise MediaError("Nothing to compose")
    visuals, audible = _classify(clips, max_pixels)
    width, height = _canvas(visuals)
    total = max((c.start_ms + c.duration_ms) / 1000 for c in clips)
    frame_count = max(1, round(total * FPS))
    mix = _mix_audio(audible, frame_count / FPS)
    try:
        _encode(visuals, mix, width, height, frame_count, out_path, thumbnail_path, on_progress, check_cancel)
    except BaseException:
        out_path.unlink(missing_ok=True)
        thumbnail_path.unlink(missing_ok=True)
        raise
    finally:
        for visual in visuals:
            if visual.frames is not None:
                visual.frames.close()
    return ComposeResult(width, height, FPS, frame_count / FPS, has_audio=True)


def _classify(clips: list[Clip], max_pixels: int) -> tuple[list[_Visual], list[Clip]]:
    """Probe every clip (headers only) and refuse one too large to decode before anything is decoded."""
    visuals, audible = [], []
    for clip in clips:
        try:
            check_still_header(clip.path, max_pixels)
            info = probe(clip.path)
            kind = info["media_type"]
            if clip.track_type == "video" and kind in ("video", "image"):
                size = (info["resolution"]["width"], info["resolution"]["height"])
                check_size(*size, max_pixels, f"The {kind}")
                visuals.append(_Visual(clip, kind, size, max_pixels))
        except MediaError as exc:
            exc.field = exc.field or clip.loc
            raise
        if kind == "audio" or (kind == "video" and info.get("audio")):
            audible.append(clip)
    visuals.sort(key=lambda v: v.start)
    return visuals, audible


def _canvas(visuals: list[_Visual]) -> tuple[int, int]:
    if not visuals:
        return CANVASES["landscape"]
    width, height = visuals[0].source_size
    ratio = width / height
    shape = "landscape" if ratio > 1.1 else "portrait" if ratio < 0.9 else "square"
    return CANVASES[shape]


def _video_frames(path: Path, canvas: tuple[int, int],
                  max_pixels: int) -> Generator[tuple[float, av.VideoFrame], None, None]:
    """(seconds from the clip's start, cover-fitted yuv420p frame) for each decoded frame.

    Cropping, scaling and the pixel-format change run in one libavfilter graph, the same code
    path the ffmpeg command line uses; frames never pass through numpy. The crop comes first (to the
    canvas's aspect ratio, in source pixels), so no frame is ever scaled past the canvas's size.
    """
    with open_video(path, max_pixels, "The video") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _, _, crop_w, crop_h = cover_crop((stream.codec_context.width, stream.codec_context.height), canvas)
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(template=stream),
            graph.add("crop", f"{crop_w}:{crop_h}"),
            graph.add("scale", f"{canvas[0]}:{canvas[1]}"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        for upstream, downstream in zip(chain, chain[1:], strict=False):
            upstream.link_to(downstream)
        graph.configure()
        first: float | None = None
        for decoded in container.decode(stream):
            graph.push(decoded)
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    break
                assert isinstance(frame, av.VideoFrame)
                when = frame.time or 0.0
                first = when if first is None else first
                yield when - first, frame


def _still(path: Path, canvas: tuple[int, int], max_pixels: int) -> av.VideoFrame:
    picture = cover(open_image(path, max_pixels), canvas[0], canvas[1], max_pixels)
    return av.VideoFrame.from_image(picture).reformat(format="yuv420p")


def _picture_at(visual: _Visual, local: float, canvas: tuple[int, int]) -> av.VideoFrame:
    """The clip's picture ``local`` seconds in; a video past its end holds its last frame."""
    if visual.kind == "image":
        if visual.still is None:
            visual.still = _still(visual.clip.path, canvas, visual.max_pixels)
        return visual.still
    if visual.frames is None:
        visual.frames = _video_frames(visual.clip.path, canvas, visual.max_pixels)
        visual.upcoming = next(visual.frames, None)
    while visual.upcoming is not None and visual.upcoming[0] <= local + 1e-6:
        visual.current = visual.upcoming[1]
        visual.upcoming = next(visual.frames, None)
    if visual.current is None and visual.upcoming is not None:
        visual.current = visual.upcoming[1]
    if visual.current is None:
        raise MediaError(f"No frame could be decoded from {visual.clip.path.name}")
    return visual.current


def _mix_audio(clips: list[Clip], seconds: float) -> np.ndarray:
    mix = np.zeros((2, round(seconds * SAMPLE_RATE)), np.float32)
    for clip in clips:
        samples, _ = decode_audio(clip.path, sample_rate=SAMPLE_RATE, channels=2)
        start = round(clip.start_ms / 1000 * SAMPLE_RATE)
        length = min(round(clip.duration_ms / 1000 * SAMPLE_RATE), samples.shape[1], mix.shape[1] - start)
        if length > 0:
            mix[:, start:start + length] += samples[:, :length]
    return np.clip(mix, -1.0, 1.0)


def _encode(visuals: list[_Visual], mix: np.ndarray, width: int, height: int, frame_count: int,
            out_path: Path, thumbnail_path: Path, on_progress: Callable[[float], None] | None,
            check_cancel: Callable[[], None] | None) -> None:
    canvas = (width, height)
    black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24").reformat(
        format="yuv420p")
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        audio.bit_rate = 128_000
        audio_done = 0
        for index in range(frame_count):
            if index % FPS == 0:
                if check_cancel:
                    check_cancel()
                if on_progress:
                    on_progress(index / frame_count)
            when = index / FPS
            active = [v for v in visuals if v.start <= when < v.end]
            # The same frame object may go out many times (a still, a held or repeated frame):
            # the encoder takes its own reference at each call, so only the timestamp changes.
            frame = _picture_at(active[-1], when - active[-1].start, canvas) if active else black
            if index == 0:
                frame.to_image().save(thumbnail_path, format="JPEG", quality=88)
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(video.encode(frame))
            # Interleave: audio up to the end of this video frame.
            audio_until = min(mix.shape[1], round((index + 1) / FPS * SAMPLE_RATE))
            audio_done = _encode_audio(container, audio, mix, audio_done, audio_until)
        _encode_audio(container, audio, mix, audio_done, mix.shape[1])
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    if on_progress:
        on_progress(1.0)


def _encode_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                  mix: np.ndarray, start: int, stop: int) -> int:
    while start + AUDIO_FRAME <= stop or (stop == mix.shape[1] and start < stop):
        chunk = mix[:, start:min(start + AUDIO_FRAME, stop)]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(frame))
        start += chunk.shape[1]
    return start
