"""fal's `acceleration` levels, regional compilation and int8 weights on a medium random-weight Flux, on the CPU.

The pipeline is thorgen's tiny Flux (tiny CLIP/T5 encoders and VAE) with a medium transformer built
here: 4 double and 8 single blocks, 8 heads of 64 (71 M parameters), at 256x256 and 28 steps, a few
seconds per plain image on two cores. Every variant runs the same prompt and seed, in rounds that take
the variants in turn (so all of them see the same machine load); each ratio is the variant's time over
a plain run right beside it (a pair, in alternating order), and the medians over the rounds' pairs
are printed.

- regular / high: the exact cache configurations thorgen's endpoints use (families/acceleration.py).
- fewer steps: plain with the steps that do the same linear-layer work as the cache really did (the
  work is counted, not assumed). A cache is only worth having if it deviates from plain 28 steps
  less than this does.
- compile: diffusers' regional compilation (``compile_repeated_blocks``) of a copy of the transformer;
  its warm-up (the first call, which compiles) is printed, and its output must equal plain's.
- int8_bytes: the transformer's weight bytes after torchao's int8 weight-only quantization, over its
  bytes in bf16 (torchao is an optional extra: ``pip install 'thorgen[torchao]'``).

Deviation is the relative L2 distance of the final latents (before the VAE) from plain 28 steps.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_acceleration.py [--rounds 5] [--no-compile]
Last line:  acceleration: regular=<ratio> high=<ratio> compile=<ratio> int8_bytes=<ratio>
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

MEDIUM = dict(patch_size=1, in_channels=64, num_layers=4, num_single_layers=8, attention_head_dim=64,
              num_attention_heads=8, guidance_embeds=True, axes_dims_rope=[8, 28, 28])
SIZE, STEPS, PROMPT, SEED = 256, 28, "a lighthouse at dusk", 1234


def build() -> Any:
    """thorgen's tiny Flux pipeline with the medium transformer in place of the tiny one."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from thorgen.families.flux import build_tiny as build_flux

    tiny = build_flux()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(**MEDIUM, joint_attention_dim=tiny.transformer.config.joint_attention_dim,
                                         pooled_projection_dim=tiny.transformer.config.pooled_projection_dim)
    components = {**tiny.components, "transformer": transformer.eval()}
    pipe = FluxPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def latents(pipe: Any, steps: int = STEPS) -> torch.Tensor:
    with torch.inference_mode():
        out = pipe(prompt=PROMPT, width=SIZE, height=SIZE, num_inference_steps=steps, guidance_scale=3.5,
                   generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent",
                   max_sequence_length=int(min(512, pipe.tokenizer_2.model_max_length)))
    return out.images.float()


def deviation(result: torch.Tensor, reference: torch.Tensor) -> float:
    return float((result - reference).norm() / reference.norm())


def pair_ratio(plain: Callable[[], Any], variant: Callable[[], Any], *, plain_first: bool) -> float:
    """The variant's time over plain's, the two run back to back in the given order."""
    seconds = {}
    for name, call in (("plain", plain), ("variant", variant)) if plain_first else (
            ("variant", variant), ("plain", plain)):
        started = time.perf_counter()
        call()
        seconds[name] = time.perf_counter() - started
    return seconds["variant"] / seconds["plain"]


def with_level(pipe: Any, level: str) -> tuple[Callable[[], torch.Tensor], list[int]]:
    """A call running the pipeline with an acceleration level; ``computed`` gets each call's passes."""
    from thorgen.families.acceleration import accelerated

    computed: list[int] = []

    def call() -> torch.Tensor:
        with accelerated(pipe.transformer, level, STEPS) as ran:  # type: ignore[arg-type]
            result = latents(pipe)
        computed.append(ran.computed)
        return result

    return call, computed


