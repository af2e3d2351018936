"""Peak process memory while a model loads, over the model's own bytes.

A medium random-weight Flux transformer (285 M parameters, bf16 on disk) is saved to a temporary
folder, then each way of loading it runs in a fresh subprocess, which measures its own peak:

- on the CPU: the rise of the process's resident-set high-water mark (VmHWM in /proc/self/status,
  reset just before the load by writing 5 to /proc/self/clear_refs) above its resident set then;
- on a GPU, besides: CUDA's peak allocated bytes during the load (torch.cuda.max_memory_allocated);
  the ratio there is (RSS rise + CUDA peak) / model bytes, since Thor's CPU and GPU share one memory.

Ways:
- ``direct``: what thorgen's loader does (models/tuning.py ``load_kwargs``): ``device_map=<device>``,
  each module made on the meta device and the weights written from the files straight to the device.
- ``cpu-then-move``: what it did before: load onto the CPU (diffusers' defaults), then ``.to(device)``.
  On the CPU the move is a no-op, so this differs from ``direct`` only on a GPU.
- ``eager-init``: ``low_cpu_mem_usage=False``: the module is built with random weights first and the
  file's weights are copied over them, the classic two-copies load.

Every weight is read once after the load (a CPU load may leave them mapped from the file, not yet
resident), so the peak is that of a model ready to run.

Run:   PYTHONPATH=src .venv/bin/python benchmarks/bench_load_peak.py [--device cpu|cuda] [--rounds 3]
Last line:  load_peak: direct=<ratio> cpu_then_move=<ratio> eager_init=<ratio>  (peak / model bytes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MEDIUM = dict(patch_size=1, in_channels=64, num_layers=4, num_single_layers=8, attention_head_dim=128,
              num_attention_heads=8, joint_attention_dim=1024, pooled_projection_dim=768, guidance_embeds=True,
              axes_dims_rope=[16, 56, 56])
WAYS = ("direct", "cpu-then-move", "eager-init")


def save_model(folder: Path) -> int:
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(**MEDIUM).to(torch.bfloat16)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(way: str, folder: str, device: str) -> dict[str, Any]:
    """In the subprocess: load once the chosen way and report the peaks."""
    import torch
    from diffusers import FluxTransformer2DModel

    from thorgen.models.memory import pipeline_bytes
    from thorgen.models.tuning import load_kwargs

    torch.set_num_threads(1)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the RSS now
    before = _status("VmRSS")
    allocated_before = torch.cuda.memory_allocated() if cuda else 0
    if way == "direct":
        model = FluxTransformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16, **load_kwargs(device))
    elif way == "cpu-then-move":
        model = FluxTransformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16).to(device)
    else:
        model = FluxTransformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16,
                                                       low_cpu_mem_usage=False).to(device)
    # Read every weight once: a CPU load may leave them mapped from the file and not yet resident,
    # which would make any load look free; the first job reads them all anyway.
    for parameter in model.parameters():
        float(parameter.detach().max())
    if cuda:
        torch.cuda.synchronize()
    rss_rise = _status("VmHWM") - before
    cuda_peak = (torch.cuda.max_memory_allocated() - allocated_before) if cuda else 0
    size = pipeline_bytes(model)
    assert next(model.parameters()).device.type == torch.device(device).type
    return {"way": way, "model_bytes": size, "rss_rise": rss_rise, "cuda_peak": cuda_peak,
            "ratio": (rss_rise + cuda_peak) / size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("WAY", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.device)))
        return
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "transformer"
        parameters = save_model(folder)
        print(f"medium Flux transformer: {parameters / 1e6:.0f} M parameters, bf16, saved to a temp folder; "
              f"device {args.device}, {args.rounds} rounds")
        ratios: dict[str, list[float]] = {way: [] for way in WAYS}
        for round_index in range(args.rounds):
            for way in WAYS:  # a fresh process for each load: nothing of an earlier load is reused
                result = subprocess.run([sys.executable, __file__, "--device", args.device, "--measure", way,
                                         str(folder)], capture_output=True, text=True, check=True,
                                        env={**os.environ, "HF_HUB_OFFLINE": "1"})
                row = json.loads(result.stdout.strip().splitlines()[-1])
                ratios[way].append(row["ratio"])
                print(f"round {round_index + 1} {way:>13}: model {row['model_bytes'] / 1024**2:7.1f} MiB, RSS rise "
                      f"{row['rss_rise'] / 1024**2:7.1f} MiB, CUDA peak {row['cuda_peak'] / 1024**2:7.1f} MiB, "
                      f"ratio {row['ratio']:.2f}")
    medians = {way: statistics.median(values) for way, values in ratios.items()}
    print("load_peak: " + " ".join(f"{way.replace('-', '_')}={medians[way]:.2f}" for way in WAYS))


if __name__ == "__main__":
    main()
