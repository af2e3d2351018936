"""Video with NVIDIA Cosmos: fal's cosmos-predict-2.5 ids, and every video id the editor sends.

Cosmos Predict2.5 (the default model) makes text-to-video, image-to-video and video-to-video in one
pipeline. Cosmos Predict2 Video2World can answer instead (``[endpoint_models]``); it needs a first
frame, so for text-to-video ``[cosmos] first_frame_model`` (Predict2 Text2Image) makes one first.

The editor's video models (minimax, hunyuan, kling, luma, veo2) are aliases of text-to-video,
with and without the ``/image-to-video`` suffix it appends when an image is set: ``image_url`` (or
the first ``images[].image_url``, LTX's key-frame shape) is then the first frame. Fields Cosmos has no
use for (``seconds_total``, ``image_size``, ``advanced_camera_control``...) are ignored, never an error.
LTX-Video answers the editor's LTX id (families/ltx.py); ``[endpoint_models]`` can send these ids there.

Outputs are only ``{video, seed}``: an ``images`` array would make the editor show a still.

The guardrail (NVIDIA Open Model License) runs here, on the prompt before and the frames after each
clip, when ``[cosmos] guardrail`` is on; cosmos/pipeline.py says why it is not left to diffusers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta, Struct

from thorgen.errors import FalError, InputError
from thorgen.families.acceleration import accelerated
from thorgen.families.base import (
    CatalogEntry,
    Context,
    Download,
    Endpoint,
    Extra,
    Family,
    Finding,
    LoadRequest,
    OptionalPrompt,
    Seed,
    VideoOutput,
    load_diffusers,
    store_video,
)
from thorgen.families.diffusion import pick_seed, seeded_generator, step_reporter

if TYPE_CHECKING:
    from thorgen.config import Config

log = logging.getLogger("thorgen")

FPS = 16  # Cosmos Predict2 and 2.5 are trained and exported at 16 frames per second
MIN_FRAMES, MAX_FRAMES = 9, 93
# (width, height) per aspect ratio; 720p is Cosmos's native 1280x704. "tiny" is for tiny mode only.
SIZES = {
    "720p": {"16:9": (1280, 704), "9:16": (704, 1280), "1:1": (960, 960), "4:3": (960, 704), "3:4": (704, 960)},
    "480p": {"16:9": (832, 480), "9:16": (480, 832), "1:1": (640, 640), "4:3": (640, 480), "3:4": (480, 640)},
    "tiny": {"16:9": (112, 64), "9:16": (64, 112), "1:1": (64, 64), "4:3": (80, 64), "3:4": (64, 80)},
}
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
VideoOutputType = Literal["X264 (.mp4)", "VP9 (.webm)", "GIF (.gif)", "PRORES4444 (.mov)"]
CONDITIONING_FRAMES = 5  # Video2World continues from the last 4 * (2 - 1) + 1 frames of its input


class FrameImage(Struct):
    """ltx-video multiconditioning's frame images; the first one is used as the first frame."""

    image_url: str
    start_frame_num: int = 0


class _VideoCommon(Struct, kw_only=True):
    prompt: OptionalPrompt = ""
    negative_prompt: OptionalPrompt | None = None  # None: the pipeline's long default
    num_frames: Annotated[int, Meta(ge=MIN_FRAMES, le=MAX_FRAMES)] = MAX_FRAMES
    num_inference_steps: Annotated[int, Meta(ge=1, le=100)] = 35
    guidance_scale: Annotated[float, Meta(ge=0, le=20)] = 7.0
    seed: Seed | None = None
    aspect_ratio: AspectRatio | None = None  # None: the conditioning image's shape, else 16:9
    sync_mode: bool = False
    video_output_type: VideoOutputType = "X264 (.mp4)"
    video_quality: Literal["low", "medium", "high", "maximum"] = "high"


class TextToVideoInput(_VideoCommon, kw_only=True):
    """fal's text-to-video, and the editor's ids: any conditioning it sends is used."""

    image_url: str | None = None
    video_url: str | None = None
    images: list[FrameImage] | None = None


class ImageToVideoInput(_VideoCommon, kw_only=True):
    image_url: str


class VideoToVideoInput(_VideoCommon, kw_only=True):
    video_url: str


# -- running ------------------------------------------------------------------------------------