def linear_work(pipe: Any, call: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """The call's result and the multiply-adds its transformer's linear layers really did."""
    done = [0]

    def count(module: torch.nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        done[0] += module.in_features * module.out_features * inputs[0].shape[:-1].numel()

    handles = [m.register_forward_hook(count) for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
    try:
        return call(), done[0]
    finally:
        for handle in handles:
            handle.remove()


def compiled_pipeline(pipe: Any) -> Any:
    from diffusers import FluxPipeline

    transformer = copy.deepcopy(pipe.transformer)
    transformer.compile_repeated_blocks(fullgraph=True)
    compiled = FluxPipeline(**{**pipe.components, "transformer": transformer})
    compiled.set_progress_bar_config(disable=True)
    return compiled


def int8_bytes_ratio(pipe: Any) -> tuple[float, str]:
    """Weight bytes of the transformer quantized to int8 (weight-only) over its bytes in bf16."""
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        return math.nan, "torchao is not installed (pip install 'thorgen[torchao]')"
    bf16 = copy.deepcopy(pipe.transformer).to(torch.bfloat16)
    before = module_bytes(bf16)
    quantize_(bf16, Int8WeightOnlyConfig())
    return module_bytes(bf16) / before, "torchao Int8WeightOnlyConfig"


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes a module's tensors really hold; a quantized tensor subclass counts its inner tensors."""
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor_bytes(tensor)
    return total


def tensor_bytes(tensor: torch.Tensor) -> int:
    data = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
    if hasattr(data, "__tensor_flatten__") and type(data) is not torch.Tensor:
        names, _ = data.__tensor_flatten__()
        return sum(tensor_bytes(getattr(data, name)) for name in names)
    return data.numel() * data.element_size()


def load_now() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main() -> None:
    global SIZE
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip regional compilation")
    parser.add_argument("--size", type=int, default=SIZE, help="image side (smaller: a quick check only)")
    args = parser.parse_args()
    SIZE = args.size
    torch.set_grad_enabled(False)
    pipe = build()
    params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"medium Flux transformer: {params / 1e6:.0f} M parameters; {SIZE}x{SIZE}, {STEPS} steps; {load_now()}")

    plain = lambda: latents(pipe)  # noqa: E731
    reference, plain_work = linear_work(pipe, plain)
    regular, regular_passes = with_level(pipe, "regular")
    high, high_passes = with_level(pipe, "high")
    (regular_out, regular_work), (high_out, high_work) = linear_work(pipe, regular), linear_work(pipe, high)
    share = {"regular": regular_work / plain_work, "high": high_work / plain_work}
    # The yardstick: plain with the steps that do the same linear-layer work as the cache did.
    fewer_regular = max(1, round(STEPS * share["regular"]))
    fewer_high = max(1, round(STEPS * share["high"]))
    variants: dict[str, Callable[[], torch.Tensor]] = {
        "regular": regular, "high": high,
        f"plain {fewer_regular} steps": lambda: latents(pipe, fewer_regular),
        f"plain {fewer_high} steps": lambda: latents(pipe, fewer_high),
    }
    deviations = {"regular": deviation(regular_out, reference), "high": deviation(high_out, reference),
                  f"plain {fewer_regular} steps": deviation(latents(pipe, fewer_regular), reference),
                  f"plain {fewer_high} steps": deviation(latents(pipe, fewer_high), reference)}
    compile_note = "skipped (--no-compile)"
    if not args.no_compile:
        try:
            compiled = compiled_pipeline(pipe)
            started = time.perf_counter()
            compiled_out = latents(compiled)
            warm_up = time.perf_counter() - started
            deviations["compile"] = deviation(compiled_out, reference)
            variants["compile"] = lambda: latents(compiled)
            compile_note = f"warm-up (first call, compiling) {warm_up:.1f} s"
        except Exception as exc:  # a CPU without a working C++ toolchain, say: report it, do not fail
            compile_note = f"could not compile here: {type(exc).__name__}: {str(exc)[:200]}"

    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        names = list(variants)
        names = names[round_index % len(names):] + names[:round_index % len(names)]  # rotate the order
        for name in names:
            # A pair: plain and the variant back to back, in alternating order, so a burst of load
            # from elsewhere hits one pair, not every ratio of the round.
            ratios[name].append(pair_ratio(plain, variants[name], plain_first=round_index % 2 == 0))
        print(f"round {round_index + 1}: " + ", ".join(f"{name} {ratios[name][-1]:.2f}" for name in variants))

    print(f"\nafter the rounds: {load_now()}")
    print(f"{'variant':18} {'time/plain':>10} {'compute':>8} {'attention':>10} {'deviation':>10}")
    compute = {**share, f"plain {fewer_regular} steps": fewer_regular / STEPS,
               f"plain {fewer_high} steps": fewer_high / STEPS, "compile": 1.0}
    passes = {"regular": regular_passes[-1], "high": high_passes[-1], f"plain {fewer_regular} steps": fewer_regular,
              f"plain {fewer_high} steps": fewer_high, "compile": STEPS}
    for name in variants:
        print(f"{name:18} {statistics.median(ratios[name]):10.3f} {compute[name]:8.2f} {passes[name]:>7}/{STEPS} "
              f"{deviations[name]:10.5f}")
    print("compute: share of plain's linear-layer work that ran; attention: passes whose attention ran")
    print(f"compile: {compile_note}"
          + (f"; equal to plain: {deviations['compile'] < 1e-4} (rel L2 {deviations['compile']:.2e})"
             if "compile" in deviations else ""))
    int8, int8_note = int8_bytes_ratio(pipe)
    print(f"int8 bytes: {int8_note}")

    def median(name: str) -> float:
        return statistics.median(ratios[name]) if ratios.get(name) else math.nan

    print(f"acceleration: regular={median('regular'):.3f} high={median('high'):.3f} "
          f"compile={median('compile'):.3f} int8_bytes={int8:.3f}")


if __name__ == "__main__":
    main()
