"""One GPU run that measures everything issue 15 asks for, with full-size random-weight models.

Models are built from the real configurations kept in benchmarks/bench_{flux,cosmos,audio}_gpu.py
(imported, not copied) and filled with random weights: no download, real compute and memory, noise out.

    PYTHONPATH=src .venv/bin/python benchmarks/gpu/run_all.py --dry-run   # any machine: meta device, plan
    PYTHONPATH=src .venv/bin/python benchmarks/gpu/run_all.py --smoke     # any machine: every path, tiny models
    PYTHONPATH=src .venv/bin/python benchmarks/gpu/run_all.py             # a CUDA machine, < 8 minutes

The real run writes gpu.json and gpu.md (into --out, default benchmarks/results/) after every case,
so a run cut short still leaves what it measured, and prints the table at the end. Cases run in the
order of the plan, which is their priority: one that would overrun the time budget (--budget-s) is
skipped and says so, as is one that fails (its error is recorded), so one problem never loses the
other numbers. A watchdog writes the results and ends the process if a case hangs past the budget.

How each figure is taken: a warm-up call, then one timed call, between torch.cuda.synchronize()
calls; peak memory is torch.cuda.max_memory_allocated() over the timed call. Cosmos 720p is too dear
to run in full inside the budget (about four minutes of transformer work), so it runs 3 steps, times
the transformer's passes with CUDA synchronisation around each, and extrapolates to 35 steps: total =
(what is not the transformer) + 35 x (transformer time per step). The note says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the per-family builders and their configurations

import bench_audio_gpu  # noqa: E402
import bench_cosmos_gpu  # noqa: E402
import bench_flux_gpu  # noqa: E402

FP8_MIN_CAPABILITY = (8, 9)  # torchao float8 matmuls: Ada, Hopper, Blackwell (Jetson Thor is sm_110)


@dataclass
class Shapes:
    """What the run computes; --smoke shrinks it so every code path runs on a CPU in a minute."""

    flux_size: int = 1024
    flux_steps: int = 28
    cosmos_frames: int = 93
    cosmos_steps: int = 35
    cosmos_sizes: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(bench_cosmos_gpu.SIZES))
    cosmos_720p_steps: int = 3  # timed, then extrapolated to cosmos_steps
    audio_seconds: float = 30.0
    audio_steps: int = 100


SHAPES = Shapes()
DEVICE = "cuda"
DTYPE = torch.bfloat16


@dataclass
class Case:
    family: str
    name: str
    settings: dict[str, Any]
    estimate_s: float  # on one H200-class GPU, including its build and warm-up: for the time budget
    seconds: float | None = None
    peak_gib: float | None = None
    ratio: float | None = None
    note: str = ""
    checks: list[str] = field(default_factory=list)


def plan() -> list[Case]:
    """The cases in priority order: what matters most runs first, so a short budget loses the least."""
    s = SHAPES
    flux = {"size": s.flux_size, "steps": s.flux_steps, "dtype": "bfloat16"}
    cosmos = {"frames": s.cosmos_frames, "steps": s.cosmos_steps, "guidance_scale": 7.0}
    return [
        Case("tests", "tests/gpu", {"what": "pytest tests/gpu (CUDA loader, swapper accounting, OOM retry)"}, 30),
        Case("flux", "plain", {**flux, "acceleration": "none"}, 35),
        Case("flux", "regular", {**flux, "acceleration": "regular"}, 12),
        Case("flux", "high", {**flux, "acceleration": "high"}, 10),
        Case("flux", "fp8", {**flux, "quantization": "fp8 (torchao float8 dynamic, per row)"}, 25),
        Case("flux", "fp8+compile+cache", {**flux, "quantization": "fp8", "compile": "compile_repeated_blocks",
                                           "acceleration": "high"}, 70),
        Case("cosmos", "480p", {**cosmos, "size": s.cosmos_sizes["480p"], "acceleration": "none"}, 90),
        Case("cosmos", "480p+cache", {**cosmos, "size": s.cosmos_sizes["480p"],
                                      "acceleration": "high (thorgen's Cosmos level: TaylorSeer on whole blocks)"}, 40),
        Case("stable-audio", "30s", {"seconds": s.audio_seconds, "steps": s.audio_steps, "dtype": "float16"}, 25),
        Case("load", "straight-to-device", {"what": "Cosmos transformer from safetensors: device_map=cuda vs "
                                                    "CPU first then .to(cuda); peak RSS + CUDA vs model bytes"}, 35),
        Case("swapper", "round", {"what": "load Flux, then Cosmos over a budget that forces Flux out; "
                                          "CUDA memory must return"}, 35),
        Case("flux", "compile", {**flux, "compile": "compile_repeated_blocks"}, 60),
        Case("cosmos", "720p", {**cosmos, "size": s.cosmos_sizes["720p"], "acceleration": "none",
                                "timed_steps": s.cosmos_720p_steps}, 50),
        Case("speech", "FastPitch+HiFi-GAN", {"what": "real-time factor"}, 0),
    ]


# -- devices -------------------------------------------------------------------------------------

def on_cuda() -> bool:
    return DEVICE == "cuda"


def sync() -> None:
    if on_cuda():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if on_cuda():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 1024**3 if on_cuda() else 0.0


def allocated() -> int:
    release()
    return torch.cuda.memory_allocated() if on_cuda() else 0


def release() -> None:
    gc.collect()
    if on_cuda():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """Seconds and peak GiB of one call (after the caller's warm-up)."""
    sync()
    reset_peak()
    started = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - started, peak_gib()


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


# -- builders: full size on the GPU, thorgen's tiny models under --smoke ---------------------------

def build_flux() -> Any:
    if SHAPES.flux_size < 1024:
        from thorgen.families.flux import build_tiny as tiny

        return tiny()
    return bench_flux_gpu.build(DEVICE, DTYPE)


def build_cosmos() -> Any:
    if SHAPES.flux_size < 1024:
        from thorgen.families.cosmos.pipeline import build_cosmos2_5

        return build_cosmos2_5()
    return bench_cosmos_gpu.build(DEVICE, DTYPE)


def build_audio() -> Any:
    if SHAPES.flux_size < 1024:
        from thorgen.families.music import build_tiny as build_stable_audio

        return build_stable_audio()
    return bench_audio_gpu.build(DEVICE, torch.float16)


# -- checks on the meta device (the dry run, and the first thing a real run does) -------------------

def params_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def check_all(cases: list[Case]) -> dict[str, int]:
    """Build every model on the meta device and check every case's configuration; bytes per model."""
    from diffusers.hooks import MagCacheConfig, TaylorSeerCacheConfig

    from thorgen.families.acceleration import accelerated, cache_config
    from thorgen.families.cosmos.pipeline import install_torchvision_stand_ins

    install_torchvision_stand_ins()
    s = SHAPES
    sizes: dict[str, int] = {}
    flux = bench_flux_gpu.build("meta", torch.bfloat16)
    sizes["flux"] = sum(params_bytes(getattr(flux, n))
                        for n in ("transformer", "text_encoder", "text_encoder_2", "vae"))
    cosmos = bench_cosmos_gpu.build("meta", torch.bfloat16)
    sizes["cosmos"] = sum(params_bytes(getattr(cosmos, n)) for n in ("transformer", "text_encoder", "vae"))
    sizes["cosmos transformer"] = params_bytes(cosmos.transformer)
    audio = bench_audio_gpu.build("meta", torch.float16)
    sizes["stable-audio"] = sum(params_bytes(getattr(audio, n))
                                for n in ("transformer", "vae", "text_encoder", "projection_model"))
    transformer = flux.transformer
    for case in cases:
        if case.family == "flux":
            level = case.settings.get("acceleration", "none")
            config = cache_config(level, s.flux_steps, torch.bfloat16)
            if config is not None:
                transformer.enable_cache(config)  # the hooks go on and come off the full-size model
                transformer.disable_cache()
                kind = "MagCache" if isinstance(config, MagCacheConfig) else \
                    "TaylorSeer" if isinstance(config, TaylorSeerCacheConfig) else type(config).__name__
                case.checks.append(f"{kind} hooks on and off the 12 B transformer")
            if "compile" in case.settings:
                blocks = getattr(transformer, "_repeated_blocks", [])
                assert blocks, "FluxTransformer2DModel declares no repeated blocks to compile"
                case.checks.append(f"repeated blocks to compile: {', '.join(blocks)}")
            if case.settings.get("quantization", "").startswith("fp8"):
                case.checks.append(fp8_support())
            tokens = (s.flux_size // 16) ** 2
            case.checks.append(f"{s.flux_size}x{s.flux_size}: {tokens} image tokens + 512 text, {s.flux_steps} steps")
        elif case.family == "cosmos":
            width, height = case.settings["size"]
            assert (s.cosmos_frames - 1) % 4 == 0 and width % 16 == 0 and height % 16 == 0
            latent_frames = (s.cosmos_frames - 1) // 4 + 1
            case.checks.append(f"{width}x{height}, {s.cosmos_frames} frames = {latent_frames} latent frames, "
                               f"{(width // 16) * (height // 16) * latent_frames} tokens, CFG: 2 passes a step")
            if "cache" in case.name:
                with accelerated(cosmos.transformer, "high", s.cosmos_steps) as report:
                    case.checks.append(f"{report.method} on and off the 2 B transformer")
        elif case.family == "stable-audio":
            window = bench_audio_gpu.DIT["sample_size"] * audio.vae.hop_length / bench_audio_gpu.VAE["sampling_rate"]
            assert s.audio_seconds <= window, f"{s.audio_seconds} s is longer than the model's {window:.1f} s"
            case.checks.append(f"{s.audio_seconds:g} s fits the {window:.2f} s window")
        elif case.family == "swapper":
            budget = max(sizes["flux"], sizes["cosmos"]) + min(sizes["flux"], sizes["cosmos"]) // 2
            case.settings["budget_bytes"] = budget
            case.checks.append(f"budget {budget / 1e9:.1f} GB < Flux {sizes['flux'] / 1e9:.1f} + Cosmos "
                               f"{sizes['cosmos'] / 1e9:.1f} GB: loading Cosmos must evict Flux")
        elif case.family == "load":
            case.checks.append(f"Cosmos transformer {sizes['cosmos transformer'] / 1e9:.1f} GB in bf16")
        elif case.family == "tests":
            found = sorted(p.name for p in (ROOT / "tests" / "gpu").glob("test_*.py"))
            assert found, "tests/gpu has no tests"
            case.checks.append(f"{', '.join(found)}")
        elif case.family == "speech":
            case.checks.append(speech_support())
    return sizes


def fp8_support() -> str:
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "needs torchao: pip install 'thorgen[torchao]' (not installed here)"
    if not torch.cuda.is_available():
        return "torchao found; fp8 needs CUDA sm_89 or newer (checked on the GPU at run time)"
    capability = torch.cuda.get_device_capability(0)
    if capability < FP8_MIN_CAPABILITY:
        return f"refused: this GPU is sm_{capability[0]}{capability[1]}; float8 needs sm_89 or newer"
    return f"torchao float8 on sm_{capability[0]}{capability[1]}"


def speech_support() -> str:
    try:
        import nemo  # noqa: F401
    except ImportError:
        return ("not run: NeMo is not installed here (the GPU machine's image has no nemo_toolkit and its "
                "dependencies do not fit the 64 MiB that can be carried to it)")
    return "NeMo found"


# -- the real run ----------------------------------------------------------------------------------

def run_tests(cases: list[Case], case: Case) -> None:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "gpu"), "-q", "-rs", "-p",
                             "no:cacheprovider"], capture_output=True, text=True, cwd=ROOT, timeout=240)
    case.seconds = time.perf_counter() - started
    lines = result.stdout.strip().splitlines() or ["(no output)"]
    case.note = lines[-1]
    if result.returncode:
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        case.note = "FAILED: " + "; ".join(failed[:3] or lines[-3:])[:600]