def conditioning(args: TextToVideoInput | ImageToVideoInput | VideoToVideoInput) -> tuple[str | None, str | None]:
    """(image_url, video_url) that condition the clip; both at once is a 422."""
    image_url = getattr(args, "image_url", None)
    images = getattr(args, "images", None)
    if image_url is None and images:
        image_url = images[0].image_url
    video_url = getattr(args, "video_url", None)
    if image_url and video_url:
        raise InputError("video_url", "Give image_url (first frame) or video_url (clip to continue), not both")
    return image_url, video_url


def validate_conditioning(args: TextToVideoInput, model: Any) -> None:
    """At submit: the same check as the job makes, so two conditionings are refused at once."""
    conditioning(args)


def generate(ctx: Context, args: TextToVideoInput | ImageToVideoInput | VideoToVideoInput) -> VideoOutput:
    if ctx.model is not None and ctx.config.model(ctx.model).family == "ltx":  # [endpoint_models] chose LTX
        from thorgen.families import ltx

        return ltx.from_cosmos(ctx, args)
    image_url, video_url = conditioning(args)

    first = _read_image(ctx, image_url) if image_url else None
    clip = _read_clip(ctx, video_url) if video_url else None
    sample = first or (clip[-1] if clip else None)
    width, height = output_size(ctx.config, args.aspect_ratio, sample.size if sample else None)
    seed = pick_seed(args.seed)
    model_name = ctx.model
    assert model_name is not None
    pipeline_class = ctx.config.model(model_name).pipeline

    if pipeline_class == "Cosmos2VideoToWorldPipeline" and first is None and clip is None:
        first = _first_frame(ctx, args, width, height, seed)  # Predict2 Video2World needs one
    from thorgen.media.pixels import cover

    with ctx.lease() as model:
        pipe = model.pipeline
        _check_prompt(pipe, args.prompt)
        frames = _frame_count(ctx, pipe, args.num_frames)
        mode = "video-to-video" if clip else "image-to-video" if first else "text-to-video"
        ctx.log(f"{mode}: {width}x{height}, {frames} frames at {FPS} fps, {args.num_inference_steps} steps, "
                f"seed {seed} ({type(pipe).__name__})")
        call: dict[str, Any] = {
            "prompt": args.prompt, "negative_prompt": args.negative_prompt, "height": height, "width": width,
            "num_frames": frames, "num_inference_steps": args.num_inference_steps,
            "guidance_scale": args.guidance_scale, "generator": seeded_generator(seed),
            "max_sequence_length": _max_sequence_length(pipe),
            "callback_on_step_end": step_reporter(ctx, args.num_inference_steps),
        }
        if first is not None:
            call["image"] = cover(first, width, height, ctx.config.limits.max_image_pixels)
        if clip is not None:
            call["video"] = [cover(frame, width, height, ctx.config.limits.max_image_pixels) for frame in clip]
        # fal's Cosmos endpoints have no `acceleration` field: the model's configured level applies.
        level = ctx.config.model(model_name).acceleration
        started = time.perf_counter()
        with accelerated(pipe.transformer, level, args.num_inference_steps) as ran:
            result = pipe(**call).frames[0]
        model.hold_cache_bytes(ran.cache_bytes)  # the swapper counts what the cache held with the model
        ctx.log(f"generated in {time.perf_counter() - started:.1f} s; acceleration {level}: {ran.method}; "
                f"attention computed in {ran.computed} passes")
        result = _check_frames(pipe, result)
    return _output(ctx, args, result, seed)


