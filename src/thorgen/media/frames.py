"""Read one frame of a video (or a still image) as a PIL image."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import av
from PIL import Image

from thorgen.media.pixels import DEFAULT_MAX_PIXELS, open_video
from thorgen.media.probe import MediaError


def read_frame(path: Path, which: Literal["first", "middle", "last"],
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    with open_video(path, max_pixels) as container:
        if not container.streams.video:
            raise MediaError("The file has no video stream to take a frame from")
        stream = container.streams.video[0]
        duration = container.duration / av.time_base if container.duration else None
        try:
            if which == "first" or not duration:
                frame = next(container.decode(stream), None)
            else:
                target = duration / 2 if which == "middle" else duration
                frame = _frame_near(container, stream, target, last=which == "last")
        except av.error.FFmpegError as exc:  # damaged data, or a frame past max_pixels
            raise MediaError(f"No frame could be decoded from the video ({type(exc).__name__})") from None
        if frame is None:
            raise MediaError("No frame could be decoded from the video")
        return frame.to_image().convert("RGB")


def _frame_near(container, stream, seconds: float, *, last: bool):  # type: ignore[no-untyped-def]
    """Seek to the keyframe before ``seconds - 1``, decode forward, keep the right frame."""
    offset = int(max(0.0, seconds - 1.0) / stream.time_base) if stream.time_base else 0
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    chosen = None
    for frame in container.decode(stream):
        if chosen is None or last or (frame.time is not None and frame.time <= seconds):
            chosen = frame
        if not last and frame.time is not None and frame.time >= seconds:
            break
    return chosen
