"""What an endpoint is: an id, typed input and output, the lane it runs on, and a run function."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from thorgen.errors import InputError

if TYPE_CHECKING:
    from thorgen.jobs.context import JobContext
    from thorgen.models.info import ModelInfo


class File(msgspec.Struct):
    """fal's File object, the shape every family returns media in."""

    url: str
    content_type: str
    file_name: str
    file_size: int


class Image(File, omit_defaults=True):
    width: int | msgspec.UnsetType = msgspec.UNSET
    height: int | msgspec.UnsetType = msgspec.UNSET


class AudioFile(File):
    duration: float  # seconds, exact: samples written ÷ sample rate


def store_audio(ctx: JobContext, samples: Any, rate: int, fmt: str = "wav", *, out_rate: int | None = None,
                channels: int | None = None, bitrate: int | None = None) -> AudioFile:
    """Encode float audio (see media.audio_out.write_audio) as a stored output, with its exact duration."""
    from thorgen.media.audio_out import write_audio

    key, path = ctx.new_output(fmt)
    written = write_audio(path, samples, rate, fmt, out_rate=out_rate, channels=channels, bitrate=bitrate)
    return AudioFile(**ctx.file(key), duration=written / (out_rate or rate))


@dataclass(frozen=True)
class Endpoint:
    id: str
    input: type[msgspec.Struct]
    output: type[msgspec.Struct]
    run: Callable[[JobContext, Any], msgspec.Struct]
    lane: Literal["gpu", "utility"]
    summary: str
    model: str | None = None  # a [models.NAME] entry this endpoint needs on disk
    # Checks of the decoded input that need no loaded model, run at submit so bad input is a 422 at
    # once (as fal's schema validation is). Given the model's on-disk info (None for endpoints without
    # a model); raises InputError. Checks that need the loaded model stay in ``run``.
    validate: Callable[[Any, ModelInfo | None], None] | None = None
    # The model that answers instead while ``model``'s family lacks its optional extra (Kokoro ids fall
    # back to FastPitch); the run function sees which one it got in ``ctx.model``.
    fallback: str | None = None

    def check_input(self, raw: Any, model: ModelInfo | None = None) -> msgspec.Struct:
        """What submit runs: the input decoded into its Struct, then the endpoint's own checks."""
        args = self.decode_input(raw)
        if self.validate is not None:
            self.validate(args, model)
        return args

    def decode_input(self, raw: Any) -> msgspec.Struct:
        """Validate a JSON body into the input Struct, or raise a fal-style 422."""
        if not isinstance(raw, dict):
            raise InputError([], "Input should be a JSON object", "dict_type")
        try:
            return msgspec.convert(raw, self.input, strict=False)
        except msgspec.ValidationError as exc:
            raise validation_error(str(exc)) from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def validation_error(message: str) -> InputError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.a[0].b`" into fal's detail entry."""
    match = _AT.match(message)
    text = match.group("msg") if match else message
    loc: list[str | int] = []
    for name, index in _PATH_PART.findall((match.group("path") if match else "") or ""):
        loc.append(name if name else int(index))
    kind = "value_error"
    missing = _MISSING.match(text)
    if missing:
        loc.append(missing.group(1))
        text, kind = "Field required", "missing"
    elif text.startswith("Expected `"):
        kind = "type_error" if ", got `" in text else "value_error"
    return InputError(loc, text, kind)
