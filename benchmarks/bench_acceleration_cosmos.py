"""Cosmos `acceleration` levels on a medium random-weight Cosmos Predict2.5 transformer, on the CPU.

The pipeline is thorgen's tiny Cosmos Predict2.5 (tiny Qwen2.5-VL text encoder and Wan VAE) with a
medium transformer built here (6 blocks, 8 heads of 32), making a 9-frame 256x256 clip in 24 steps
with guidance (two transformer passes a step), final latents only. Diffusers' Cosmos transformer has
no CacheMixin, so thorgen puts TaylorSeer on directly (endpoints/acceleration.py
``_accelerated_directly``): "regular" predicts the attention layers, "high" whole blocks, each with a
full pass on the first 3 steps and every 5th after. Both are fixed schedules, so the speed measured
on random weights transfers; the deviation is what random weights show, an upper-bound-ish guide.

Each ratio is the variant's time over a plain run right beside it (pairs in alternating order),
medians over the rounds. The yardstick: plain with fewer steps doing the same linear-layer work as
the cache did; a cache is worth having only if it deviates from plain less than that.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_acceleration_cosmos.py [--rounds 3] [--size 256]
Last line:  cosmos_acceleration: regular=<ratio> high=<ratio>
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch
from bench_acceleration import deviation, linear_work, load_now, pair_ratio

SIZE, FRAMES, STEPS, PROMPT, SEED = 256, 9, 24, "a robot arm welding", 1234


def build() -> Any:
    from diffusers import Cosmos2_5_PredictBasePipeline, CosmosTransformer3DModel

    from thorgen.families.cosmos import pipeline as cosmos

    cosmos.install_torchvision_stand_ins()
    tiny = cosmos.build_cosmos2_5()
    torch.manual_seed(0)
    transformer = CosmosTransformer3DModel(
        in_channels=17, out_channels=16, num_attention_heads=8, attention_head_dim=32, num_layers=6, mlp_ratio=4,
        text_embed_dim=tiny.transformer.config.text_embed_dim, adaln_lora_dim=64, max_size=(8, 64, 64),
        patch_size=(1, 2, 2), rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=True, extra_pos_embed_type="learnable")
    pipe = Cosmos2_5_PredictBasePipeline(**{**tiny.components, "transformer": transformer.eval()})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def latents(pipe: Any, steps: int = STEPS) -> torch.Tensor:
    with torch.inference_mode():
        out = pipe(prompt=PROMPT, height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=steps,
                   generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent")
    return out.frames.float()


def with_level(pipe: Any, level: str) -> Callable[[], torch.Tensor]:
    from thorgen.families.acceleration import accelerated

    def call() -> torch.Tensor:
        with accelerated(pipe.transformer, level, STEPS) as ran:  # type: ignore[arg-type]
            result = latents(pipe)
        call.computed = ran.computed  # type: ignore[attr-defined]
        call.cache_bytes = ran.cache_bytes  # type: ignore[attr-defined]
        return result

    return call


def main() -> None:
    global SIZE
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=SIZE, help="clip side in pixels, a multiple of 16")
    args = parser.parse_args()
    SIZE = args.size
    torch.set_grad_enabled(False)
    pipe = build()
    params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"medium Cosmos transformer: {params / 1e6:.0f} M parameters; {FRAMES} frames {SIZE}x{SIZE}, {STEPS} "
          f"steps with guidance; {load_now()}")
    plain = lambda: latents(pipe)  # noqa: E731
    reference, plain_work = linear_work(pipe, plain)
    levels = {level: with_level(pipe, level) for level in ("regular", "high")}
    variants: dict[str, Callable[[], torch.Tensor]] = dict(levels)
    deviations: dict[str, float] = {}
    for level, call in levels.items():
        out, work = linear_work(pipe, call)
        deviations[level] = deviation(out, reference)
        fewer = max(1, round(STEPS * work / plain_work))
        name = f"plain {fewer} steps"
        variants[name] = lambda fewer=fewer: latents(pipe, fewer)
        deviations[name] = deviation(latents(pipe, fewer), reference)
        print(f"{level}: {call.computed} of {2 * STEPS} attention passes computed, linear work "  # type: ignore[attr-defined]
              f"{work / plain_work:.2f} of plain, cache held at most {call.cache_bytes / 1024**2:.1f} MiB "  # type: ignore[attr-defined]
              f"during the job; yardstick: {name}")
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, variant in variants.items():
            ratios[name].append(pair_ratio(plain, variant, plain_first=round_index % 2 == 0))
    for name in variants:
        print(f"{name:>16}: time ratio {statistics.median(ratios[name]):.2f} (median of {args.rounds} pairs), "
              f"deviation from plain {deviations[name]:.4f}")
    print(f"cosmos_acceleration: regular={statistics.median(ratios['regular']):.2f} "
          f"high={statistics.median(ratios['high']):.2f}")


if __name__ == "__main__":
    main()
