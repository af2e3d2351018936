"""Video with Lightricks LTX-Video 0.9.5: fal's ltx-video ids, key frames at chosen frame numbers.

One model (``[models.ltx-video]``, loaded as diffusers' ``LTXConditionPipeline``) answers three ways,
each with the pipeline diffusers made for it, built around the same loaded modules (no second copy):
- ``fal-ai/ltx-video-v095``: text to video (``LTXPipeline``);
- ``fal-ai/ltx-video-v095/image-to-video``: ``image_url`` is the first frame (``LTXImageToVideoPipeline``);
- ``fal-ai/ltx-video-v095/multiconditioning``: every ``images[]`` entry is a key frame at its own
  ``start_frame_num`` (``LTXConditionPipeline``: frame 0 replaces the first latent frame, every later
  key frame enters the transformer as extra tokens placed at that frame's time position).
The editor's ``.../multiconditioning/image-to-video`` and fal's older ``fal-ai/ltx-video`` ids are
aliases. ``[endpoint_models]`` can point the Cosmos text-to-video endpoint (and with it every editor
video id that is an alias of it) at ``ltx-video``: cosmos.generate then hands the job to ``from_cosmos``.

Why 0.9.5 and not a newer 0.9.x distilled checkpoint: it is the model the editor's id names, it has an
official diffusers folder (``Lightricks/LTX-Video-0.9.5``: model_index.json and one folder per
component) that loads in all three pipelines as it is, and it is 2 B parameters. The distilled ones are
either 13 B (0.9.7, with a diffusers folder) or single-file 2 B checkpoints inside Lightricks/LTX-Video
(0.9.6, 0.9.8) whose 0.9.8 form expects a second, latent-upsampling pass: not "the same pipelines".
A user who wants one sets ``[models.ltx-video] source`` to it (same family, same code).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from thorgen.errors import InputError
from thorgen.families.base import (
    ANY_PIPELINE,
    CatalogEntry,
    Context,
    Endpoint,
    Family,
    LoadRequest,
    VideoOutput,
    load_diffusers,
    store_video,
)
from thorgen.families.diffusion import pick_seed, seeded_generator, step_reporter

MODEL = "ltx-video"
TEMPORAL_STEP = 8  # the VAE packs 8 frames into one latent frame: clips are 8k + 1 frames long
MIN_FRAMES, MAX_FRAMES = 9, 257
# (width, height): multiples of 32, the VAE's spatial compression. "tiny" is for tiny mode only.
SIZES = {
    "720p": {"16:9": (1280, 704), "9:16": (704, 1280), "1:1": (960, 960), "4:3": (960, 704), "3:4": (704, 960)},
    "480p": {"16:9": (832, 480), "9:16": (480, 832), "1:1": (640, 640), "4:3": (640, 480), "3:4": (480, 640)},
    "tiny": {"16:9": (128, 64), "9:16": (64, 128), "1:1": (64, 64), "4:3": (96, 64), "3:4": (64, 96)},
}
# LTX-Video 0.9.5's own negative prompt and decode settings (its model card and diffusers' example).
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
DECODE_TIMESTEP, DECODE_NOISE_SCALE = 0.05, 0.025
Seed = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class KeyFrame(Struct):
    """One key frame of multiconditioning: the image, the frame it lands on, and how firmly."""

    image_url: str
    start_frame_num: Annotated[int, Meta(ge=0)] = 0
    strength: Annotated[float, Meta(ge=0, le=1)] = 1.0


class TextToVideoInput(Struct, kw_only=True):
    prompt: Annotated[str, Meta(max_length=10_000)] = ""
    negative_prompt: Annotated[str, Meta(max_length=10_000)] = NEGATIVE
    resolution: Literal["480p", "720p"] = "720p"
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "auto"] = "auto"
    num_frames: Annotated[int, Meta(ge=MIN_FRAMES, le=MAX_FRAMES)] = 121
    frame_rate: Annotated[int, Meta(ge=1, le=60)] = 24
    # At least 2: with one step, 0.9.5's terminal shift divides by zero (NaN frames).
    num_inference_steps: Annotated[int, Meta(ge=2, le=100)] = 40
    guidance_scale: Annotated[float, Meta(ge=0, le=20)] = 3.0
    seed: Seed | None = None
    expand_prompt: bool = False  # fal rewrites the prompt with an LLM; thorgen does not (logged)
    sync_mode: bool = False
    video_quality: Literal["low", "medium", "high", "maximum"] = "high"


class ImageToVideoInput(TextToVideoInput, kw_only=True):
    image_url: str


class MulticonditioningInput(TextToVideoInput, kw_only=True):
    images: list[KeyFrame] = msgspec.field(default_factory=list)


# -- checks that need no model (also run at submit: a 422 at once) --------------------------------

def frame_count(requested: int) -> int:
    """The clip's length: 8k + 1 frames, the nearest at or below what was asked."""
    return (requested - 1) // TEMPORAL_STEP * TEMPORAL_STEP + 1


