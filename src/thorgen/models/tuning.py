"""Making a loaded pipeline fast, whatever its family: placement, quantization, regional compilation.

The loader calls ``load_kwargs`` for ``from_pretrained`` and ``tune`` once on the loaded pipeline;
nothing here knows a model family: a family that can be compiled says what one short run of its
pipeline is (its ``Family.warm_up``).

- **Placement**: ``device_map=<device>`` makes diffusers create each module on the meta device and
  write the weights from the files straight onto the target device, so a load holds the model once
  instead of a CPU copy plus a device copy (benchmarks/bench_load_peak.py measures it).
- **Quantization** (``[models.NAME] quantization``): torchao on the denoiser's Linear layers, the
  bulk of every diffusion model's bytes. "int8" is weight-only int8 (runs anywhere, the CPU
  included; weights take about half of bf16); "fp8" is FP8 weights and activations (per-row scales),
  which needs CUDA compute capability 8.9 or newer. Quantizing happens before compiling, as torchao
  expects, and the swapper then measures what the pipeline really holds.
- **Compile** (``[models.NAME] compile``): regional compilation of the denoiser's repeated blocks
  (diffusers' ``compile_repeated_blocks``; for a transformer that does not name its blocks, each
  member of its ``transformer_blocks`` list), then a warm-up run at the family's usual size, so the
  model is compiled before the swapper lends it to a job. The warm-up also runs once uncompiled and
  records how far the compiled result is from it. Inductor's caches live in
  ``<data>/compile-cache``, so a restart reuses the compiled kernels instead of generating them again.

Sizes and recompiling: torch.compile specialises on the shapes it sees. A job at a new size (another
resolution, another frame count) makes torch compile the blocks again, once, with dynamic shapes,
which later sizes then reuse; torch's own "Recompiling function" messages are turned on and a new
input shape is logged beside the warm-up's compile time (what that job will pay, roughly).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thorgen.errors import FalError

log = logging.getLogger("thorgen.models")

FP8_MIN_CAPABILITY = (8, 9)  # Ada / Hopper and newer (Thor is sm_110): FP8 tensor cores


# A family's compile warm-up (its Family's ``warm_up``): the keyword arguments of one short pipeline
# run for a model name, in tiny mode or not (output_type="latent" is added). Two steps are enough:
# every block runs, and the shapes are the ones the family's jobs use by default.
WarmUp = Callable[[str, bool], dict[str, Any]]


@dataclass
class Tuned:
    """What was done to one loaded model, for /info and the log."""

    quantization: str = "none"
    compiled: bool = False
    warm_up_s: float | None = None  # the warm-up run, compiling included
    compile_deviation: float | None = None  # relative L2 of compiled vs uncompiled warm-up latents
    shapes: list[list[int]] = field(default_factory=list)  # denoiser input shapes seen since the load
    # inductor's FX-graph cache during the warm-up: all hits and no misses after a restart means
    # nothing was compiled again (dynamo still traces the blocks, which takes seconds, not minutes).
    cache_hits: int = 0
    cache_misses: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "compiled": self.compiled, "warm_up_s": self.warm_up_s,
                "compile_deviation": self.compile_deviation, "shapes": [list(s) for s in self.shapes],
                "compile_cache": {"hits": self.cache_hits, "misses": self.cache_misses}}


def refusal(name: str, family: str, quantization: str, compile: bool, device: str, *,
            can_compile: bool) -> str | None:
    """Why this model's tuning settings cannot work on this machine, or None when they can.

    Called at start (the runtime refuses the model, logs it and answers jobs for it with a 424)
    and again at every load. Not at config load: that knows no device and must not import torch.
    """
    if quantization != "none":
        try:
            import torchao  # noqa: F401
        except ImportError:
            return (f"models.{name}.quantization = {quantization!r} needs torchao, which is not installed "
                    "(pip install 'thorgen[torchao]'), or set quantization = \"none\"")
    if quantization == "fp8":
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            return (f"models.{name}.quantization = \"fp8\" needs a CUDA GPU of compute capability 8.9 or "
                    f"newer, and this model runs on {device}; use \"int8\" or \"none\" here")
        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < FP8_MIN_CAPABILITY:
            return (f"models.{name}.quantization = \"fp8\" needs CUDA compute capability 8.9 or newer; "
                    f"{torch.cuda.get_device_name(torch.device(device))} is {capability[0]}.{capability[1]}: "
                    "use \"int8\" or \"none\"")
    if compile and not can_compile:
        return (f"models.{name}.compile = true is not supported for the {family!r} family yet (it declares no "
                "compile warm-up); set compile = false")
    return None


def load_kwargs(device: str) -> dict[str, Any]:
    """``from_pretrained`` arguments that write the weights straight onto ``device``; none for a device
    diffusers' ``device_map`` does not take (it knows "cpu" and "cuda", not "cuda:1"), which the
    loader then moves the pipeline to after loading, as before."""
    if device not in ("cpu", "cuda"):
        return {}
    return {"device_map": device, "low_cpu_mem_usage": True}


def tune(name: str, family: str, pipeline: Any, *, quantization: str, compile: bool, device: str,
         data_dir: Path, tiny: bool, warm_up: WarmUp | None) -> Tuned:
    """Quantize, then compile and warm up, the pipeline's denoiser, as configured."""
    reason = refusal(name, family, quantization, compile, device, can_compile=warm_up is not None)
    if reason:
        raise FalError(reason, status=424, error_type="unsupported_model_setting")
    tuned = Tuned(quantization=quantization)
    denoiser = getattr(pipeline, "transformer", None)
    if denoiser is None:
        if quantization != "none" or compile:
            raise FalError(f"models.{name}: quantization and compile apply to a pipeline's transformer, and "
                           f"this {type(pipeline).__name__} has none", status=424,
                           error_type="unsupported_model_setting")
        return tuned
    if quantization != "none":
        quantize(denoiser, quantization)
        log.info("model %s: transformer quantized to %s (torchao)", name, quantization)
    if compile:
        assert warm_up is not None  # refused above otherwise
        _compile_and_warm_up(name, warm_up, pipeline, denoiser, data_dir, tiny, tuned)
    return tuned