def output_size(config: Config, aspect_ratio: str | None, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """The clip's (width, height): from aspect_ratio, else the nearest to the conditioning image, else 16:9."""
    table = SIZES["tiny" if config.runtime.tiny else config.cosmos.resolution]
    if aspect_ratio is None and image_size is not None:
        shape = image_size[0] / image_size[1]
        aspect_ratio = min(table, key=lambda ratio: abs(table[ratio][0] / table[ratio][1] - shape))
    return table[aspect_ratio or "16:9"]


def _frame_count(ctx: Context, pipe: Any, requested: int) -> int:
    """The frames to make: as asked, within what the model's position embedding covers (tiny: 29)."""
    latent_limit = pipe.transformer.config.max_size[0]
    most = (latent_limit - 1) * pipe.vae_scale_factor_temporal + 1
    if requested > most:
        ctx.log(f"this model makes at most {most} frames; making {most} instead of {requested}", "WARNING")
        return int(most)
    return requested


def _max_sequence_length(pipe: Any) -> int:
    """Prompt tokens: Cosmos takes 512; a smaller tokenizer (the tiny one) caps it."""
    return int(min(512, getattr(pipe.tokenizer, "model_max_length", 512)))


def _first_frame(ctx: Context, args: _VideoCommon, width: int, height: int, seed: int) -> Any:
    """Predict2 text-to-video: the first frame comes from Cosmos Predict2 Text2Image."""
    with ctx.lease(ctx.config.cosmos.first_frame_model) as model:
        pipe = model.pipeline
        _check_prompt(pipe, args.prompt)
        ctx.log(f"first frame: {width}x{height} with {ctx.config.cosmos.first_frame_model}")
        return pipe(prompt=args.prompt, negative_prompt=args.negative_prompt, height=height, width=width,
                    num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                    generator=seeded_generator(seed), max_sequence_length=_max_sequence_length(pipe),
                    callback_on_step_end=step_reporter(ctx, args.num_inference_steps, "first frame step"),
                    ).images[0]


def _check_prompt(pipe: Any, prompt: str) -> None:
    guardrail = getattr(pipe.safety_checker, "guardrail", None)
    if guardrail is not None and not guardrail.check_text_safety(prompt):
        raise InputError("prompt", "The Cosmos safety guardrail blocked this prompt", "content_policy_violation")


def _check_frames(pipe: Any, frames: list[Any]) -> list[Any]:
    """The guardrail's video check: it may refuse the clip, or return it changed (faces blurred)."""
    guardrail = getattr(pipe.safety_checker, "guardrail", None)
    if guardrail is None:
        return frames
    import numpy as np
    from PIL import Image

    checked = guardrail.check_video_safety(np.stack([np.asarray(frame.convert("RGB")) for frame in frames]))
    if checked is None:
        raise FalError("The Cosmos safety guardrail blocked the generated video", status=422,
                       error_type="content_policy_violation")
    return [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in checked]


def _read_image(ctx: Context, url: str) -> Any:
    from thorgen.media.pixels import open_image
    from thorgen.media.probe import MediaError

    path = ctx.resolve(url, "image_url")
    try:
        return open_image(path, ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError("image_url", f"The file at image_url is not usable: {exc}", exc.kind) from None


def _read_clip(ctx: Context, url: str) -> list[Any]:
    from thorgen.media.probe import MediaError
    from thorgen.media.video import last_frames

    path = ctx.resolve(url, "video_url")
    try:
        frames = last_frames(path, CONDITIONING_FRAMES, ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError("video_url", f"The file at video_url is not usable: {exc}", exc.kind) from None
    except Exception:  # PyAV raises many kinds for files that are not video
        raise InputError("video_url", "The file at video_url is not a video thorgen can read") from None
    if len(frames) < CONDITIONING_FRAMES:
        raise InputError("video_url", f"The video needs at least {CONDITIONING_FRAMES} frames to continue from")
    return frames


def _output(ctx: Context, args: _VideoCommon, frames: list[Any], seed: int) -> VideoOutput:
    from thorgen.media.video import FORMATS

    name = f"output.{FORMATS[args.video_output_type].ext}"
    return VideoOutput(video=store_video(ctx, frames, FPS, args.video_output_type, args.video_quality,
                                         sync_mode=args.sync_mode, file_name=name), seed=seed)


def safety_note(config: Config) -> str:
    """For /info and the start-up log: what the guardrail does with this config."""
    if config.runtime.tiny:
        return "tiny mode: the Cosmos guardrail does not run (tiny outputs are noise)"
    if not config.cosmos.guardrail:
        return ("OFF ([cosmos] guardrail = false): no prompt or clip is checked, which the NVIDIA Open Model "
                "License does not allow without an equivalent guardrail of your own")
    if not guardrail_working(config):
        return ("required and MISSING: the cosmos_guardrail package is not installed, so every Cosmos id "
                "answers 424 (pip install 'thorgen[guardrail]', then `thorgen models pull cosmos-guardrail`)")
    return "on: cosmos_guardrail checks every prompt (blocklist, Qwen3Guard) and every clip (face blur)"


def guardrail_working(config: Config) -> bool:
    """Whether Cosmos runs with a guardrail it can load: on in config and its package installed."""
    return config.guardrail_on and GUARDRAIL.missing(config) is None


# -- what thorgen cannot do locally -----------------------------------------------------------------

class _Anything(Struct, kw_only=True):
    prompt: str = ""
    video_url: str | None = None


def _unavailable(what: str) -> Any:
    def run(ctx: Context, args: _Anything) -> VideoOutput:
        raise FalError(f"{what} is not available in thorgen: no local model does it", status=501,
                       error_type="not_available_locally")

    return run


T2V = "fal-ai/cosmos-predict-2.5/text-to-video"
ENDPOINTS = [
    Endpoint(T2V, TextToVideoInput, VideoOutput, generate, "gpu",
             "Cosmos Predict2.5 text-to-video (an optional image_url or video_url conditions it)",
             model="cosmos-predict25", validate=validate_conditioning),
    Endpoint("fal-ai/cosmos-predict-2.5/image-to-video", ImageToVideoInput, VideoOutput, generate, "gpu",
             "Cosmos Predict2.5 image-to-video (image_url is the first frame)",
             model="cosmos-predict25"),
    Endpoint("fal-ai/cosmos-predict-2.5/video-to-video", VideoToVideoInput, VideoOutput, generate, "gpu",
             "Cosmos Predict2.5 video-to-video (continues the clip at video_url)",
             model="cosmos-predict25"),
    Endpoint("fal-ai/sync-lipsync", _Anything, VideoOutput, _unavailable("Lip sync (fal-ai/sync-lipsync)"),
             "utility", "Not available locally: always fails with a clear error"),
    Endpoint("fal-ai/topaz/upscale/video", _Anything, VideoOutput,
             _unavailable("Video upscaling (fal-ai/topaz/upscale/video)"), "utility",
             "Not available locally: always fails with a clear error"),
]

# Listed as unavailable (with this reason) in /endpoints, `thorgen endpoints` and the start log.
NOT_LOCAL = {
    "fal-ai/sync-lipsync": "no local model does lip sync; a job is accepted and then fails with 501",
    "fal-ai/topaz/upscale/video": "no local model does video upscaling; a job is accepted and then fails "
                                  "with 501",
}

# The editor's video ids (starter-kit.md §2.2), each also with the "/image-to-video" it appends.
EDITOR_VIDEO_IDS = [
    "fal-ai/minimax/video-01-live", "fal-ai/hunyuan-video", "fal-ai/kling-video/v1.5/pro",
    "fal-ai/kling-video/v1/standard/text-to-video", "fal-ai/luma-dream-machine", "fal-ai/veo2",
]  # and fal-ai/ltx-video-v095/multiconditioning, which LTX-Video answers (families/ltx.py)
ALIASES = {
    **{video_id: T2V for video_id in EDITOR_VIDEO_IDS},
    **{f"{video_id}/image-to-video": T2V for video_id in EDITOR_VIDEO_IDS},
    "fal-ai/sync-lipsync/image-to-video": "fal-ai/sync-lipsync",
    "fal-ai/topaz/upscale/video/image-to-video": "fal-ai/topaz/upscale/video",
}


# -- models, loading, the guardrail as an extra --------------------------------------------------------

LICENCE = "NVIDIA Open Model License (requires a safety guardrail)"
CATALOG = {
    # Cosmos: text, image and video to video in one pipeline. The diffusers weights live on a branch.
    "cosmos-predict25": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict25", "source": "nvidia/Cosmos-Predict2.5-2B",
                "revision": "diffusers/base/post-trained", "pipeline": "Cosmos2_5_PredictBasePipeline",
                "dtype": "bfloat16"},
        licence=LICENCE,
        gated=True,
        approx_bytes=21_000_000_000,  # 2 B transformer, Cosmos-Reason1-7B text encoder, Wan 2.1 VAE
    ),
    # Cosmos Predict2, the alternative: image or video to video; text to video goes through Text2Image.
    "cosmos-predict2-video2world": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict2-video2world",
                "source": "nvidia/Cosmos-Predict2-2B-Video2World", "pipeline": "Cosmos2VideoToWorldPipeline",
                "dtype": "bfloat16"},
        licence=LICENCE,
        gated=True,
        approx_bytes=13_900_000_000,  # 2 B transformer, T5-11B encoder, Wan 2.1 VAE
    ),
    "cosmos-predict2-text2image": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict2-text2image",
                "source": "nvidia/Cosmos-Predict2-2B-Text2Image", "pipeline": "Cosmos2TextToImagePipeline",
                "dtype": "bfloat16"},
        licence=LICENCE,
        gated=True,
        approx_bytes=13_900_000_000,
    ),
}

