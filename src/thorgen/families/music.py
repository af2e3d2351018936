"""Music with Stable Audio Open (diffusers StableAudioPipeline): fal's stable-audio and minimax-music.

Both ids run the same model. Stable Audio conditions on a start and an end time and always denoises
its full window (47.55 s for Open 1.0, ≈1.49 s for the tiny model), then the waveform is cut to
``[seconds_start, seconds_total]``: so a file is ``seconds_total - seconds_start`` seconds long,
exactly (samples ÷ sample rate), and asking for more than the loaded model's window is a 422.

minimax-music has no length field in fal's schema. thorgen makes ``seconds_total`` seconds when the
request has it (the editor sends 30 with every job), else 30 s, and cuts a longer request down to
the model's window (logged) instead of refusing it. Its ``reference_audio_url`` (a track to follow)
has no counterpart in Stable Audio: it is ignored, and the job's logs say so.

``make_music`` is the plain function other families call for music.

fal-ai/mmaudio-v2 (fal: sound made for a video) is answered honestly with what thorgen has: Stable
Audio music, from the prompt, as long as the clip (or as long as the model makes, then silence),
put under the video as its only sound. It does not look at the pictures; the job's log says so.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from msgspec import Meta, Struct

from thorgen.errors import InputError
from thorgen.families.base import (
    ANY_PIPELINE,
    AudioFile,
    CatalogEntry,
    Context,
    Endpoint,
    Family,
    File,
    Prompt,
    Seed,
    store_audio,
)
from thorgen.families.diffusion import pick_seed, seeded_generator
from thorgen.models.info import ModelInfo

DEFAULT_SECONDS = 30.0  # fal's stable-audio default, and what the editor sends


class _MusicInput(Struct, kw_only=True):
    """Fields both ids take; all but ``prompt`` are thorgen extras for minimax-music."""

    prompt: Prompt
    steps: Annotated[int, Meta(ge=1, le=1000)] = 100
    negative_prompt: Annotated[str, Meta(max_length=10_000)] = ""
    guidance_scale: Annotated[float, Meta(ge=0, le=30)] = 7.0
    seed: Seed | None = None
    output_format: Literal["wav", "mp3"] = "wav"


class StableAudioInput(_MusicInput, kw_only=True):
    seconds_start: Annotated[float, Meta(ge=0)] = 0.0
    seconds_total: Annotated[float, Meta(gt=0)] = DEFAULT_SECONDS


class MinimaxMusicInput(_MusicInput, kw_only=True):
    reference_audio_url: str | None = None  # accepted and ignored (see the module docstring)
    seconds_total: Annotated[float, Meta(gt=0)] | None = None


class StableAudioOutput(Struct):
    audio_file: File


class MinimaxMusicOutput(Struct):
    audio: AudioFile


# -- the model -------------------------------------------------------------------------------------

def longest_seconds(pipe: Any) -> float:
    """The window the loaded model denoises: DiT latent length × VAE hop ÷ sample rate."""
    return float(pipe.transformer.config.sample_size * pipe.vae.hop_length / pipe.vae.config.sampling_rate)


def window_from_config(model: ModelInfo | None) -> float | None:
    """The same window from the installed model's config files, before it is loaded (None if unknown).

    The VAE's hop is the product of its downsampling ratios (as AutoencoderOobleck computes it).
    """
    if model is None:
        return None
    transformer, vae = model.component_config("transformer"), model.component_config("vae")
    if transformer is None or vae is None:
        return None
    try:
        return float(transformer["sample_size"] * math.prod(vae["downsampling_ratios"]) / vae["sampling_rate"])
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def check_length(seconds_start: float, seconds_total: float, longest: float | None, model_name: str,
                 field: str = "seconds_total") -> None:
    """A 422 for a length the model cannot make: past its window, or ending before it starts."""
    if longest is not None and seconds_total > longest:
        raise InputError(field, f"must be at most {longest:.2f} seconds: the longest audio the model "
                         f"'{model_name}' makes", "less_than_equal")
    if seconds_start >= seconds_total:
        raise InputError("seconds_start", f"must be less than the end of the audio ({seconds_total:g} s)",
                         "less_than")


def make_music(ctx: Context, prompt: str, seconds: float, steps: int, seed: int | None,
               negative_prompt: str = "", *, guidance_scale: float = 7.0, seconds_start: float = 0.0,
               too_long: Literal["reject", "cap"] = "reject", field: str = "seconds_total",
               model: str | None = None) -> tuple[np.ndarray, int]:
    """Music ending at ``seconds`` (from ``seconds_start``): ((channels, samples) float32, sample rate).

    Leases the Stable Audio model (``model``, else the job's own), reports each denoising step (and
    stops there on cancel). A length past the model's window is a 422 naming ``field``, or with
    ``too_long="cap"`` is cut to the window and logged.
    """
    seed = pick_seed(seed)
    with ctx.lease(model) as lease:
        pipe = lease.pipeline
        longest = longest_seconds(pipe)
        if seconds > longest and too_long == "cap":
            ctx.log(f"{seconds:g} s asked for; the model '{lease.name}' makes at most {longest:.2f} s, "
                    f"so the audio is {longest:.2f} s long", "WARNING")
            seconds = longest
        check_length(seconds_start, seconds, longest, lease.name, field)  # also checked at submit
        ctx.log(f"{seconds - seconds_start:g} s of audio, {steps} steps, seed {seed}")
        audios = pipe(
            prompt=prompt, negative_prompt=negative_prompt or None, audio_start_in_s=seconds_start,
            audio_end_in_s=seconds, num_inference_steps=steps, guidance_scale=guidance_scale,
            generator=seeded_generator(seed), callback=_step_reporter(ctx, steps), output_type="pt",
        ).audios
        # bf16/fp16 tensors first become float32: numpy has no bfloat16 (model-stack.md G6).
        samples = audios[0].float().cpu().numpy()
        return samples, int(pipe.vae.config.sampling_rate)


def _step_reporter(ctx: Context, total: int) -> Any:
    def on_step(step: int, timestep: Any, latents: Any) -> None:
        ctx.step(step + 1, total, "denoising step")

    return on_step


# -- the endpoints ---------------------------------------------------------------------------------

def validate_stable_audio(args: StableAudioInput, model: ModelInfo | None) -> None:
    """At submit: the window comes from the installed model's config (unknown until it is on disk)."""
    check_length(args.seconds_start, args.seconds_total, window_from_config(model),
                 model.name if model else "stable-audio-open")


