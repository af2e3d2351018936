"""Flux image generation: fal's flux/dev, flux/schnell and flux/dev/image-to-image.

One loaded FluxPipeline serves both text-to-image and image-to-image: the image-to-image pipeline is
made with diffusers' ``from_pipe`` over the same modules, so it costs no memory. The editor's other
image ids (flux-pro ultra, Stable Diffusion 3.5 Large) are aliases of flux/dev (``ALIASES``), changed
in config.toml's ``[aliases]`` like any other.

Safety: diffusers' Flux pipelines have no safety checker and thorgen adds none, so
``has_nsfw_concepts`` is always false and ``enable_safety_checker`` is accepted and ignored. /info and
the README say so.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from thorgen.errors import InputError
from thorgen.families.acceleration import Accelerated, Level, accelerated
from thorgen.families.base import (
    ANY_PIPELINE,
    CatalogEntry,
    Context,
    Endpoint,
    Family,
    Image,
    Prompt,
    Seed,
    store_image,
)
from thorgen.families.diffusion import pick_seed, seeded_generator, step_reporter

SAFETY_NOTE = "no safety checker runs for Flux (diffusers' Flux has none): has_nsfw_concepts is always false"

# fal's image_size presets (width, height), plus the editor's "square_1_1" (starter-kit.md §2.1).
PRESETS = {
    "square_hd": (1024, 1024), "square": (512, 512), "square_1_1": (1024, 1024),
    "portrait_4_3": (768, 1024), "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}
# aspect_ratio (flux-pro ultra's field) when no image_size is given: about one megapixel.
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
MIN_SIDE, MAX_SIDE = 64, 2048


class ImageSize(Struct):
    width: int = 512
    height: int = 512


class _Common(Struct, kw_only=True):
    """The fields every Flux endpoint takes, as fal documents them."""

    prompt: Prompt
    seed: Seed | None = None
    guidance_scale: Annotated[float, Meta(ge=0, le=20)] = 3.5
    sync_mode: bool = False
    num_images: Annotated[int, Meta(ge=1, le=4)] = 1
    enable_safety_checker: bool = True  # accepted and ignored: see SAFETY_NOTE
    output_format: Literal["jpeg", "png"] = "jpeg"
    # fal's speed levels (families/acceleration.py says which cache each runs). Unset: the model's
    # configured default ([models.NAME] acceleration), itself "none" unless changed.
    acceleration: Level | None = None


class FluxInput(_Common, kw_only=True):
    image_size: str | ImageSize | None = None
    aspect_ratio: str | None = None
    num_inference_steps: Annotated[int, Meta(ge=1, le=50)] = 28


class SchnellInput(FluxInput, kw_only=True):
    num_inference_steps: Annotated[int, Meta(ge=1, le=12)] = 4


class ImageToImageInput(_Common, kw_only=True):
    image_url: str
    strength: Annotated[float, Meta(ge=0.01, le=1.0)] = 0.95
    num_inference_steps: Annotated[int, Meta(ge=1, le=50)] = 40


class Timings(Struct):
    inference: float
    # What ran (fal's timings is an open object): the acceleration level, and in how many denoising
    # passes the transformer's attention really ran, out of how many a plain run makes. MagCache skips
    # whole passes; TaylorSeer predicts attention outputs but still runs the feed-forward layers.
    acceleration: str = "none"
    attention_passes: int = 0
    attention_passes_plain: int = 0


class FluxOutput(Struct):
    images: list[Image]
    timings: Timings
    seed: int
    has_nsfw_concepts: list[bool]
    prompt: str


# -- sizes ------------------------------------------------------------------------------------

def output_size(image_size: str | ImageSize | None, aspect_ratio: str | None) -> tuple[int, int]:
    """(width, height) from image_size, else aspect_ratio, else fal's default landscape_4_3."""
    if isinstance(image_size, str):
        if image_size not in PRESETS:
            raise InputError("image_size", f"Unknown image_size preset '{image_size}'; use one of "
                             f"{', '.join(PRESETS)} or {{width, height}}", "enum")
        return PRESETS[image_size]
    if isinstance(image_size, ImageSize):
        return _checked_side(image_size.width, ["image_size", "width"]), \
            _checked_side(image_size.height, ["image_size", "height"])
    if aspect_ratio is not None:
        if aspect_ratio not in ASPECT_RATIOS:
            raise InputError("aspect_ratio", f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}", "enum")
        across, down = (int(part) for part in aspect_ratio.split(":"))
        width = math.sqrt(1024 * 1024 * across / down)
        return _round16(width), _round16(width * down / across)
    return PRESETS["landscape_4_3"]