# The guardrail is needed only while [cosmos] guardrail is on (never in tiny mode).
GUARDRAIL = Extra(
    module="cosmos_guardrail", name="guardrail", what=" (the Cosmos safety guardrail)",
    more=("; then fetch its weights with `thorgen models pull cosmos-guardrail`. The NVIDIA Open Model "
          "License requires this guardrail; [cosmos] guardrail = false in config.toml turns it off (read the "
          "README's \"Cosmos safety guardrail\" first)"),
    needed=lambda config: config.guardrail_on,
)


def load(request: LoadRequest) -> Any:
    """The plain diffusers load, given a pass-through safety checker that carries the real guardrail."""
    from thorgen.families.cosmos import pipeline as cosmos

    cosmos.install_torchvision_stand_ins()
    # Given to the constructor, or it builds cosmos_guardrail's checker itself (see cosmos/pipeline.py).
    guardrail = cosmos.load_guardrail() if request.config.guardrail_on else None
    loaded = load_diffusers(request, safety_checker=cosmos.passthrough_checker(guardrail))
    loaded.vae.enable_tiling()  # decodes 720p x 93 frames in tiles instead of all at once
    return loaded


def _tiny(builder: str) -> Any:
    def build() -> Any:
        from thorgen.families.cosmos import pipeline  # imports torch: only when a tiny model is built

        return getattr(pipeline, builder)()

    return build


