"""What a model family is, and what it may use: the one module a family file imports from thorgen.

- ``Endpoint``: an id, typed input and output Structs, the lane it runs on, a run function.
- fal's media Structs (``File``, ``Image``, ``AudioFile``, ``VideoFile``) and the one way out per
  medium (``store_image``, ``store_audio``, ``store_video``), each honouring fal's ``sync_mode``.
- Shared field aliases (``Seed``, ``Prompt``, ``OptionalPrompt``).
- ``Context``: what a job lets a family do (lease its model, log, report a step, honour cancel,
  resolve an input URL, scratch space, reserve and describe an output). ``jobs.context.JobContext``
  is the implementation; tests may hand a run function anything with these methods.
- ``Family``: a family's record (name, endpoints, aliases, catalog entries, optional extra, load
  hook, tiny builders, what /info, the start log and ``thorgen doctor`` say about it). Every family
  module ends with one ``FAMILY = Family(...)``; ``thorgen.families.FAMILIES`` lists them.

This module imports nothing of jobs/, protocol/ or any family: jobs/ and the families meet here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import msgspec

from thorgen.errors import InputError
from thorgen.models.catalog import CatalogEntry
from thorgen.models.loaders import LoadHook, LoadRequest, load_diffusers
from thorgen.models.tuning import WarmUp

if TYPE_CHECKING:
    from thorgen.config import Config
    from thorgen.models.info import ModelInfo
    from thorgen.models.swapper import Lease

__all__ = [
    "ANY_PIPELINE", "AudioFile", "CatalogEntry", "Context", "Download", "Endpoint", "Extra", "Family", "File",
    "Finding", "Image", "LoadHook", "LoadRequest", "OptionalPrompt", "Prompt", "Seed", "TinyBuilder", "VideoFile",
    "VideoOutput", "WarmUp",
    "load_diffusers", "store_audio", "store_image", "store_video", "validation_error",
]

# -- fal's media objects ---------------------------------------------------------------------------


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


class VideoFile(File):
    width: int
    height: int
    fps: float
    duration: float
    num_frames: int


class VideoOutput(msgspec.Struct):
    """fal's video output, ``{video, seed}`` (no ``images``: the editor would show a still)."""

    video: VideoFile
    seed: int


# -- shared field aliases -----------------------------------------------------------------------------

Seed = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]  # fal's required prompt
OptionalPrompt = Annotated[str, msgspec.Meta(max_length=10_000)]  # a prompt that may be empty


# -- what a job gives a family ------------------------------------------------------------------------


class Context(Protocol):
    """What a run function may ask of its job. Nothing else of the job service is in reach."""

    request_id: str
    model: str | None  # the [models.NAME] this job's endpoint runs

    @property
    def config(self) -> Config: ...

    def lease(self, name: str | None = None) -> AbstractContextManager[Lease]:
        """Borrow a loaded model (the endpoint's own by default) for the length of a ``with`` block."""
        ...

    def log(self, message: str, level: str = "INFO") -> None: ...

    def step(self, done: int, total: int, what: str = "step") -> None:
        """Report progress and stop there (raise) if the client cancelled."""
        ...

    def check_cancelled(self) -> None: ...

    def resolve(self, url: str, field: str | list[str | int]) -> Path:
        """A local path for a file input (own URL, data: URI or a fetched http(s) URL); 422 on ``field``."""
        ...

    def scratch(self) -> Path:
        """A private folder for this job's temporary files, removed when the job ends."""
        ...

    def new_output(self, ext: str) -> tuple[str, Path]:
        """Reserve an output file: its key and the temporary path to write it to."""
        ...

    def file(self, key: str, file_name: str | None = None) -> dict[str, Any]:
        """fal's File fields (url, content_type, file_name, file_size) for a reserved output."""
        ...

    def url(self, key: str) -> str: ...


# -- one way out per medium ---------------------------------------------------------------------------


def store_image(ctx: Context, image: Any, fmt: Literal["jpeg", "png"] = "jpeg", *, sync_mode: bool = False,
                file_name: str | None = None) -> Image:
    """A PIL image as an output (JPEG at quality 95, or PNG), with its size."""
    ext, kind = ("jpg", "JPEG") if fmt == "jpeg" else ("png", "PNG")
    key, path = ctx.new_output(ext)
    image.save(path, kind, **({"quality": 95} if kind == "JPEG" else {}))
    return Image(**_out(ctx, key, path, file_name, sync_mode), width=image.width, height=image.height)


def store_audio(ctx: Context, samples: Any, rate: int, fmt: str = "wav", *, out_rate: int | None = None,
                channels: int | None = None, bitrate: int | None = None, sync_mode: bool = False,
                file_name: str | None = None) -> AudioFile:
    """Float audio (see media.audio_out.write_audio) as an output, with its exact duration."""
    from thorgen.media.audio_out import write_audio

    key, path = ctx.new_output(fmt)
    written = write_audio(path, samples, rate, fmt, out_rate=out_rate, channels=channels, bitrate=bitrate)
    return AudioFile(**_out(ctx, key, path, file_name, sync_mode), duration=written / (out_rate or rate))


