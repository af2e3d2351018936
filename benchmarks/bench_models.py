"""P3, P4, P5: what the model runtime costs on top of diffusers itself.

P3  a tiny Flux job through the server (fal's Python client, fal.run, JPEG stored and URL returned)
    divided by the same diffusers call made directly in this process on the same weights (plus the
    same JPEG encode), alternating the two so both see the same machine state. Median seconds.
P4  reloading an evicted model through the swapper (the real loader: concrete class,
    local_files_only) divided by reading the same files from disk (page cache warm for both). On the
    CPU safetensors are mapped lazily, so it also reports the reload plus reading every weight once.
    Run for the tiny Flux and for a "medium" random Flux (~240 MB fp32 transformer) written here.
P5  peak bytes of loaded models divided by the budget, over a mixed workload (flux/dev, schnell,
    image-to-image in turn) on a server whose budget fits one tiny Flux but not two, so every switch
    evicts. Also reports the evictions.

Run:  .venv/bin/python benchmarks/bench_models.py [--runs 10]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import interleaved, point_client, write_tiny_models
from mediagen import make_image
from server_process import ServerProcess

ARGS = {"prompt": "a lighthouse at dusk", "image_size": {"width": 256, "height": 256},
        "num_inference_steps": 4, "seed": 1, "guidance_scale": 3.5}


def p3(models_dir: Path, work: Path, runs: int) -> None:
    import torch
    from diffusers import FluxPipeline

    server = ServerProcess(work / "p3", args=["--tiny", "--models-dir", str(models_dir)]).start().wait_ready()
    try:
        client = point_client(server.base_url)
        pipe = FluxPipeline.from_pretrained(models_dir / "tiny" / "flux-dev", dtype=torch.float32,
                                            local_files_only=True)
        pipe.set_progress_bar_config(disable=True)

        def direct() -> None:
            image = pipe(prompt=ARGS["prompt"], width=256, height=256, num_inference_steps=4, guidance_scale=3.5,
                         generator=torch.Generator().manual_seed(1), max_sequence_length=64).images[0]
            image.save(io.BytesIO(), "JPEG", quality=95)

        def through_server() -> None:
            client.run("fal-ai/flux/dev", arguments=ARGS)

        s, d = interleaved(through_server, direct, runs)
        print(f"P3 tiny Flux 256x256, 4 steps, {runs} runs each: server {s * 1000:.1f} ms, direct {d * 1000:.1f} ms "
              f"-> ratio {s / d:.2f} (+{(s - d) * 1000:.1f} ms)")
    finally:
        server.stop()


def write_medium_flux(target: Path) -> None:
    from diffusers import FluxTransformer2DModel

    from thorgen.families.flux import build_tiny as build_flux

    pipe = build_flux()
    pipe.transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=4, num_single_layers=8, attention_head_dim=64,
        num_attention_heads=8, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[16, 24, 24]).eval()
    pipe.register_modules(transformer=pipe.transformer)
    pipe.save_pretrained(target, safe_serialization=True)


def read_files(folder: Path) -> int:
    total = 0
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            total += len(file.read_bytes())
    return total


def p4(models_dir: Path, runs: int) -> None:
    from thorgen.config import load_config
    from thorgen.models.loaders import Loader
    from thorgen.models.memory import Budget
    from thorgen.models.swapper import ModelSwapper

    medium = models_dir / "tiny" / "flux_medium"  # tiny mode: a model lives in tiny/NAME
    if not medium.exists():
        write_medium_flux(medium)
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(models_dir), "THORGEN_RUNTIME__TINY": "1",
                                        "THORGEN_MODELS__FLUX_MEDIUM__FAMILY": "flux",
                                        "THORGEN_MODELS__FLUX_MEDIUM__PATH": "flux_medium",
                                        "THORGEN_MODELS__FLUX_MEDIUM__PIPELINE": "FluxPipeline"})
    loader = Loader(config)
    swapper = ModelSwapper(Budget(8 * 1024**3, "bench"), loader.load, loader.estimate)
    for name in ("flux-dev", "flux_medium"):
        folder = config.model_path(name)
        swapper.preload(name)
        read_files(folder)  # page cache warm for both sides
        reloads, touched, reads = [], [], []
        for _ in range(runs):
            swapper.evict(name)
            started = time.perf_counter()
            swapper.preload(name)
            reloads.append(time.perf_counter() - started)
            with swapper.lease(name) as lease:  # CPU loads map the files lazily: page every weight in
                for component in lease.pipeline.components.values():
                    for tensor in getattr(component, "parameters", lambda: [])():
                        tensor.detach().sum()
            touched.append(time.perf_counter() - started)
            started = time.perf_counter()
            size = read_files(folder)
            reads.append(time.perf_counter() - started)
        r, t, f = statistics.median(reloads), statistics.median(touched), statistics.median(reads)
        print(f"P4 {name} ({size / 1024**2:.1f} MB on disk): reload after eviction {r * 1000:.1f} ms "
              f"({t * 1000:.1f} ms with every weight read), read files {f * 1000:.1f} ms -> ratio {r / f:.1f} "
              f"({t / f:.1f})")
        swapper.evict(name)


def p5(models_dir: Path, work: Path, rounds: int) -> None:
    one = 905_852  # the tiny Flux's measured bytes (see /info); budget fits one, not two
    server = ServerProcess(work / "p5", env={"THORGEN_RUNTIME__BUDGET_BYTES": str(int(one * 1.5))},
                           args=["--tiny", "--models-dir", str(models_dir)]).start().wait_ready()
    try:
        client = point_client(server.base_url)
        still = client.upload_file(make_image(work / "still.png", 128, 128))
        small = {"prompt": "x", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1}
        for _ in range(rounds):
            client.run("fal-ai/flux/dev", arguments=small)
            client.run("fal-ai/flux/schnell", arguments=small)
            client.run("fal-ai/flux/dev/image-to-image", arguments={"prompt": "x", "image_url": still,
                                                                  "num_inference_steps": 2})
        runtime = httpx.get(f"{server.base_url}/info").json()["runtime"]
        peak, budget = runtime["peak_held_bytes"], runtime["budget_bytes"]
        print(f"P5 mixed workload, {rounds * 3} jobs over 2 models: peak held {peak} B, budget {budget} B -> "
              f"ratio {peak / budget:.2f}; loads {runtime['loads']}, evictions {runtime['evictions']}, "
              f"unreleased {runtime['unreleased']}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = work / "models"
        write_tiny_models(models_dir)
        p3(models_dir, work, args.runs)
        p4(models_dir, args.runs)
        p5(models_dir, work, max(2, args.runs // 2))


if __name__ == "__main__":
    main()
