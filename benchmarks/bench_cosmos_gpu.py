"""Cosmos Predict2.5 2B's full-size architecture with random bf16 weights on a CUDA GPU: seconds per
clip and peak memory at 480p and 720p, 93 frames, through the same diffusers pipeline thorgen runs.

No download: every component is built from the published configurations (the 2B DiT with its
cross-attention projection from 28 x 3584 features, Cosmos-Reason1-7B's Qwen2.5-VL-7B text encoder,
the Wan 2.1 VAE) and filled with random weights, so the numbers are the real model's compute and
memory and the clips are noise. The configurations are written below; check them against the
model repository's config.json files when you have them.

Run on a GPU box:  .venv/bin/python benchmarks/bench_cosmos_gpu.py [--steps 35] [--frames 93] [--runs 1]
Check the build on any machine (meta device, no memory):  ... bench_cosmos_gpu.py --count-only
"""

from __future__ import annotations

import argparse
import time

import torch

TRANSFORMER = dict(in_channels=17, out_channels=16, num_attention_heads=16, attention_head_dim=128, num_layers=28,
                   mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240),
                   patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True,
                   extra_pos_embed_type=None, use_crossattn_projection=True, crossattn_proj_in_channels=100352,
                   encoder_hidden_states_channels=1024)
QWEN_TEXT = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, rope_theta=1000000.0,
                 rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default"})
QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584)
VAE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])
SIZES = {"480p": (832, 480), "720p": (1280, 704)}


def build(device: str, dtype: torch.dtype):
    from diffusers import (
        AutoencoderKLWan,
        Cosmos2_5_PredictBasePipeline,
        CosmosTransformer3DModel,
        UniPCMultistepScheduler,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from thorgen.families.cosmos.pipeline import passthrough_checker
    from thorgen.models.tiny import qwen2_tokenizer

    tokenizer = qwen2_tokenizer(max_length=512)  # a small vocabulary whose ids fall inside the real embedding
    with torch.device(device):
        transformer = CosmosTransformer3DModel(**TRANSFORMER).to(dtype)
        text_encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=QWEN_TEXT, vision_config=QWEN_VISION)).to(dtype)
        vae = AutoencoderKLWan(**VAE).to(dtype)
    for module in (transformer, text_encoder, vae):
        module.eval()
    return Cosmos2_5_PredictBasePipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                                         vae=vae, scheduler=UniPCMultistepScheduler(),
                                         safety_checker=passthrough_checker())


def count(pipe) -> None:
    for name in ("transformer", "text_encoder", "vae"):
        params = sum(p.numel() for p in getattr(pipe, name).parameters())
        print(f"{name:13} {params / 1e9:6.2f} B parameters, {params * 2 / 1e9:6.2f} GB in bf16")


def timed(pipe, width: int, height: int, frames: int, steps: int, runs: int) -> list[float]:
    seconds = []
    for run in range(runs):
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(prompt="a robot arm welding in a factory", width=width, height=height, num_frames=frames,
             num_inference_steps=steps, guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(run))
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--frames", type=int, default=93)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--resolutions", default="480p,720p")
    parser.add_argument("--count-only", action="store_true", help="build on the meta device and count")
    args = parser.parse_args()
    from thorgen.families.cosmos.pipeline import install_torchvision_stand_ins

    install_torchvision_stand_ins()
    if args.count_only:
        count(build("meta", torch.bfloat16))
        return
    assert torch.cuda.is_available(), "needs a CUDA GPU (use --count-only elsewhere)"
    torch.manual_seed(0)
    started = time.perf_counter()
    pipe = build("cuda", torch.bfloat16)
    pipe.vae.enable_tiling()  # as thorgen loads it
    pipe.set_progress_bar_config(disable=True)
    print(f"built on {torch.cuda.get_device_name(0)} in {time.perf_counter() - started:.1f} s; "
          f"weights {torch.cuda.memory_allocated() / 1024**3:.1f} GiB")
    count(pipe)
    timed(pipe, 256, 256, 9, 2, 1)  # warm-up: kernels, allocator
    for name in args.resolutions.split(","):
        width, height = SIZES[name]
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(pipe, width, height, args.frames, args.steps, args.runs)
        peak = torch.cuda.max_memory_allocated() / 1024**3
        print(f"{name} {width}x{height}, {args.frames} frames, {args.steps} steps: {min(seconds):.1f} s per clip "
              f"({min(seconds) / args.steps:.2f} s/step incl. text encoding and VAE decode); peak {peak:.1f} GiB")


if __name__ == "__main__":
    main()