def check_key_frames(args: MulticonditioningInput, model: Any = None) -> None:
    """Every key frame must land inside the clip, on the 8-frame grid, one per frame number."""
    frames = frame_count(args.num_frames)
    seen: set[int] = set()
    for index, key in enumerate(args.images):
        loc: list[str | int] = ["images", index, "start_frame_num"]
        if key.start_frame_num % TEMPORAL_STEP:
            raise InputError(loc, f"start_frame_num must be a multiple of {TEMPORAL_STEP} (LTX-Video packs "
                                  f"{TEMPORAL_STEP} frames into one latent frame)", "value_error")
        if key.start_frame_num >= frames:
            raise InputError(loc, f"start_frame_num {key.start_frame_num} is past the clip's last frame "
                                  f"({frames - 1}; num_frames is {frames})", "value_error")
        if key.start_frame_num in seen:
            raise InputError(loc, f"Two key frames at frame {key.start_frame_num}", "value_error")
        seen.add(key.start_frame_num)


# -- running --------------------------------------------------------------------------------------

def text_to_video(ctx: Context, args: TextToVideoInput) -> VideoOutput:
    return _generate(ctx, args, [])


def image_to_video(ctx: Context, args: ImageToVideoInput) -> VideoOutput:
    return _generate(ctx, args, [KeyFrame(args.image_url)], fields=["image_url"])


def multiconditioning(ctx: Context, args: MulticonditioningInput) -> VideoOutput:
    check_key_frames(args)
    return _generate(ctx, args, args.images, fields=[["images", i, "image_url"] for i in range(len(args.images))])


def from_cosmos(ctx: Context, args: Any) -> VideoOutput:
    """A Cosmos-shaped job ([endpoint_models] sent a Cosmos id here): its image is the first frame.

    Cosmos's fields map by name; ``images`` (the editor's LTX key frames) keep their frame numbers.
    A ``video_url`` to continue is not something this path does: a 422 says so.
    """
    if getattr(args, "video_url", None):
        raise InputError("video_url", "LTX-Video answers this id ([endpoint_models]); it does not continue a "
                                      "video_url", "value_error")
    # Unset fields (None) take LTX's defaults; Cosmos-only ones (video_output_type...) are dropped.
    fields = {name: value for name, value in msgspec.to_builtins(args).items() if value is not None}
    known = set(MulticonditioningInput.__struct_fields__)
    converted = msgspec.convert({name: value for name, value in fields.items() if name in known},
                                MulticonditioningInput, strict=False)
    image_url = getattr(args, "image_url", None)
    if image_url and not converted.images:
        converted.images = [KeyFrame(image_url)]
    converted.num_frames = max(MIN_FRAMES, converted.num_frames)
    return multiconditioning(ctx, converted)


