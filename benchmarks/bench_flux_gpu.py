"""FLUX.1-dev's full-size architecture with random bf16 weights on a CUDA GPU: seconds per image and
peak memory at 1024x1024, 28 steps, plain and with torch.compile. No download: every component is
built from FLUX.1-dev's published configuration and filled with random weights, so the numbers are
the real model's compute and memory, and the pictures are noise.

Run on a GPU box:  .venv/bin/python benchmarks/bench_flux_gpu.py [--steps 28] [--size 1024] [--runs 2]
Check the build on any machine (meta device, no memory):  ... bench_flux_gpu.py --count-only
"""

from __future__ import annotations

import argparse
import time

import torch

# FLUX.1-dev's component configurations (diffusers layout, model_index.json and each config.json).
TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                   num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                   guidance_embeds=True, axes_dims_rope=[16, 56, 56])
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
           latent_channels=16, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
           shift_factor=0.1159, scaling_factor=0.3611, sample_size=1024)


def build(device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from thorgen.models.tiny import clip_tokenizer, t5_tokenizer

    tokenizer = clip_tokenizer()  # small vocabularies whose ids all fall inside the real embeddings
    tokenizer_2 = t5_tokenizer(max_length=512)
    with torch.device(device):
        transformer = FluxTransformer2DModel(**TRANSFORMER).to(dtype)
        text_encoder_2 = T5EncoderModel(T5Config(**T5_XXL)).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L, bos_token_id=tokenizer.bos_token_id,
                                                    eos_token_id=tokenizer.eos_token_id)).to(dtype)
        vae = AutoencoderKL(**VAE).to(dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
    for module in (transformer, text_encoder, text_encoder_2, vae):
        module.eval()
    return pipe


def count(pipe) -> None:
    for name in ("transformer", "text_encoder_2", "text_encoder", "vae"):
        params = sum(p.numel() for p in getattr(pipe, name).parameters())
        print(f"{name:15} {params / 1e9:6.2f} B parameters, {params * 2 / 1e9:6.2f} GB in bf16")


def timed(pipe, size: int, steps: int, runs: int) -> list[float]:
    seconds = []
    for run in range(runs + 1):  # the first call warms up (and compiles) and is not counted
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(prompt="a lighthouse at dusk", width=size, height=size, num_inference_steps=steps,
             guidance_scale=3.5, generator=torch.Generator("cpu").manual_seed(run), max_sequence_length=512)
        torch.cuda.synchronize()
        if run:
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--count-only", action="store_true", help="build on the meta device and count")
    args = parser.parse_args()
    if args.count_only:
        count(build("meta", torch.bfloat16))
        return
    assert torch.cuda.is_available(), "needs a CUDA GPU (use --count-only elsewhere)"
    torch.manual_seed(0)
    started = time.perf_counter()
    pipe = build("cuda", torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    print(f"built on {torch.cuda.get_device_name(0)} in {time.perf_counter() - started:.1f} s; "
          f"weights {torch.cuda.memory_allocated() / 1024**3:.1f} GiB")
    count(pipe)
    torch.cuda.reset_peak_memory_stats()
    plain = timed(pipe, args.size, args.steps, args.runs)
    peak = torch.cuda.max_memory_allocated() / 1024**3
    print(f"plain:    {min(plain):.2f} s per {args.size}² image, {args.steps} steps "
          f"({min(plain) / args.steps * 1000:.0f} ms/step); peak {peak:.1f} GiB")
    pipe.transformer = torch.compile(pipe.transformer, fullgraph=False)
    torch.cuda.reset_peak_memory_stats()
    compiled = timed(pipe, args.size, args.steps, args.runs)
    peak = torch.cuda.max_memory_allocated() / 1024**3
    print(f"compiled: {min(compiled):.2f} s per image; peak {peak:.1f} GiB; "
          f"compiled ÷ plain = {min(compiled) / min(plain):.2f}")


if __name__ == "__main__":
    main()