class Flux:
    """One Flux pipeline kept across the Flux cases; compile and quantize get fresh transformers."""

    def __init__(self) -> None:
        self.pipe = build_flux()
        self.pipe.set_progress_bar_config(disable=True)
        self.computed = 0

    def image(self, level: str = "none") -> None:
        from thorgen.families.acceleration import accelerated

        s = SHAPES
        with accelerated(self.pipe.transformer, level, s.flux_steps) as report:  # type: ignore[arg-type]
            self.pipe(prompt="a lighthouse at dusk", width=s.flux_size, height=s.flux_size,
                      num_inference_steps=s.flux_steps, guidance_scale=3.5, generator=generator(),
                      max_sequence_length=512 if s.flux_size >= 1024 else 32)
        self.computed = report.computed

    def plain(self, case: Case) -> tuple[float, float]:
        level = case.settings["acceleration"]
        self.image(level)
        result = timed(lambda: self.image(level))
        case.note = f"{self.computed} of {SHAPES.flux_steps} transformer passes computed"
        return result

    def compiled(self, case: Case, quantize: bool, level: str) -> tuple[float, float]:
        old = self.pipe.transformer
        self.pipe.transformer = None
        del old
        release()
        self.pipe.transformer = fresh_flux(_FLUX_CONFIG["like"])
        notes = []
        if quantize:
            notes.append(quantize_fp8(self.pipe.transformer))
        if case.settings.get("compile"):
            # diffusers keeps MagCache's head hook out of compilation (torch.compiler.disable), which a
            # full graph refuses: with a cache on, the blocks compile with graph breaks allowed.
            self.pipe.transformer.compile_repeated_blocks(fullgraph=level == "none")
        started = time.perf_counter()
        self.image(level)
        notes.append(f"warm-up {time.perf_counter() - started:.0f} s")
        result = timed(lambda: self.image(level))
        notes.append(f"{self.computed} of {SHAPES.flux_steps} passes computed")
        case.note = "; ".join(notes)
        return result