def _generate(ctx: Context, args: TextToVideoInput, keys: list[KeyFrame],
              fields: list[Any] | None = None) -> VideoOutput:
    from thorgen.media.pixels import cover

    images = [_read_image(ctx, key.image_url, (fields or [])[i]) for i, key in enumerate(keys)]
    width, height = _size(ctx, args, images[0].size if images else None)
    frames = frame_count(args.num_frames)
    if frames != args.num_frames:
        ctx.log(f"LTX-Video makes 8k + 1 frames: {frames} instead of {args.num_frames}", "WARNING")
    if args.expand_prompt:
        ctx.log("expand_prompt: thorgen has no prompt rewriter for video; the prompt is used as given", "WARNING")
    seed = pick_seed(args.seed)
    limit = ctx.config.limits.max_image_pixels
    sized = [cover(image, width, height, limit) for image in images]
    with ctx.lease() as model:
        pipe, extra = _pipeline_for(model.pipeline, keys, sized)
        ctx.log(f"{type(pipe).__name__}: {width}x{height}, {frames} frames at {args.frame_rate} fps, "
                f"{args.num_inference_steps} steps, seed {seed}")
        for key in keys:
            ctx.log(f"key frame at frame {key.start_frame_num} (strength {key.strength:g}): {key.image_url[:80]}")
        started = time.perf_counter()
        result = pipe(prompt=args.prompt, negative_prompt=args.negative_prompt, width=width, height=height,
                      num_frames=frames, frame_rate=args.frame_rate, num_inference_steps=args.num_inference_steps,
                      guidance_scale=args.guidance_scale, generator=seeded_generator(seed),
                      decode_timestep=DECODE_TIMESTEP, decode_noise_scale=DECODE_NOISE_SCALE,
                      max_sequence_length=_max_sequence_length(pipe),
                      callback_on_step_end=step_reporter(ctx, args.num_inference_steps), **extra).frames[0]
        ctx.log(f"generated in {time.perf_counter() - started:.1f} s")
    return _output(ctx, args, result, seed)


def _pipeline_for(loaded: Any, keys: list[KeyFrame], images: list[Any]) -> tuple[Any, dict[str, Any]]:
    """The diffusers pipeline for this job's conditioning, sharing the loaded modules, and its arguments."""
    from diffusers import LTXConditionPipeline, LTXImageToVideoPipeline, LTXPipeline

    components = {name: getattr(loaded, name) for name in ("scheduler", "vae", "text_encoder", "tokenizer",
                                                           "transformer")}
    if not keys:
        pipe: Any = LTXPipeline(**components)
        extra: dict[str, Any] = {}
    elif len(keys) == 1 and keys[0].start_frame_num == 0 and keys[0].strength == 1.0:
        pipe, extra = LTXImageToVideoPipeline(**components), {"image": images[0]}
    else:
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        pipe = loaded if isinstance(loaded, LTXConditionPipeline) else LTXConditionPipeline(**components)
        extra = {"conditions": [LTXVideoCondition(image=image, frame_index=key.start_frame_num, strength=key.strength)
                                for key, image in zip(keys, images, strict=True)]}
    pipe.set_progress_bar_config(disable=True)
    return pipe, extra


def _size(ctx: Context, args: TextToVideoInput, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height): aspect_ratio, or "auto": the first key frame's shape, else 16:9."""
    table = SIZES["tiny" if ctx.config.runtime.tiny else args.resolution]
    ratio: str = args.aspect_ratio
    if ratio == "auto":
        if image_size is None:
            return table["16:9"]
        shape = image_size[0] / image_size[1]
        ratio = min(table, key=lambda r: abs(table[r][0] / table[r][1] - shape))
    return table[ratio]


def _max_sequence_length(pipe: Any) -> int:
    """Prompt tokens: LTX takes 128 (its T5 was trained so); a smaller tokenizer (the tiny one) caps it."""
    return int(min(128, getattr(pipe.tokenizer, "model_max_length", 128)))


