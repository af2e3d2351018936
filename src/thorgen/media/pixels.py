"""The one gate for decoded pixels: every image decode, video-frame decode and scale-up goes through here.

A PNG of a few dozen bytes can declare 60000×60000 pixels, and a 1×10000 image cover-fitted to a
1024×576 canvas would first be scaled to 1024×10,240,000. Nothing here allocates before it has read
the size from the file's header (PIL's ``Image.open`` is lazy; PyAV knows a stream's width and height
once the container is open) and compared it with ``limits.max_image_pixels``. Scaling to cover a
canvas crops in source coordinates first, so its output is never larger than the canvas.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageOps

from thorgen.media.probe import MediaError

# 8192×8192 = 67,108,864 pixels: every camera photo up to 64 MP, 8K video frames (33 MP) and Flux's
# largest outputs pass; decoding one takes about 14 bytes a pixel at its peak (RGBA read, RGB
# convert, resample), about 0.9 GiB, so two utility workers stay under 2 GiB. config: limits.max_image_pixels.
DEFAULT_MAX_PIXELS = 8192 * 8192


class TooManyPixels(MediaError):
    """An image or video frame larger than limits.max_image_pixels; refused before it is decoded."""

    kind = "too_many_pixels"


def check_size(width: int, height: int, max_pixels: int, what: str = "The image") -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"{what} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise TooManyPixels(f"{what} is {width}x{height} = {width * height:,} pixels; thorgen decodes at most "
                            f"{max_pixels:,} (limits.max_image_pixels)")


def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A still image decoded as RGB, after its header's size has passed the limit."""
    try:
        with _open_header(path) as opened:
            check_size(opened.width, opened.height, max_pixels)
            return opened.convert("RGB")
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"Not an image thorgen can read ({type(exc).__name__})") from None


# PIL refuses, at open, images over its own fixed limit (twice Image.MAX_IMAGE_PIXELS), before we can
# read the size to give our own answer; ours is the limit that counts, so its check is off while a
# header is read. A lock, because MAX_IMAGE_PIXELS is process-wide; decoding happens after, unlocked.
_PIL_LIMIT = threading.Lock()


def _open_header(path: Path) -> Image.Image:
    """PIL's lazy open: reads the header (size, mode), decodes nothing."""
    with _PIL_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def decoder_options(max_pixels: int) -> dict[str, str]:
    """FFmpeg's own per-frame cap, so its decoders refuse a frame past the limit before allocating it."""
    return {"max_pixels": str(max_pixels)}


def cover_crop(source: tuple[int, int], canvas: tuple[int, int]) -> tuple[int, int, int, int]:
    """The middle part of ``source`` with the canvas's aspect ratio, as (left, top, width, height).

    Cropping this and scaling it to the canvas is the same picture as scaling to cover and cropping,
    but the scaled image is only ever canvas-sized.
    """
    width, height = source
    target = canvas[0] / canvas[1]
    if width / height > target:  # wider than the canvas: keep the full height
        crop_w, crop_h = max(1, min(width, round(height * target))), height
    else:
        crop_w, crop_h = width, max(1, min(height, round(width / target)))
    return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h


def cover(image: Image.Image, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Scale to cover width×height and crop the middle (aspect ratio kept, nothing stretched).

    ImageOps.fit resamples straight from the crop box in source coordinates: its only large
    allocation is the output, which is checked here first.
    """
    check_size(width, height, max_pixels, "The scaled picture")
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)


def image_header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a still image's header, without decoding; None if PIL does not know it."""
    try:
        with _open_header(path) as opened:
            return opened.width, opened.height
    except (OSError, ValueError, SyntaxError):
        return None


def check_still_header(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "The image") -> None:
    """Refuse a still image too large to decode, from its header alone. Call it before anything that
    opens the file with FFmpeg: to learn a still image's size, FFmpeg decodes the whole picture."""
    size = image_header_size(path)
    if size is not None:
        check_size(*size, max_pixels, what)


def open_video(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "The file") -> Any:
    """A PyAV container whose video streams' frame size has passed the limit, for decoding frames.

    FFmpeg itself is told the limit as well (its ``max_pixels`` option), so no decoder allocates a frame
    past it even when the header left the size unknown.
    """
    check_still_header(path, max_pixels, what)
    try:
        container = av.open(str(path), options=decoder_options(max_pixels))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"Not a media file thorgen can read ({type(exc).__name__})") from None
    try:
        for stream in container.streams.video:
            width, height = stream.codec_context.width, stream.codec_context.height
            if width and height:
                check_size(width, height, max_pixels, what)
    except MediaError:
        container.close()
        raise
    return container