def store_video(ctx: Context, frames: Sequence[Any], fps: int, output_type: str = "X264 (.mp4)",
                quality: str = "high", *, sync_mode: bool = False, file_name: str | None = None) -> VideoFile:
    """RGB frames (PIL images, one size) as a video output (see media.video.FORMATS for the types)."""
    from thorgen.media.video import FORMATS, write_video

    key, path = ctx.new_output(FORMATS[output_type].ext)
    write_video(frames, path, fps, output_type, quality)
    width, height = frames[0].size
    return VideoFile(**_out(ctx, key, path, file_name, sync_mode), width=width, height=height, fps=float(fps),
                     duration=round(len(frames) / fps, 6), num_frames=len(frames))


def _out(ctx: Context, key: str, path: Path, file_name: str | None, sync_mode: bool) -> dict[str, Any]:
    """The File fields of a written output. fal's ``sync_mode``: the media inline as a data URI and
    nothing kept (the temporary is removed, so the job commits no file for it)."""
    described = ctx.file(key, file_name)
    if sync_mode:
        from thorgen.families.diffusion import data_uri

        data = path.read_bytes()
        path.unlink()
        described = {**described, "url": data_uri(data, described["content_type"])}
    return described


# -- endpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    id: str
    input: type[msgspec.Struct]
    output: type[msgspec.Struct]
    run: Callable[[Context, Any], msgspec.Struct]
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


# -- the family record ---------------------------------------------------------------------------------

TinyBuilder = Callable[[], Any]  # builds a tiny random-weight model with save_pretrained / save_to_folder
ANY_PIPELINE = "*"  # a Family.tiny key: builds every model of the family, whatever its pipeline class


@dataclass(frozen=True)
class Finding:
    """One line of `thorgen doctor`: the check, its verdict ("ok", "warn", "FAIL", "info"), the detail."""

    check: str
    verdict: str
    detail: str


@dataclass(frozen=True)
class Extra:
    """An optional extra a family needs: pip install 'thorgen[NAME]' provides ``module``."""

    module: str  # importable when the extra is installed (looked up, never imported: NeMo takes seconds)
    name: str  # the extra's name in pyproject
    what: str = ""  # said after the name in a listing: " (the Cosmos safety guardrail)"
    more: str = ""  # appended to the 424 a request gets: what else to do, what the licence says
    needed: Callable[[Config], bool] = field(default=lambda config: True)  # False: runs without it

    def missing(self, config: Config | None = None, *, explain: bool = False) -> str | None:
        """Why the family cannot run here (the extra is needed and absent), or None."""
        if config is not None and not self.needed(config):
            return None
        import importlib.util

        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return None
        return (f"the optional extra '{self.name}'{self.what} is not installed: pip install 'thorgen[{self.name}]'"
                + (self.more if explain else ""))


@dataclass(frozen=True)
class Download:
    """Something `thorgen models pull NAME` fetches that is not a [models.NAME] folder (the Cosmos
    guardrail's weights), with the row `thorgen models list` shows for it."""

    name: str
    kind: str  # the "family" column of `thorgen models list`: "guardrail"
    fetch: Callable[[], Path]  # raises PullError (thorgen.models.pull) with what to do
    installed: Callable[[], str]  # "NO", or what is there
    source: str
    licence: str
    install_hint: Callable[[], str]


@dataclass(frozen=True)
class Family:
    """One model family: everything thorgen knows about it, declared in its own module.

    ``name`` is the ``family`` its [models.NAME] tables name (and the key of its /info note).
    ``catalog`` entries become config defaults; ``aliases`` are extra endpoint ids it answers
    (config's [aliases] win); ``not_local`` lists ids it answers but can never serve here (id ->
    why). ``load`` turns an installed model into what the swapper holds (default: the plain
    diffusers loader). ``tiny`` builds its tiny models, keyed by pipeline class (``ANY_PIPELINE``
    for all). ``extra`` is an optional extra it needs; ``downloads`` are what `thorgen models pull`
    fetches for it besides its models. ``safety_note`` is what /info says under ``safety_checkers``;
    ``on_start`` logs what an operator must know at start; ``doctor`` adds lines to `thorgen doctor`.
    """

    name: str
    endpoints: Sequence[Endpoint] = ()
    title: str = ""  # what a person calls it ("Stable Audio"), for the service description; "" for none
    aliases: Mapping[str, str] = field(default_factory=dict)
    not_local: Mapping[str, str] = field(default_factory=dict)
    catalog: Mapping[str, CatalogEntry] = field(default_factory=dict)
    extra: Extra | None = None
    load: LoadHook = load_diffusers
    # One short run of the family's pipeline (its arguments, for a model name, tiny or not), which
    # `[models.NAME] compile = true` runs before the model is lent to a job; None: compile is refused.
    warm_up: WarmUp | None = None
    tiny: Mapping[str, TinyBuilder] = field(default_factory=dict)
    safety_note: Callable[[Config], str] | None = None
    on_start: Callable[[Config], None] | None = None
    doctor: Callable[[Config], list[Finding]] | None = None
    downloads: Sequence[Download] = ()

    def missing_extra(self, config: Config | None = None, *, explain: bool = False) -> str | None:
        return self.extra.missing(config, explain=explain) if self.extra is not None else None

    def tiny_builder(self, pipeline: str) -> TinyBuilder | None:
        return self.tiny.get(pipeline) or self.tiny.get(ANY_PIPELINE)