def _checked_side(value: int, loc: list[str | int]) -> int:
    rounded = _round16(value)
    if not MIN_SIDE <= rounded <= MAX_SIDE:
        raise InputError(loc, f"must be between {MIN_SIDE} and {MAX_SIDE} pixels (rounded to a multiple "
                         f"of 16), got {value}", "value_error")
    return rounded


def _round16(value: float) -> int:
    return max(16, int(value / 16 + 0.5) * 16)  # half rounds up: 200 -> 208


def fit_input_image(width: int, height: int) -> tuple[int, int]:
    """Image-to-image keeps the input's shape: scaled into [64, 2048] per side, multiples of 16."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    scale = max(scale, MIN_SIDE / min(width, height))
    return (min(MAX_SIDE, max(MIN_SIDE, _round16(width * scale))),
            min(MAX_SIDE, max(MIN_SIDE, _round16(height * scale))))


# -- running ------------------------------------------------------------------------------------

def text_to_image(ctx: Context, args: FluxInput) -> FluxOutput:
    width, height = output_size(args.image_size, args.aspect_ratio)
    seed = pick_seed(args.seed)
    level = _level(ctx, args)
    with ctx.lease() as model:
        pipe = model.pipeline
        ctx.log(f"{width}x{height}, {args.num_inference_steps} steps, seed {seed}")
        started = time.perf_counter()
        with accelerated(pipe.transformer, level, args.num_inference_steps) as ran:
            images = pipe(
                prompt=args.prompt, width=width, height=height, num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale, num_images_per_prompt=args.num_images,
                generator=seeded_generator(seed),
                max_sequence_length=_max_sequence_length(pipe, 256 if isinstance(args, SchnellInput) else 512),
                callback_on_step_end=step_reporter(ctx, args.num_inference_steps),
            ).images
        inference = time.perf_counter() - started
        model.hold_cache_bytes(ran.cache_bytes)  # the swapper counts what the cache held with the model
    return _output(ctx, images, args, seed, inference, _report(ctx, ran, args.num_inference_steps))


def validate_text_to_image(args: FluxInput, model: Any) -> None:
    """At submit: the size asked for is one Flux can make."""
    output_size(args.image_size, args.aspect_ratio)


def validate_image_to_image(args: ImageToImageInput, model: Any) -> None:
    """At submit (and again in the job): the strength leaves at least one step to run."""
    if int(args.num_inference_steps * args.strength) < 1:
        raise InputError("strength", "strength × num_inference_steps must be at least 1 step")


def image_to_image(ctx: Context, args: ImageToImageInput) -> FluxOutput:
    validate_image_to_image(args, None)
    from diffusers import FluxImg2ImgPipeline

    from thorgen.media.pixels import open_image
    from thorgen.media.probe import MediaError

    source_path = ctx.resolve(args.image_url, "image_url")
    try:
        source = open_image(source_path, ctx.config.limits.max_image_pixels)
    except MediaError as exc:
        raise InputError("image_url", f"The file at image_url is not usable: {exc}", exc.kind) from None
    width, height = fit_input_image(*source.size)
    source = source.resize((width, height))
    seed = pick_seed(args.seed)
    steps = int(args.num_inference_steps * args.strength)
    level = _level(ctx, args)
    with ctx.lease() as model:
        pipe = model.derived(FluxImg2ImgPipeline)
        ctx.log(f"{width}x{height}, strength {args.strength}: {steps} of {args.num_inference_steps} steps, "
                f"seed {seed}")
        started = time.perf_counter()
        with accelerated(pipe.transformer, level, steps) as ran:
            images = pipe(
                prompt=args.prompt, image=source, strength=args.strength, width=width, height=height,
                num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                num_images_per_prompt=args.num_images, generator=seeded_generator(seed),
                max_sequence_length=_max_sequence_length(pipe, 512),
                callback_on_step_end=step_reporter(ctx, steps),
            ).images
        inference = time.perf_counter() - started
        model.hold_cache_bytes(ran.cache_bytes)  # the swapper counts what the cache held with the model
    return _output(ctx, images, args, seed, inference, _report(ctx, ran, steps))


def _level(ctx: Context, args: _Common) -> Level:
    """The request's acceleration, else the model's configured default."""
    if args.acceleration is not None:
        return args.acceleration
    return ctx.config.model(ctx.model).acceleration if ctx.model else "none"


def _report(ctx: Context, ran: Accelerated, steps: int) -> Timings:
    """Log and return what ran: the level, its method, the passes whose attention really ran."""
    ctx.log(f"acceleration {ran.level}: {ran.method}; attention computed in {ran.computed} of {steps} passes")
    return Timings(inference=0.0, acceleration=ran.level, attention_passes=ran.computed,
                   attention_passes_plain=steps)


def _max_sequence_length(pipe: Any, limit: int) -> int:
    """T5 tokens: dev takes 512, schnell was trained on 256; a smaller tokenizer (the tiny one) caps it."""
    return int(min(limit, getattr(pipe.tokenizer_2, "model_max_length", limit)))


def _output(ctx: Context, images: list[Any], args: _Common, seed: int,
            inference: float, timings: Timings) -> FluxOutput:
    ext = "jpg" if args.output_format == "jpeg" else "png"
    # fal names inline (sync_mode) images image-N; stored ones keep their key as the name.
    stored = [store_image(ctx, image, args.output_format, sync_mode=args.sync_mode,
                          file_name=f"image-{index}.{ext}" if args.sync_mode else None)
              for index, image in enumerate(images)]
    return FluxOutput(images=stored, timings=msgspec.structs.replace(timings, inference=round(inference, 4)), seed=seed,
                      has_nsfw_concepts=[False] * len(images), prompt=args.prompt)


ENDPOINTS = [
    Endpoint("fal-ai/flux/dev", FluxInput, FluxOutput, text_to_image, "gpu",
             "FLUX.1 [dev] text-to-image", model="flux-dev", validate=validate_text_to_image),
    Endpoint("fal-ai/flux/schnell", SchnellInput, FluxOutput, text_to_image, "gpu",
             "FLUX.1 [schnell] text-to-image (few steps)", model="flux-schnell", validate=validate_text_to_image),
    Endpoint("fal-ai/flux/dev/image-to-image", ImageToImageInput, FluxOutput, image_to_image, "gpu",
             "FLUX.1 [dev] image-to-image", model="flux-dev", validate=validate_image_to_image),
]

# The editor's other image models, answered by flux/dev unless config.toml's [aliases] says otherwise.
ALIASES = {
    "fal-ai/flux-pro/v1.1-ultra": "fal-ai/flux/dev",
    "fal-ai/stable-diffusion-v35-large": "fal-ai/flux/dev",
}

CATALOG = {
    "flux-dev": CatalogEntry(
        config={"family": "flux", "path": "flux-dev", "source": "black-forest-labs/FLUX.1-dev",
                "pipeline": "FluxPipeline", "dtype": "bfloat16"},
        licence="FLUX.1 [dev] Non-Commercial License",
        gated=True,
        approx_bytes=33_700_000_000,
    ),
    "flux-schnell": CatalogEntry(
        config={"family": "flux", "path": "flux-schnell", "source": "black-forest-labs/FLUX.1-schnell",
                "pipeline": "FluxPipeline", "dtype": "bfloat16"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=33_700_000_000,
    ),
}


# -- tiny ------------------------------------------------------------------------------------------

def build_tiny() -> Any:
    """FluxPipeline with Flux's real structure: 16 latent channels, 8x VAE, CLIP + T5 encoders."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from thorgen.models.tiny import clip_tokenizer, t5_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    tokenizer_2 = t5_tokenizer(max_length=64)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
        latent_channels=16, norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.1159, scaling_factor=0.3611)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096, shift=3.0)
    modules: list[Any] = [transformer, vae, text_encoder, text_encoder_2]
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def warm_up(name: str, tiny: bool) -> dict[str, Any]:
    """compile's warm-up run: fal's default image_size (landscape_4_3, 1024x768), or in tiny mode the
    size the tests ask for. The T5 length is the endpoint's (schnell 256, dev 512; the tiny tokenizer
    64): it is part of the blocks' input shape too."""
    width, height = (128, 128) if tiny else (1024, 768)
    tokens = 64 if tiny else 256 if "schnell" in name else 512
    return {"prompt": "warm-up", "width": width, "height": height, "num_inference_steps": 2,
            "max_sequence_length": tokens}


FAMILY = Family(
    name="flux",
    title="Flux",
    endpoints=ENDPOINTS,
    aliases=ALIASES,
    catalog=CATALOG,
    warm_up=warm_up,
    tiny={ANY_PIPELINE: build_tiny},
    safety_note=lambda config: SAFETY_NOTE,
)
