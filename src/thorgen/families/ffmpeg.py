"""fal's ffmpeg-api family: media metadata, waveform, frame extraction and timeline compose (export).

No model needed: PyAV's wheels carry the ffmpeg libraries. All four run on the utility lane, so
the editor's metadata and export calls never wait behind a GPU job.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from thorgen.errors import InputError
from thorgen.families.base import Context, Endpoint, Family, File, Image
from thorgen.media.compose import Clip, compose
from thorgen.media.frames import read_frame
from thorgen.media.pixels import check_still_header
from thorgen.media.probe import MediaError, probe
from thorgen.media.store import content_type_of
from thorgen.media.waveform import waveform

MAX_TIMELINE_MS = 3600 * 1000  # one hour of timeline per export


# -- shared output pieces -------------------------------------------------------------------------

class Resolution(Struct):
    aspect_ratio: str
    width: int
    height: int


# -- fal-ai/ffmpeg-api/metadata -------------------------------------------------------------------

class MetadataInput(Struct):
    media_url: str
    extract_frames: bool = False


class VideoFormat(Struct):
    container: str
    video_codec: str
    profile: str | None
    level: int | None
    pixel_format: str | None
    bitrate: int | None


class AudioTrack(Struct):
    codec: str
    channels: int
    sample_rate: int
    bitrate: int | None


class VideoMedia(File, tag_field="media_type", tag="video", omit_defaults=True):
    duration: float
    bitrate: int | None
    codec: str
    container: str
    fps: float
    frame_count: int
    timebase: str
    resolution: Resolution
    format: VideoFormat
    audio: AudioTrack | None = None
    start_frame_url: str | UnsetType = UNSET
    end_frame_url: str | UnsetType = UNSET


class AudioMedia(File, tag_field="media_type", tag="audio"):
    duration: float
    bitrate: int | None
    codec: str
    container: str
    channels: int
    sample_rate: int


class ImageMedia(File, tag_field="media_type", tag="image", omit_defaults=True):
    # No duration on purpose: the editor would make a zero-length timeline clip of it.
    resolution: Resolution
    codec: str | UnsetType = UNSET
    container: str | UnsetType = UNSET


class MetadataOutput(Struct):
    media: VideoMedia | AudioMedia | ImageMedia


def run_metadata(ctx: Context, inp: MetadataInput) -> MetadataOutput:
    path = ctx.resolve(inp.media_url, "media_url")
    max_pixels = ctx.config.limits.max_image_pixels
    try:
        check_still_header(path, max_pixels)  # FFmpeg's probe decodes a still image whole
        info = probe(path)
    except MediaError as exc:
        raise InputError("media_url", str(exc), exc.kind) from None
    info.update(url=inp.media_url, file_name=path.name, file_size=path.stat().st_size,
                content_type=content_type_of(path.name))
    if inp.extract_frames and info["media_type"] == "video":
        ctx.log("extracting the first and last frames")
        frames: tuple[tuple[Literal["first", "last"], str], ...] = (
            ("first", "start_frame_url"), ("last", "end_frame_url"))
        for which, field in frames:
            key, out = ctx.new_output("png")
            try:
                frame = read_frame(path, which, max_pixels)
            except MediaError as exc:
                raise InputError("media_url", str(exc), exc.kind) from None
            frame.save(out, format="PNG")
            info[field] = ctx.url(key)
    media_type = {"video": VideoMedia, "audio": AudioMedia, "image": ImageMedia}[info.pop("media_type")]
    return MetadataOutput(media=msgspec.convert(info, media_type))


# -- fal-ai/ffmpeg-api/waveform -------------------------------------------------------------------

class WaveformInput(Struct):
    media_url: str
    points_per_second: Annotated[float, Meta(gt=0, le=100)] = 4.0
    precision: Annotated[int, Meta(ge=0, le=6)] = 2
    smoothing_window: Annotated[int, Meta(ge=1, le=51)] = 3


class WaveformOutput(Struct):
    waveform: list[float]
    duration: float
    points: int
    precision: int


def validate_waveform(inp: WaveformInput, model: object = None) -> None:
    if inp.smoothing_window % 2 == 0:
        raise InputError("smoothing_window", "Must be an odd number", "value_error")


def run_waveform(ctx: Context, inp: WaveformInput) -> WaveformOutput:
    validate_waveform(inp)
    path = ctx.resolve(inp.media_url, "media_url")
    try:
        values, duration = waveform(path, inp.points_per_second, inp.precision, inp.smoothing_window)
    except MediaError as exc:
        raise InputError("media_url", str(exc), "media_unreadable") from None
    return WaveformOutput(waveform=values, duration=duration, points=len(values), precision=inp.precision)


# -- fal-ai/ffmpeg-api/extract-frame --------------------------------------------------------------

class ExtractFrameInput(Struct):
    video_url: str
    frame_type: Literal["first", "middle", "last"] = "first"


class ExtractFrameOutput(Struct):
    images: list[Image]


def run_extract_frame(ctx: Context, inp: ExtractFrameInput) -> ExtractFrameOutput:
    path = ctx.resolve(inp.video_url, "video_url")
    try:
        frame = read_frame(path, inp.frame_type, ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError("video_url", str(exc), exc.kind) from None
    key, out = ctx.new_output("png")
    frame.save(out, format="PNG")
    image = Image(**ctx.file(key), width=frame.width, height=frame.height)
    return ExtractFrameOutput(images=[image])


# -- fal-ai/ffmpeg-api/compose (the editor's export) ----------------------------------------------

class Keyframe(Struct):
    timestamp: Annotated[float, Meta(ge=0, le=MAX_TIMELINE_MS)]  # milliseconds
    duration: Annotated[float, Meta(gt=0, le=MAX_TIMELINE_MS)]  # milliseconds
    url: str | None = None  # the editor sends null for a failed item: skipped


class Track(Struct):
    type: Literal["video", "audio", "image"]
    keyframes: list[Keyframe]
    id: str = ""


class ComposeInput(Struct):
    tracks: Annotated[list[Track], Meta(max_length=32)]


class ComposeOutput(Struct):
    video_url: str
    thumbnail_url: str


def validate_compose(inp: ComposeInput, model: object = None) -> None:
    """The timeline's shape: within an hour, and at least one keyframe with media."""
    for t, track in enumerate(inp.tracks):
        for k, keyframe in enumerate(track.keyframes):
            if keyframe.timestamp + keyframe.duration > MAX_TIMELINE_MS:
                raise InputError(["tracks", t, "keyframes", k, "duration"],
                                 f"The timeline may not run past {MAX_TIMELINE_MS // 1000} s")
    if not any(keyframe.url for track in inp.tracks for keyframe in track.keyframes):
        raise InputError("tracks", "No keyframe has a url: there is nothing to compose")