def _read_image(ctx: Context, url: str, field: Any) -> Any:
    from thorgen.media.pixels import open_image
    from thorgen.media.probe import MediaError

    path = ctx.resolve(url, field)
    try:
        return open_image(path, ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError(field, f"The file at {url[:80]} is not a usable image: {exc}", exc.kind) from None


def _output(ctx: Context, args: TextToVideoInput, frames: list[Any], seed: int) -> VideoOutput:
    video = store_video(ctx, frames, args.frame_rate, "X264 (.mp4)", args.video_quality, sync_mode=args.sync_mode,
                        file_name="output.mp4")
    return VideoOutput(video=video, seed=seed)


def load(request: LoadRequest) -> Any:
    """The plain diffusers load, then VAE tiling: a 720p clip of 121 frames decodes in tiles."""
    pipeline = load_diffusers(request)
    pipeline.vae.enable_tiling()
    return pipeline


# -- tiny random weights with LTX-Video 0.9.5's real layout ------------------------------------------

def build_tiny() -> Any:
    """An LTXConditionPipeline with 0.9.5's structure (its VAE block types, 32x spatial and 8x temporal
    compression, timestep-conditioned decoder; T5 text encoder) at toy widths; save_pretrained writes
    the diffusers layout of Lightricks/LTX-Video-0.9.5 (model_index.json, transformer/, vae/,
    text_encoder/, tokenizer/, scheduler/)."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from thorgen.models.tiny import t5_tokenizer

    torch.manual_seed(0)
    tokenizer = t5_tokenizer(max_length=64)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8, 8),
        down_block_types=("LTXVideo095DownBlock3D",) * 4, layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        # Each up block doubles in space and time and halves the channels (upsample_factor 2): so 8, 16, 32.
        decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False,) * 4,
        upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=True,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
        spatial_compression_ratio=32, temporal_compression_ratio=8)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=2,
                                             attention_head_dim=8, cross_attention_dim=16, num_layers=1,
                                             caption_channels=32)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    # 0.9.5's scheduler config: no dynamic shifting, a terminal shift of 0.1.
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0, shift_terminal=0.1,
                                                base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                                                max_image_seq_len=4096)
    modules: list[Any] = [vae, transformer, text_encoder]
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat
    return LTXConditionPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                transformer=transformer)


T2V = "fal-ai/ltx-video-v095"
I2V = "fal-ai/ltx-video-v095/image-to-video"
MULTI = "fal-ai/ltx-video-v095/multiconditioning"
ENDPOINTS = [
    Endpoint(T2V, TextToVideoInput, VideoOutput, text_to_video, "gpu", "LTX-Video 0.9.5 text-to-video",
             model=MODEL),
    Endpoint(I2V, ImageToVideoInput, VideoOutput, image_to_video, "gpu",
             "LTX-Video 0.9.5 image-to-video (image_url is the first frame)", model=MODEL),
    Endpoint(MULTI, MulticonditioningInput, VideoOutput, multiconditioning, "gpu",
             "LTX-Video 0.9.5 with key frames (images[].image_url at images[].start_frame_num)", model=MODEL,
             validate=check_key_frames),
]
ALIASES = {
    f"{MULTI}/image-to-video": MULTI,  # the editor appends /image-to-video when an image is set
    "fal-ai/ltx-video": T2V,  # fal's 0.9.1 ids, answered by 0.9.5
    "fal-ai/ltx-video/image-to-video": I2V,
}
CATALOG = {
    MODEL: CatalogEntry(
        config={"family": "ltx", "path": MODEL, "source": "Lightricks/LTX-Video-0.9.5",
                "pipeline": "LTXConditionPipeline", "dtype": "bfloat16"},
        licence="LTXV Open Weights License (revenue-gated; read the model card before use)",
        gated=False,
        approx_bytes=14_300_000_000,  # 1.9 B transformer, T5-XXL v1.1 encoder (4.8 B), video VAE
    ),
}

FAMILY = Family(
    name="ltx",
    title="LTX-Video",
    endpoints=ENDPOINTS,
    aliases=ALIASES,
    catalog=CATALOG,
    load=load,
    tiny={ANY_PIPELINE: build_tiny},
)
