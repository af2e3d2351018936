"""Stable Audio Open 1.0's full-size architecture with random fp16 weights on a CUDA GPU: seconds and
peak memory for 30 s of audio at 100 steps. No download: every component is built from the published
configuration (diffusers' defaults for StableAudioDiTModel and AutoencoderOobleck are Open 1.0's; the
text encoder is T5-base) and filled with random weights, so the numbers are the real model's compute
and memory, and the audio is noise.

Run on a GPU box:  .venv/bin/python benchmarks/bench_audio_gpu.py [--seconds 30] [--steps 100] [--runs 2]
Check the build on any machine (meta device, no memory):  ... bench_audio_gpu.py --count-only
"""

from __future__ import annotations

import argparse
import time

import torch

DIT = dict(sample_size=1024, in_channels=64, num_layers=24, attention_head_dim=64, num_attention_heads=24,
           num_key_value_attention_heads=12, out_channels=64, cross_attention_dim=768, time_proj_dim=256,
           global_states_input_dim=1536, cross_attention_input_dim=768)
VAE = dict(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 8, 8], channel_multiples=[1, 2, 4, 8, 16],
           decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=44100)
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
               relative_attention_num_buckets=32, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1)
PROJECTION = dict(text_encoder_dim=768, conditioning_dim=768, min_value=0, max_value=512)


def build(device: str, dtype: torch.dtype):
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    from thorgen.models.tiny import t5_tokenizer

    tokenizer = t5_tokenizer(max_length=128)  # a small vocabulary whose ids all fall inside T5's embeddings
    with torch.device(device):
        transformer = StableAudioDiTModel(**DIT).to(dtype)
        vae = AutoencoderOobleck(**VAE).to(dtype)
        text_encoder = T5EncoderModel(T5Config(**T5_BASE)).to(dtype)
        projection_model = StableAudioProjectionModel(**PROJECTION).to(dtype)
    scheduler = CosineDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500, sigma_data=1.0,
                                                  sigma_schedule="exponential", prediction_type="v_prediction",
                                                  solver_order=2)
    modules: list = [transformer, vae, text_encoder, projection_model]
    for module in modules:
        module.eval()
    return StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection_model,
                               tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)


def count(pipe) -> None:
    total = 0
    for name in ("transformer", "vae", "text_encoder", "projection_model"):
        params = sum(p.numel() for p in getattr(pipe, name).parameters())
        total += params
        print(f"{name:17} {params / 1e6:8.1f} M parameters, {params * 2 / 1e9:5.2f} GB in fp16")
    window = DIT["sample_size"] * pipe.vae.hop_length / VAE["sampling_rate"]
    print(f"total {total / 1e9:.2f} B parameters; longest audio {window:.2f} s")


def timed(pipe, seconds: float, steps: int, runs: int) -> list[float]:
    took = []
    for run in range(runs + 1):  # the first call warms up and is not counted
        torch.cuda.synchronize()
        started = time.perf_counter()
        audio = pipe(prompt="128 BPM tech house drum loop", negative_prompt="Low quality.", audio_end_in_s=seconds,
                     num_inference_steps=steps, guidance_scale=7.0,
                     generator=torch.Generator("cpu").manual_seed(run)).audios[0]
        audio.float().cpu().numpy()  # what the endpoint does next (gotcha G6)
        torch.cuda.synchronize()
        if run:
            took.append(time.perf_counter() - started)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--count-only", action="store_true", help="build on the meta device and count")
    args = parser.parse_args()
    if args.count_only:
        count(build("meta", torch.float16))
        return
    assert torch.cuda.is_available(), "needs a CUDA GPU (use --count-only elsewhere)"
    torch.manual_seed(0)
    started = time.perf_counter()
    pipe = build("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)
    print(f"built on {torch.cuda.get_device_name(0)} in {time.perf_counter() - started:.1f} s; "
          f"weights {torch.cuda.memory_allocated() / 1024**3:.2f} GiB")
    count(pipe)
    torch.cuda.reset_peak_memory_stats()
    took = timed(pipe, args.seconds, args.steps, args.runs)
    peak = torch.cuda.max_memory_allocated() / 1024**3
    print(f"{args.seconds:g} s of audio, {args.steps} steps: {min(took):.2f} s "
          f"({min(took) / args.steps * 1000:.0f} ms/step, {args.seconds / min(took):.1f}x real time); "
          f"peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