def stable_audio(ctx: Context, args: StableAudioInput) -> StableAudioOutput:
    samples, rate = make_music(ctx, args.prompt, args.seconds_total, args.steps, args.seed, args.negative_prompt,
                               guidance_scale=args.guidance_scale, seconds_start=args.seconds_start)
    stored = store_audio(ctx, samples, rate, args.output_format)
    return StableAudioOutput(audio_file=File(stored.url, stored.content_type, stored.file_name, stored.file_size))


def minimax_music(ctx: Context, args: MinimaxMusicInput) -> MinimaxMusicOutput:
    if args.reference_audio_url:
        ctx.log("reference_audio_url is ignored: Stable Audio cannot follow a reference track", "WARNING")
    seconds = args.seconds_total if args.seconds_total is not None else DEFAULT_SECONDS
    samples, rate = make_music(ctx, args.prompt, seconds, args.steps, args.seed, args.negative_prompt,
                               guidance_scale=args.guidance_scale, too_long="cap")
    return MinimaxMusicOutput(audio=store_audio(ctx, samples, rate, args.output_format))


class VideoSoundInput(Struct, kw_only=True):
    """fal's mmaudio-v2 fields. ``duration`` is ignored (the clip sets the length), and ``cfg_strength``
    too (Stable Audio's guidance scale differs): thorgen uses its own ``guidance_scale``."""

    video_url: str
    prompt: Annotated[str, Meta(max_length=10_000)] = ""
    negative_prompt: Annotated[str, Meta(max_length=10_000)] = ""
    seed: Seed | None = None
    num_steps: Annotated[int, Meta(ge=1, le=1000)] = 25
    guidance_scale: Annotated[float, Meta(ge=0, le=20)] = 7.0


class VideoWithSound(File):
    width: int
    height: int
    duration: float


class VideoSoundOutput(Struct):
    video: VideoWithSound  # only the video: the editor takes any other media key as the result


