"""One GPU run that measures everything issue 15 asks for, with full-size random-weight models.

Models are built from the real configurations kept in benchmarks/bench_{flux,cosmos,audio}_gpu.py
(imported, not copied) and filled with random weights: no download, real compute and memory, noise out.

    PYTHONPATH=src .venv/bin/python benchmarks/gpu/run_all.py --dry-run   # any machine: meta device, plan
    PYTHONPATH=src .venv/bin/python benchmarks/gpu/run_all.py             # a CUDA machine, < 8 minutes

The real run writes benchmarks/results/gpu.json and gpu.md and prints the table. Every case runs
once after a warm-up call; a case that would overrun the time budget (--budget-s) is skipped and says
so, as is one that fails (its error is recorded), so one problem never loses the other numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
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

FLUX_SIZE, FLUX_STEPS = 1024, 28
COSMOS_FRAMES, COSMOS_STEPS = 93, 35
AUDIO_SECONDS, AUDIO_STEPS = 30.0, 100
FP8_MIN_CAPABILITY = (8, 9)  # torchao float8 matmuls: Ada, Hopper, Blackwell (Jetson Thor is sm_110)


@dataclass
class Case:
    family: str
    name: str
    settings: dict[str, Any]
    estimate_s: float  # on one H200-class GPU, including its warm-up call: for the time budget
    seconds: float | None = None
    peak_gib: float | None = None
    ratio: float | None = None
    note: str = ""
    checks: list[str] = field(default_factory=list)


def plan() -> list[Case]:
    flux = {"size": FLUX_SIZE, "steps": FLUX_STEPS, "dtype": "bfloat16"}
    return [
        Case("flux", "plain", {**flux, "acceleration": "none"}, 25),
        Case("flux", "regular", {**flux, "acceleration": "regular"}, 20),
        Case("flux", "high", {**flux, "acceleration": "high"}, 15),
        Case("flux", "compile", {**flux, "compile": "compile_repeated_blocks"}, 70),
        Case("flux", "fp8", {**flux, "quantization": "fp8 (torchao float8 dynamic)"}, 35),
        Case("flux", "fp8+compile+cache", {**flux, "quantization": "fp8", "compile": "compile_repeated_blocks",
                                           "acceleration": "high"}, 60),
        Case("cosmos", "480p", {"size": bench_cosmos_gpu.SIZES["480p"], "frames": COSMOS_FRAMES,
                                "steps": COSMOS_STEPS}, 70),
        Case("cosmos", "720p", {"size": bench_cosmos_gpu.SIZES["720p"], "frames": COSMOS_FRAMES,
                                "steps": COSMOS_STEPS}, 110),
        Case("stable-audio", "30s", {"seconds": AUDIO_SECONDS, "steps": AUDIO_STEPS, "dtype": "float16"}, 25),
        Case("swapper", "round", {"what": "load Flux, then Cosmos over a budget that forces Flux out; "
                                          "CUDA memory must return"}, 30),
        Case("tests", "tests/gpu", {"what": "pytest tests/gpu"}, 30),
    ]


# -- checks on the meta device (the dry run, and the first thing a real run does) -------------------

def params_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def check_all(cases: list[Case]) -> dict[str, int]:
    """Build every model on the meta device and check every case's configuration; bytes per model."""
    from diffusers.hooks import MagCacheConfig, TaylorSeerCacheConfig

    from thorgen.families.acceleration import cache_config
    from thorgen.families.cosmos.pipeline import install_torchvision_stand_ins

    install_torchvision_stand_ins()
    sizes: dict[str, int] = {}
    flux = bench_flux_gpu.build("meta", torch.bfloat16)
    sizes["flux"] = sum(params_bytes(getattr(flux, n))
                        for n in ("transformer", "text_encoder", "text_encoder_2", "vae"))
    cosmos = bench_cosmos_gpu.build("meta", torch.bfloat16)
    sizes["cosmos"] = sum(params_bytes(getattr(cosmos, n)) for n in ("transformer", "text_encoder", "vae"))
    audio = bench_audio_gpu.build("meta", torch.float16)
    sizes["stable-audio"] = sum(params_bytes(getattr(audio, n))
                                for n in ("transformer", "vae", "text_encoder", "projection_model"))
    transformer = flux.transformer
    for case in cases:
        if case.family == "flux":
            level = case.settings.get("acceleration", "none")
            config = cache_config(level, FLUX_STEPS, torch.bfloat16)
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
            tokens = (FLUX_SIZE // 16) ** 2
            case.checks.append(f"{FLUX_SIZE}x{FLUX_SIZE}: {tokens} image tokens + 512 text, {FLUX_STEPS} steps")
        elif case.family == "cosmos":
            width, height = case.settings["size"]
            assert (COSMOS_FRAMES - 1) % 4 == 0 and width % 16 == 0 and height % 16 == 0
            latent_frames = (COSMOS_FRAMES - 1) // 4 + 1
            case.checks.append(f"{width}x{height}, {COSMOS_FRAMES} frames = {latent_frames} latent frames, "
                               f"{(width // 16) * (height // 16) * latent_frames} tokens")
        elif case.family == "stable-audio":
            window = bench_audio_gpu.DIT["sample_size"] * audio.vae.hop_length / bench_audio_gpu.VAE["sampling_rate"]
            assert AUDIO_SECONDS <= window, f"{AUDIO_SECONDS} s is longer than the model's {window:.1f} s"
            case.checks.append(f"{AUDIO_SECONDS:g} s fits the {window:.2f} s window")
        elif case.family == "swapper":
            budget = max(sizes["flux"], sizes["cosmos"]) + min(sizes["flux"], sizes["cosmos"]) // 2
            case.settings["budget_bytes"] = budget
            case.checks.append(f"budget {budget / 1e9:.1f} GB < Flux {sizes['flux'] / 1e9:.1f} + Cosmos "
                               f"{sizes['cosmos'] / 1e9:.1f} GB: loading Cosmos must evict Flux")
        elif case.family == "tests":
            found = sorted(p.name for p in (ROOT / "tests" / "gpu").glob("test_*.py"))
            assert found, "tests/gpu has no tests"
            case.checks.append(f"{', '.join(found)}")
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


# -- the real run ----------------------------------------------------------------------------------

def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """Seconds and peak GiB of one call (after the caller's warm-up)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    call()
    torch.cuda.synchronize()
    return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 1024**3


def fresh_flux_transformer() -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    with torch.device("cuda"):
        return FluxTransformer2DModel(**bench_flux_gpu.TRANSFORMER).to(torch.bfloat16).eval()


def run_flux(cases: list[Case], over_budget: Callable[[Case], bool]) -> None:
    from thorgen.families.acceleration import accelerated

    pipe = bench_flux_gpu.build("cuda", torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)

    def image(level: str = "none") -> None:
        with accelerated(pipe.transformer, level, FLUX_STEPS):  # type: ignore[arg-type]
            pipe(prompt="a lighthouse at dusk", width=FLUX_SIZE, height=FLUX_SIZE, num_inference_steps=FLUX_STEPS,
                 guidance_scale=3.5, generator=torch.Generator("cpu").manual_seed(0), max_sequence_length=512)

    by_name = {case.name: case for case in cases if case.family == "flux"}
    for name in ("plain", "regular", "high"):
        case = by_name[name]
        if over_budget(case):
            continue
        level = case.settings["acceleration"]
        attempt(case, lambda level=level: (image(level), timed(lambda: image(level)))[1])
    compile_case = by_name["compile"]
    if not over_budget(compile_case):
        def compiled() -> tuple[float, float]:
            pipe.transformer = fresh_flux_transformer()
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
            started = time.perf_counter()
            image()
            compile_case.note = f"warm-up (compiling) {time.perf_counter() - started:.0f} s"
            return timed(image)
        attempt(compile_case, compiled)
    fp8_cases = [by_name["fp8"], by_name["fp8+compile+cache"]]
    support = fp8_support()
    if not support.startswith("torchao float8"):
        for case in fp8_cases:
            case.note = support
        return
    if not over_budget(fp8_cases[0]):
        def fp8() -> tuple[float, float]:
            from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

            pipe.transformer = fresh_flux_transformer()
            gc.collect()
            torch.cuda.empty_cache()
            quantize_(pipe.transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
            image()
            return timed(image)
        attempt(fp8_cases[0], fp8)
    if not over_budget(fp8_cases[1]) and fp8_cases[0].seconds is not None:
        def fp8_compile_cache() -> tuple[float, float]:
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
            started = time.perf_counter()
            image("high")
            fp8_cases[1].note = f"warm-up (compiling) {time.perf_counter() - started:.0f} s"
            return timed(lambda: image("high"))
        attempt(fp8_cases[1], fp8_compile_cache)


def run_cosmos(cases: list[Case], over_budget: Callable[[Case], bool]) -> None:
    pipe = bench_cosmos_gpu.build("cuda", torch.bfloat16)
    pipe.vae.enable_tiling()  # as thorgen loads it
    pipe.set_progress_bar_config(disable=True)
    bench_cosmos_gpu.timed(pipe, 256, 256, 9, 2, 1)  # warm-up: kernels, allocator
    for case in (c for c in cases if c.family == "cosmos"):
        if over_budget(case):
            continue
        width, height = case.settings["size"]
        attempt(case, lambda width=width, height=height: timed(
            lambda: bench_cosmos_gpu.timed(pipe, width, height, COSMOS_FRAMES, COSMOS_STEPS, 1)))


def run_audio(cases: list[Case], over_budget: Callable[[Case], bool]) -> None:
    case = next(c for c in cases if c.family == "stable-audio")
    if over_budget(case):
        return
    pipe = bench_audio_gpu.build("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)

    def clip() -> None:
        pipe(prompt="128 BPM tech house drum loop", negative_prompt="Low quality.", audio_end_in_s=AUDIO_SECONDS,
             num_inference_steps=AUDIO_STEPS, guidance_scale=7.0,
             generator=torch.Generator("cpu").manual_seed(0)).audios[0].float().cpu()

    attempt(case, lambda: (clip(), timed(clip))[1])
    if case.seconds:
        case.note = f"{AUDIO_SECONDS / case.seconds:.1f}x real time"


def run_swapper(cases: list[Case], over_budget: Callable[[Case], bool]) -> None:
    """Load Flux, then Cosmos, through thorgen's real swapper under a budget that cannot hold both."""
    from thorgen.models.memory import Budget
    from thorgen.models.swapper import ModelSwapper

    case = next(c for c in cases if c.family == "swapper")
    if over_budget(case):
        return
    builders = {"flux": lambda: bench_flux_gpu.build("cuda", torch.bfloat16),
                "cosmos": lambda: bench_cosmos_gpu.build("cuda", torch.bfloat16)}

    def round_trip() -> tuple[float, float]:
        swapper = ModelSwapper(Budget(case.settings["budget_bytes"], "run_all: forces eviction"),
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
        assert left < 256 * 1024**2, case.note
        return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 1024**3

    attempt(case, round_trip)
    release()


def run_tests(cases: list[Case], over_budget: Callable[[Case], bool]) -> None:
    case = next(c for c in cases if c.family == "tests")
    if over_budget(case):
        return
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "gpu"), "-q", "-rs"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    case.seconds = time.perf_counter() - started
    case.note = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    if result.returncode:
        case.note = "FAILED: " + case.note


def allocated() -> int:
    release()
    return torch.cuda.memory_allocated()


def release() -> None:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def attempt(case: Case, call: Callable[[], tuple[float, float]]) -> None:
    try:
        case.seconds, case.peak_gib = call()
    except Exception as exc:  # one failing case must not lose the others' numbers
        case.note = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        release()


# -- output ----------------------------------------------------------------------------------------

def table(cases: list[Case]) -> str:
    lines = ["| family | case | seconds | ÷ plain | peak GiB | note |", "|---|---|---|---|---|---|"]
    for case in cases:
        seconds = f"{case.seconds:.2f}" if case.seconds is not None else "–"
        ratio = f"{case.ratio:.2f}" if case.ratio is not None else "–"
        peak = f"{case.peak_gib:.1f}" if case.peak_gib is not None else "–"
        lines.append(f"| {case.family} | {case.name} | {seconds} | {ratio} | {peak} | {case.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry-run", action="store_true", help="build on the meta device, check, print the plan")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip cases that would overrun this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
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
    print(f"estimated total on one H200-class GPU: ~{total / 60:.1f} min (budget {args.budget_s / 60:.1f} min)")
    if args.dry_run:
        print("dry run: every model built on the meta device and every configuration checked; "
              "nothing was timed and no GPU figure exists from this run")
        return
    if not torch.cuda.is_available():
        sys.exit("run_all: no CUDA device here; use --dry-run on this machine")
    started = time.perf_counter()

    def over_budget(case: Case) -> bool:
        spent = time.perf_counter() - started
        if spent + case.estimate_s > args.budget_s:
            case.note = f"skipped: {spent:.0f} s spent, ~{case.estimate_s:.0f} s more would pass the budget"
            return True
        return False

    for runner in (run_flux, run_cosmos, run_audio, run_swapper, run_tests):
        runner(cases, over_budget)
        release()  # the runner's pipeline went with its frame: hand its memory back before the next
    plain = next(c for c in cases if c.family == "flux" and c.name == "plain")
    for case in cases:
        if case.family == "flux" and case.seconds and plain.seconds:
            case.ratio = case.seconds / plain.seconds
    cosmos_480 = next(c for c in cases if c.name == "480p")
    if cosmos_480.seconds:
        cosmos_480.ratio = 1.0
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
              "wall_s": round(time.perf_counter() - started, 1), "cases": [asdict(c) for c in cases]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = (f"# GPU run: {result['device']}, torch {result['torch']}, {result['wall_s']} s\n\n"
                f"{table(cases)}\n")
    (args.out / "gpu.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
