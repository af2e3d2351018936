"""Video: LTX-Video vs Cosmos Predict2.5, seconds per clip at the same size, frames and steps.

Both tiny pipelines (random weights, the real architectures, written as `serve --tiny` writes them) are
loaded in this process with the loader's settings (fp32 on the CPU, VAE tiling) and make the same
clip: same prompt, seed, size (128x64 by default: a multiple of 32 for LTX's VAE and of 16 for
Cosmos's), frame count (8k + 1 for LTX; Cosmos takes it as is) and step count, then the MP4 is
written with the same writer. The two alternate; medians. Tiny sizes say how the two pipelines'
overheads compare on this machine, not the real models' speed (the GPU run has full-size numbers).

Run:  .venv/bin/python benchmarks/bench_ltx.py [--runs 5] [--frames 17] [--steps 4] [--width 128 --height 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import interleaved, write_tiny_models


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=64)
    args = parser.parse_args()
    import torch
    from diffusers import Cosmos2_5_PredictBasePipeline, LTXPipeline

    from thorgen.families.cosmos import pipeline as cosmos
    from thorgen.media.video import write_video

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = work / "models"
        write_tiny_models(models_dir)
        cosmos.install_torchvision_stand_ins()
        cosmos_pipe = Cosmos2_5_PredictBasePipeline.from_pretrained(
            models_dir / "tiny" / "cosmos-predict25", dtype=torch.float32, local_files_only=True,
            safety_checker=cosmos.passthrough_checker())
        ltx_pipe = LTXPipeline.from_pretrained(models_dir / "tiny" / "ltx-video", dtype=torch.float32,
                                               local_files_only=True)
        for pipe in (cosmos_pipe, ltx_pipe):
            pipe.vae.enable_tiling()
            pipe.set_progress_bar_config(disable=True)
        common = {"prompt": "a robot arm welding", "width": args.width, "height": args.height,
                  "num_frames": args.frames, "num_inference_steps": args.steps}

        def ltx() -> None:
            frames = ltx_pipe(**common, guidance_scale=3.0, generator=torch.Generator().manual_seed(1),
                              decode_timestep=0.05, decode_noise_scale=0.025, max_sequence_length=64).frames[0]
            write_video(frames, work / "ltx.mp4", 24)

        def cosmos_clip() -> None:
            frames = cosmos_pipe(**common, guidance_scale=7.0, generator=torch.Generator().manual_seed(1),
                                 max_sequence_length=128).frames[0]
            write_video(frames, work / "cosmos.mp4", 16)

        lt, co = interleaved(ltx, cosmos_clip, args.runs)
        print(f"tiny LTX-Video vs Cosmos Predict2.5, {args.width}x{args.height}, {args.frames} frames, {args.steps} "
              f"steps, {args.runs} runs each on the CPU: LTX {lt:.2f} s/clip, Cosmos {co:.2f} s/clip -> "
              f"Cosmos / LTX {co / lt:.2f}")


if __name__ == "__main__":
    main()