def run_compose(ctx: Context, inp: ComposeInput) -> ComposeOutput:
    validate_compose(inp)
    clips = []
    for t, track in enumerate(inp.tracks):
        for k, keyframe in enumerate(track.keyframes):
            if not keyframe.url:
                continue
            loc: list[str | int] = ["tracks", t, "keyframes", k, "url"]
            path = ctx.resolve(keyframe.url, loc)
            kind = "audio" if track.type == "audio" else "video"
            clips.append(Clip(path=path, start_ms=keyframe.timestamp, duration_ms=keyframe.duration,
                              track_type=kind, loc=loc))
    ctx.log(f"composing {len(clips)} clips from {len(inp.tracks)} tracks")
    video_key, video_path = ctx.new_output("mp4")
    thumb_key, thumb_path = ctx.new_output("jpg")
    last_logged = [-1]

    def progress(fraction: float) -> None:
        percent = int(fraction * 100)
        if percent // 10 != last_logged[0]:
            last_logged[0] = percent // 10
            ctx.log(f"encoding {percent}%")

    try:
        result = compose(clips, video_path, thumb_path, on_progress=progress,
                         check_cancel=ctx.check_cancelled, max_pixels=ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError(exc.field or "tracks", str(exc), exc.kind) from None
    ctx.log(f"wrote {result.width}x{result.height} at {result.fps} fps, {result.duration:.2f} s")
    return ComposeOutput(video_url=ctx.url(video_key), thumbnail_url=ctx.url(thumb_key))


ENDPOINTS = [
    Endpoint("fal-ai/ffmpeg-api/metadata", MetadataInput, MetadataOutput, run_metadata, "utility",
             "Probe a video, audio or image file; optionally extract its first and last frames"),
    Endpoint("fal-ai/ffmpeg-api/waveform", WaveformInput, WaveformOutput, run_waveform, "utility",
             "Peak waveform of an audio (or video) file, points_per_second values in [0, 1]",
             validate=validate_waveform),
    Endpoint("fal-ai/ffmpeg-api/extract-frame", ExtractFrameInput, ExtractFrameOutput,
             run_extract_frame, "utility", "The first, middle or last frame of a video as PNG"),
    Endpoint("fal-ai/ffmpeg-api/compose", ComposeInput, ComposeOutput, run_compose, "utility",
             "Render a timeline of video, image and audio tracks to an H.264/AAC MP4", validate=validate_compose),
]

FAMILY = Family(name="ffmpeg", endpoints=ENDPOINTS)  # media utilities: no model to load