def announce(config: Config) -> None:
    (log.info if guardrail_working(config) else log.warning)("Cosmos safety guardrail: %s", safety_note(config))


def doctor(config: Config) -> list[Finding]:
    """The guardrail's line: whether Cosmos needs it now, and whether it is there."""
    present = _guardrail_present()
    label = "extra: Cosmos guardrail"
    if not config.cosmos.guardrail:
        return [Finding(label, "warn", "[cosmos] guardrail = false: no prompt or clip is checked (the NVIDIA "
                        "Open Model License requires a guardrail; see the README)")]
    if present:
        return [Finding(label, "ok", "installed (its weights: `thorgen models pull cosmos-guardrail`)")]
    if config.runtime.tiny:
        return [Finding(label, "info", "not installed; tiny mode does not run it (pip install "
                        "'thorgen[guardrail]' for real Cosmos weights)")]
    return [Finding(label, "warn", "required by Cosmos and not installed: every Cosmos id answers 424 until "
                    "it is (pip install 'thorgen[guardrail]', then `thorgen models pull cosmos-guardrail`)")]


def pull_guardrail() -> Path:
    """The Cosmos guardrail's weights, fetched the way the cosmos_guardrail package looks for them.

    Its constructor downloads them (a blocklist, Qwen3Guard, a face filter) into the Hugging Face
    cache; thorgen serves with HF_HUB_OFFLINE=1, so at serve time it only ever reads that cache.
    """
    from thorgen.models.pull import PullError

    try:
        from cosmos_guardrail import CosmosSafetyChecker
    except ImportError:
        raise PullError("the cosmos_guardrail package is not installed: pip install 'thorgen[guardrail]'") from None
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise PullError("HF_HUB_OFFLINE=1 is set: run the pull where the Hugging Face Hub is reachable")
    try:
        CosmosSafetyChecker()
    except Exception as exc:
        raise PullError(f"fetching the Cosmos guardrail failed: {type(exc).__name__}: {exc}") from None
    return Path(constants.HF_HUB_CACHE)


def _guardrail_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("cosmos_guardrail") is not None


_PULL = "thorgen models pull cosmos-guardrail (weights into the Hugging Face cache)"
GUARDRAIL_DOWNLOAD = Download(
    name="cosmos-guardrail",
    kind="guardrail",
    fetch=pull_guardrail,
    installed=lambda: "package" if _guardrail_present() else "NO",
    source="cosmos_guardrail package + its weights",
    licence="NVIDIA Open Model License; required by the Cosmos models while [cosmos] guardrail is on",
    install_hint=lambda: _PULL if _guardrail_present() else f"pip install 'thorgen[guardrail]', then {_PULL}",
)

FAMILY = Family(
    name="cosmos",
    title="Cosmos",
    endpoints=ENDPOINTS,
    aliases=ALIASES,
    not_local=NOT_LOCAL,
    catalog=CATALOG,
    extra=GUARDRAIL,
    load=load,
    tiny={
        "Cosmos2_5_PredictBasePipeline": _tiny("build_cosmos2_5"),
        "Cosmos2VideoToWorldPipeline": _tiny("build_cosmos2_video2world"),
        "Cosmos2TextToImagePipeline": _tiny("build_cosmos2_text2image"),
    },
    safety_note=safety_note,
    on_start=announce,
    doctor=doctor,
    downloads=[GUARDRAIL_DOWNLOAD],
)