def video_sound(ctx: Context, args: VideoSoundInput) -> VideoSoundOutput:
    from thorgen.media.probe import MediaError, probe
    from thorgen.media.video import with_audio

    source = ctx.resolve(args.video_url, "video_url")
    try:
        found = probe(source)
    except MediaError:
        found = {"media_type": "unreadable"}
    if found["media_type"] != "video":
        raise InputError("video_url", "The file at video_url is not a video thorgen can read")
    seconds = float(found["duration"])
    ctx.log("mmaudio: thorgen adds Stable Audio music from the prompt; it does not look at the video's pictures",
            "WARNING")
    samples, rate = make_music(ctx, args.prompt or "ambient soundtrack", seconds, args.num_steps, args.seed,
                               args.negative_prompt, guidance_scale=args.guidance_scale, too_long="cap",
                               field="video_url")
    wanted = round(seconds * rate)
    if samples.shape[1] < wanted:  # the model's window is shorter than the clip: silence after it
        samples = np.pad(samples, ((0, 0), (0, wanted - samples.shape[1])))
    key, path = ctx.new_output("mp4")
    width, height, duration = with_audio(source, samples[:, :wanted], rate, path)
    return VideoSoundOutput(video=VideoWithSound(**ctx.file(key, "output.mp4"), width=width, height=height,
                                                 duration=round(duration, 6)))


ENDPOINTS = [
    Endpoint("fal-ai/stable-audio", StableAudioInput, StableAudioOutput, stable_audio, "gpu",
             "Stable Audio Open text-to-music", model="stable-audio-open", validate=validate_stable_audio),
    Endpoint("fal-ai/minimax-music", MinimaxMusicInput, MinimaxMusicOutput, minimax_music, "gpu",
             "Music (the editor's default music model), made by Stable Audio Open", model="stable-audio-open"),
    Endpoint("fal-ai/mmaudio-v2", VideoSoundInput, VideoSoundOutput, video_sound, "gpu",
             "Sound for a video: Stable Audio music from the prompt, as long as the clip, muxed under it",
             model="stable-audio-open"),
]

# The editor appends /image-to-video to any video-tab id when an image is set.
ALIASES = {"fal-ai/mmaudio-v2/image-to-video": "fal-ai/mmaudio-v2"}

CATALOG = {
    "stable-audio-open": CatalogEntry(
        config={"family": "stable-audio", "path": "stable-audio-open", "source": "stabilityai/stable-audio-open-1.0",
                "pipeline": "StableAudioPipeline", "dtype": "float16"},
        licence="Stability AI Community License",
        gated=True,
        approx_bytes=2_420_000_000,
    ),
}


# -- tiny: model-stack.md §3, the real component classes at toy widths, a 2048-sample hop and a
# 1024-latent DiT, so the longest clip it makes is 1024 × 2048 / 44100 ≈ 47.55 s of 44.1 kHz stereo,
# as long as Stable Audio Open 1.0's.

def build_tiny() -> Any:
    """StableAudioPipeline with the real structure (Oobleck VAE, T5, projection, DiT, cosine DPM)."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    from thorgen.models.tiny import t5_tokenizer

    torch.manual_seed(0)
    tokenizer = t5_tokenizer(max_length=64)  # the pipeline pads to model_max_length (gotcha G4)
    # The window is sample_size latents × the VAE's hop (the product of its downsampling ratios) ÷
    # the sample rate: 1024 × (4·8·8·8 = 2048) ÷ 44100 = 47.55 s, Stable Audio Open 1.0's own window
    # (1024 latents × hop 2048), so tiny mode takes every length the real model takes (the editor
    # always sends seconds_total 30). The pipeline decodes the whole window (2.1 M samples) every
    # time: 2 channels in the VAE's last stage keep that about 1 s on one CPU core (8 took 10 s).
    transformer = StableAudioDiTModel(
        sample_size=1024, in_channels=8, out_channels=8, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, num_key_value_attention_heads=1, cross_attention_dim=16, time_proj_dim=16,
        global_states_input_dim=32, cross_attention_input_dim=16)
    vae = AutoencoderOobleck(
        encoder_hidden_size=8, downsampling_ratios=[4, 8, 8, 8], channel_multiples=[1, 2, 4, 4], decoder_channels=2,
        decoder_input_channels=8, audio_channels=2, sampling_rate=44100)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))
    projection_model = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=16, min_value=0,
                                                  max_value=512)
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3, sigma_max=500, sigma_data=1.0, sigma_schedule="exponential",
        prediction_type="v_prediction", solver_order=2)
    modules: list[Any] = [transformer, vae, text_encoder, projection_model]
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat
    return StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection_model,
                               tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)


FAMILY = Family(
    name="stable-audio",
    title="Stable Audio",
    endpoints=ENDPOINTS,
    aliases=ALIASES,
    catalog=CATALOG,
    tiny={ANY_PIPELINE: build_tiny},
)