_FLUX_CONFIG: dict[str, Any] = {}  # the first transformer's class, config and dtype


def quantize_fp8(transformer: Any) -> str:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    before = params_bytes(transformer)
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    release()
    after = sum(t.nbytes for t in _tensors(transformer))
    return f"fp8 weights {after / 1e9:.1f} GB (bf16 {before / 1e9:.1f} GB)"


def _tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Every tensor a module holds, tensor subclasses (torchao's float8 weights) unpacked to their data."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        inner = getattr(tensor, "__tensor_flatten__", None)
        if inner is not None:
            names, _ = inner()
            for name in names:
                yield getattr(tensor, name)
        else:
            yield tensor


def run_flux(by_name: dict[str, Case], over_budget: Callable[[Case], bool], save: Callable[[], None]) -> None:
    flux = Flux()
    like = flux.pipe.transformer
    _FLUX_CONFIG["like"] = _LikeTransformer(type(like), like.config, like.dtype)
    del like  # a reference here would keep the first transformer alive after compile/fp8 replace it
    for name in ("plain", "regular", "high"):
        case = by_name[name]
        if not over_budget(case):
            attempt(case, lambda case=case: flux.plain(case))
            save()
    support = fp8_support()
    fp8_cases = [by_name["fp8"], by_name["fp8+compile+cache"]]
    if not support.startswith("torchao float8"):
        for case in fp8_cases:
            case.note = support
    else:
        if not over_budget(fp8_cases[0]):
            attempt(fp8_cases[0], lambda: flux.compiled(fp8_cases[0], quantize=True, level="none"))
            save()
        if not over_budget(fp8_cases[1]):
            attempt(fp8_cases[1], lambda: flux.compiled(fp8_cases[1], quantize=True, level="high"))
            save()
    _FLUX_STATE["flux"] = flux


_FLUX_STATE: dict[str, Flux] = {}


@dataclass
class _LikeTransformer:
    cls: Any
    config: Any
    dtype: torch.dtype


def fresh_flux(like: _LikeTransformer) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(DEVICE):
        return like.cls.from_config(like.config).to(like.dtype).eval()


def run_flux_compile(case: Case) -> tuple[float, float]:
    """Compile (bf16, no cache) runs late in the plan: its warm-up is the dearest single thing."""
    flux = _FLUX_STATE.get("flux")
    if flux is None:
        flux = Flux()
        like = flux.pipe.transformer
        _FLUX_CONFIG["like"] = _LikeTransformer(type(like), like.config, like.dtype)
    result = flux.compiled(case, quantize=False, level="none")
    _FLUX_STATE.clear()
    return result


def cosmos_call(pipe: Any, width: int, height: int, frames: int, steps: int) -> None:
    pipe(prompt="a robot arm welding in a factory", width=width, height=height, num_frames=frames,
         num_inference_steps=steps, guidance_scale=7.0, generator=generator())


def run_cosmos(by_name: dict[str, Case], over_budget: Callable[[Case], bool], save: Callable[[], None]) -> None:
    from thorgen.families.acceleration import accelerated

    s = SHAPES
    pipe = build_cosmos()
    if hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()  # as thorgen loads it
    pipe.set_progress_bar_config(disable=True)
    cosmos_call(pipe, *(256, 256) if s.flux_size >= 1024 else (32, 32), 9 if s.flux_size >= 1024 else 5, 2)
    plain, cached = by_name["480p"], by_name["480p+cache"]
    if not over_budget(plain):
        width, height = plain.settings["size"]
        attempt(plain, lambda: timed(lambda: cosmos_call(pipe, width, height, s.cosmos_frames, s.cosmos_steps)))
        save()
    if not over_budget(cached):
        width, height = cached.settings["size"]

        def with_cache() -> tuple[float, float]:
            # thorgen's own Cosmos acceleration (families/acceleration.py), as a job with the level runs it
            with accelerated(pipe.transformer, "high", s.cosmos_steps) as report:
                result = timed(lambda: cosmos_call(pipe, width, height, s.cosmos_frames, s.cosmos_steps))
            cached.note = (f"{report.computed} of {2 * s.cosmos_steps} transformer passes computed; "
                           f"{report.method}")
            return result

        attempt(cached, with_cache)
        if cached.seconds and plain.seconds:
            cached.ratio = cached.seconds / plain.seconds
        save()
    _COSMOS_STATE["pipe"] = pipe


_COSMOS_STATE: dict[str, Any] = {}


def run_cosmos_720p(case: Case) -> tuple[float, float]:
    s = SHAPES
    pipe = _COSMOS_STATE.get("pipe") or build_cosmos()
    pipe.set_progress_bar_config(disable=True)
    width, height = case.settings["size"]
    spent: list[float] = []

    def before(module: Any, args: Any) -> None:
        sync()
        spent.append(-time.perf_counter())

    def after(module: Any, args: Any, output: Any) -> None:
        sync()
        spent[-1] += time.perf_counter()

    handles = [pipe.transformer.register_forward_pre_hook(before), pipe.transformer.register_forward_hook(after)]
    try:
        seconds, peak = timed(lambda: cosmos_call(pipe, width, height, s.cosmos_frames, s.cosmos_720p_steps))
    finally:
        for handle in handles:
            handle.remove()
    # The first step pays for kernels and allocations at a new shape: per step from the later ones.
    passes_per_step = len(spent) // s.cosmos_720p_steps
    later = spent[passes_per_step:]
    per_step = sum(later) / (s.cosmos_720p_steps - 1)
    total = seconds + per_step * (s.cosmos_steps - s.cosmos_720p_steps)
    case.note = (f"extrapolated: {s.cosmos_720p_steps} steps took {seconds:.1f} s (transformer "
                 f"{sum(spent):.1f} s, the rest text encoding and VAE decode); {per_step:.2f} s of transformer a "
                 f"step ({passes_per_step} passes) after the first, times {s.cosmos_steps - s.cosmos_720p_steps} "
                 f"more steps")
    return total, peak


def run_audio(case: Case) -> tuple[float, float]:
    s = SHAPES
    pipe = build_audio()
    pipe.set_progress_bar_config(disable=True)

    def clip() -> None:
        pipe(prompt="128 BPM tech house drum loop", negative_prompt="Low quality.", audio_end_in_s=s.audio_seconds,
             num_inference_steps=s.audio_steps, guidance_scale=7.0, generator=generator()).audios[0].float().cpu()

    clip()
    seconds, peak = timed(clip)
    case.note = f"{s.audio_seconds / seconds:.1f}x real time"
    return seconds, peak


LOAD_PROBE = r"""
import json, sys, threading, time
import torch
from diffusers import CosmosTransformer3DModel

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

mode, path, device = sys.argv[1], sys.argv[2], sys.argv[3]
if device == "cuda":
    torch.zeros(1, device="cuda")  # the CUDA context is not the model's
base_anon = status("RssAnon")
peak = {"anon": 0}
done = threading.Event()
def sample():
    while not done.is_set():
        peak["anon"] = max(peak["anon"], status("RssAnon"))
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
started = time.perf_counter()
if mode == "device_map":
    model = CosmosTransformer3DModel.from_pretrained(path, torch_dtype=torch.bfloat16, device_map=device)
else:
    model = CosmosTransformer3DModel.from_pretrained(path, torch_dtype=torch.bfloat16).to(device)
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - started
done.set()
time.sleep(0.01)
anon = max(peak["anon"], status("RssAnon")) - base_anon
gpu = torch.cuda.max_memory_allocated() if device == "cuda" else 0
print(json.dumps({"seconds": seconds, "anon": anon, "gpu": gpu, "hwm": status("VmHWM"),
                  "bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
                  "where": str(next(model.parameters()).device)}))
"""


def run_load(case: Case) -> tuple[float, float]:
    """Peak memory of loading the Cosmos transformer: straight to the device vs CPU first."""
    cosmos = _COSMOS_STATE.get("pipe")
    transformer = cosmos.transformer if cosmos is not None else build_cosmos().transformer
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        transformer.save_pretrained(folder, max_shard_size="2GB")
        del transformer
        release()
        results = {}
        for mode in ("device_map", "cpu_first"):
            out = subprocess.run([sys.executable, "-c", LOAD_PROBE, mode, folder, DEVICE], capture_output=True,
                                 text=True, timeout=240, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode:
                raise RuntimeError(f"{mode}: {out.stderr.strip().splitlines()[-1:]}")
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    direct, first = results["device_map"], results["cpu_first"]
    ratio = (direct["anon"] + direct["gpu"]) / direct["bytes"]
    ratio_first = (first["anon"] + first["gpu"]) / first["bytes"]
    case.ratio = ratio
    case.note = (f"model {direct['bytes'] / 1e9:.2f} GB; peak (RSS anon + CUDA) / bytes: device_map {ratio:.2f} "
                 f"({direct['seconds']:.1f} s, on {direct['where']}), CPU first then .to {ratio_first:.2f} "
                 f"({first['seconds']:.1f} s)")
    return direct["seconds"], direct["gpu"] / 1024**3


def run_swapper(case: Case) -> tuple[float, float]:
    """Load Flux, then Cosmos, through thorgen's real swapper under a budget that cannot hold both."""
    from thorgen.models.memory import Budget, pipeline_bytes
    from thorgen.models.swapper import ModelSwapper

    builders = {"flux": build_flux, "cosmos": build_cosmos}
    budget = case.settings["budget_bytes"]
    if not on_cuda():  # --smoke: tiny models, a budget made the same way (the bigger one and half the other)
        flux, cosmos = pipeline_bytes(build_flux()), pipeline_bytes(build_cosmos())
        budget = max(flux, cosmos) + min(flux, cosmos) // 2
    swapper = ModelSwapper(Budget(budget, "run_all: forces eviction"),
                           lambda name: builders[name](), lambda name: 0)
    baseline = allocated()
    started = time.perf_counter()
    with swapper.lease("flux"):
        pass
    with_flux = allocated() - baseline
    with swapper.lease("cosmos"):
        pass
    assert swapper.loaded_names() == ["cosmos"], swapper.loaded_names()
    with_cosmos = allocated() - baseline
    swapper.evict_all()
    left = allocated() - baseline
    case.note = (f"Flux held {with_flux / 1e9:.1f} GB; after Cosmos evicted it {with_cosmos / 1e9:.1f} GB "
                 f"(Cosmos alone); after evicting all {left / 1e6:.0f} MB left")
    assert not on_cuda() or left < 256 * 1024**2, case.note
    return time.perf_counter() - started, peak_gib()


def attempt(case: Case, call: Callable[[], tuple[float, float]]) -> None:
    try:
        case.seconds, case.peak_gib = call()
    except Exception as exc:  # one failing case must not lose the others' numbers
        case.note = (case.note + "; " if case.note else "") + f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        release()


# -- output ----------------------------------------------------------------------------------------

def table(cases: list[Case]) -> str:
    lines = ["| family | case | seconds | ratio | peak GiB | note |", "|---|---|---|---|---|---|"]
    for case in cases:
        seconds = f"{case.seconds:.2f}" if case.seconds is not None else "–"
        ratio = f"{case.ratio:.2f}" if case.ratio is not None else "–"
        peak = f"{case.peak_gib:.1f}" if case.peak_gib is not None else "–"
        note = re.sub(r"\s+", " ", case.note).replace("|", "/")
        lines.append(f"| {case.family} | {case.name} | {seconds} | {ratio} | {peak} | {note} |")
    return "\n".join(lines)


def ratios(cases: list[Case]) -> None:
    plain = next(c for c in cases if c.family == "flux" and c.name == "plain")
    for case in cases:
        if case.family == "flux" and case.seconds and plain.seconds:
            case.ratio = case.seconds / plain.seconds


def write(cases: list[Case], out: Path, started: float, final: bool) -> str:
    ratios(cases)
    device = torch.cuda.get_device_name(0) if on_cuda() else f"CPU ({platform.processor() or platform.machine()})"
    result = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
              "complete": final, "wall_s": round(time.perf_counter() - started, 1),
              "cases": [asdict(c) for c in cases]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    markdown = (f"# GPU run: {result['device']}, torch {result['torch']}, {result['wall_s']} s"
                f"{'' if final else ' (cut short)'}\n\n"
                "Ratios: Flux cases ÷ Flux plain; Cosmos 480p+cache ÷ 480p; load: peak (RSS anon + CUDA) ÷ model "
                "bytes with device_map.\n\n"
                f"{table(cases)}\n")
    (out / "gpu.md").write_text(markdown)
    return markdown


def main() -> None:
    global DEVICE, DTYPE, SHAPES
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry-run", action="store_true", help="build on the meta device, check, print the plan")
    parser.add_argument("--smoke", action="store_true", help="every path on the CPU with thorgen's tiny models")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip cases that would overrun this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.smoke:
        DEVICE, DTYPE = "cpu", torch.float32
        SHAPES = Shapes(flux_size=64, flux_steps=6, cosmos_frames=9, cosmos_steps=6,
                        cosmos_sizes={"480p": (64, 48), "720p": (96, 64)}, cosmos_720p_steps=2,
                        audio_seconds=1.0, audio_steps=4)
    cases = plan()
    sizes = check_all(cases)
    print("models (random weights from the real configurations): "
          + ", ".join(f"{name} {size / 1e9:.1f} GB" for name, size in sizes.items()))
    total = 0.0
    for case in cases:
        total += case.estimate_s
        print(f"- {case.family:12} {case.name:18} ~{case.estimate_s:4.0f} s  {json.dumps(case.settings)}")
        for check in case.checks:
            print(f"      ok: {check}")
    print(f"estimated total on one H200-class GPU: ~{total / 60:.1f} min (budget {args.budget_s / 60:.1f} min; "
          "cases past it are skipped, lowest priority last)")
    if args.dry_run:
        print("dry run: every model built on the meta device and every configuration checked; "
              "nothing was timed and no GPU figure exists from this run")
        return
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("run_all: no CUDA device here; use --dry-run or --smoke on this machine")
    started = time.perf_counter()
    lock = threading.Lock()

    def save(final: bool = False) -> str:
        with lock:
            return write(cases, args.out, started, final)

    def watchdog() -> None:  # a hung case must not lose the numbers already taken
        time.sleep(args.budget_s + 90)
        save()
        print("run_all: watchdog: past the budget by 90 s; results so far written", flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    def over_budget(case: Case) -> bool:
        spent = time.perf_counter() - started
        if spent + case.estimate_s > args.budget_s:
            case.note = f"skipped: {spent:.0f} s spent, ~{case.estimate_s:.0f} s more would pass the budget"
            return True
        return False

    by_name = {(c.family, c.name): c for c in cases}
    flux_cases = {c.name: c for c in cases if c.family == "flux"}
    cosmos_cases = {c.name: c for c in cases if c.family == "cosmos"}
    for case in cases:
        print(f"[{time.perf_counter() - started:6.1f} s] {case.family} {case.name}", flush=True)
        if case.family == "tests":
            if not over_budget(case):
                run_tests(cases, case)
        elif case.family == "flux" and case.name == "plain":
            run_flux(flux_cases, over_budget, save)
        elif case.family == "flux" and case.name == "compile":
            if not over_budget(case):
                attempt(case, lambda case=case: run_flux_compile(case))
        elif case.family == "flux":
            continue  # run with plain, sharing its pipeline
        elif case.name == "480p":
            _FLUX_STATE.clear()
            release()
            run_cosmos(cosmos_cases, over_budget, save)
        elif case.name == "720p":
            if not over_budget(case):
                attempt(case, lambda case=case: run_cosmos_720p(case))
        elif case.family == "cosmos":
            continue
        elif case.family == "stable-audio":
            if not over_budget(case):
                attempt(case, lambda case=case: run_audio(case))
        elif case.family == "load":
            if not over_budget(case):
                attempt(case, lambda case=case: run_load(case))
        elif case.family == "swapper":
            if not over_budget(case):
                attempt(case, lambda case=case: run_swapper(case))
        elif case.family == "speech":
            case.note = speech_support()
        release()
        save()
    assert by_name
    print(save(final=True))


if __name__ == "__main__":
    main()