def quantize(module: Any, quantization: str) -> None:
    """torchao on every Linear layer of ``module``, in place."""
    from torchao.quantization import quantize_

    if quantization == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        quantize_(module, Int8WeightOnlyConfig())
    elif quantization == "fp8":
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

        quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    else:
        raise ValueError(f"unknown quantization {quantization!r}")


def use_compile_cache(data_dir: Path) -> Path:
    """Point inductor's on-disk caches (FX graphs, AOT autograd, Triton kernels) at the data folder.

    Environment variables, because inductor reads its cache folder from the environment each time it
    needs it. Set, not defaulted: inductor writes its default (/tmp/torchinductor_USER) into the
    environment the first time anything asks, and an import (torchao's) already has by now. The
    FX-graph and AOT-autograd caches are on by default in torch 2.13; said explicitly here.
    """
    folder = data_dir / "compile-cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    folder.mkdir(parents=True, exist_ok=True)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return folder


def _compile_and_warm_up(name: str, warm_up_for: WarmUp, pipeline: Any, denoiser: Any, data_dir: Path, tiny: bool,
                         tuned: Tuned) -> None:
    import torch

    folder = use_compile_cache(data_dir)
    torch._logging.set_logs(recompiles=True)  # torch says when and why a compiled block compiles again
    from thorgen.logs import adopt_torch_logger

    adopt_torch_logger()  # set_logs gave torch's loggers their own handler again: its lines in our format
    from torch._dynamo.utils import counters

    warm_up = {**warm_up_for(name, tiny), "output_type": "latent"}

    def run() -> Any:
        # No inference_mode: the pipeline runs under no_grad as jobs do, so the warm-up's graphs are theirs.
        return pipeline(**warm_up, generator=torch.Generator("cpu").manual_seed(0)).images

    plain = run()
    hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
    started = time.perf_counter()
    # Graph breaks allowed: a job's `acceleration` puts diffusers' cache hooks around the compiled
    # blocks, and diffusers keeps some of them out of compilation (torch.compiler.disable), which a
    # full graph refuses outright (seen on the H200 run: benchmarks/results/gpu.md). Without hooks
    # the blocks still compile to one graph each.
    if getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(fullgraph=False)
    else:  # a transformer that names no repeated blocks: its list of blocks is the repeated region
        for block in denoiser.transformer_blocks:
            block.compile(fullgraph=False)
    _watch_shapes(name, denoiser, tuned)
    compiled = run()
    tuned.warm_up_s = round(time.perf_counter() - started, 3)
    tuned.compiled = True
    tuned.cache_hits = counters["inductor"]["fxgraph_cache_hit"] - hits
    tuned.cache_misses = counters["inductor"]["fxgraph_cache_miss"] - misses
    tuned.compile_deviation = float((compiled.float() - plain.float()).norm() / plain.float().norm().clamp_min(1e-12))
    log.info("model %s: transformer blocks compiled and warmed up at %sx%s in %.1f s (cache %s: %d hits, %d "
             "misses); compiled output differs from uncompiled by %.2e (relative L2)", name, warm_up.get("width"),
             warm_up.get("height"), tuned.warm_up_s, folder, tuned.cache_hits, tuned.cache_misses,
             tuned.compile_deviation)


def _watch_shapes(name: str, denoiser: Any, tuned: Tuned) -> None:
    """Log each new input shape of the compiled denoiser: torch compiles its blocks again for it."""

    def before(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        shape = list(getattr(hidden, "shape", ()))
        if shape in tuned.shapes:
            return
        tuned.shapes.append(shape)
        if len(tuned.shapes) > 1:
            log.warning("model %s: new transformer input shape %s (seen before: %s): torch.compile compiles the "
                        "blocks again for it, once (the warm-up's compile took %.1f s)", name, shape,
                        tuned.shapes[:-1], tuned.warm_up_s or 0.0)

    denoiser.register_forward_pre_hook(before, with_kwargs=True)
