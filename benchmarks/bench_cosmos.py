"""P3 for video: a tiny Cosmos Predict2.5 job through the server ÷ the same diffusers call made directly.

The server side is fal's Python client calling fal-ai/cosmos-predict-2.5/text-to-video (the job is
queued, run, the MP4 written and its URL returned). The direct side loads the same tiny weights in
this process with the same loader settings, makes the same clip with the same seed and encodes it
to MP4 with the same writer. The two alternate so both see the same machine state; medians.

Run:  .venv/bin/python benchmarks/bench_cosmos.py [--runs 5] [--frames 17] [--steps 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import interleaved, point_client, write_tiny_models
from server_process import ServerProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    import torch
    from diffusers import Cosmos2_5_PredictBasePipeline

    from thorgen.families.cosmos import pipeline as cosmos
    from thorgen.media.video import write_video

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = work / "models"
        write_tiny_models(models_dir)
        server = ServerProcess(work / "data", args=["--tiny", "--models-dir", str(models_dir)]).start().wait_ready()
        try:
            client = point_client(server.base_url)
            cosmos.install_torchvision_stand_ins()
            pipe = Cosmos2_5_PredictBasePipeline.from_pretrained(
                models_dir / "tiny" / "cosmos-predict25", dtype=torch.float32, local_files_only=True,
                safety_checker=cosmos.passthrough_checker())
            pipe.vae.enable_tiling()
            pipe.set_progress_bar_config(disable=True)
            body = {"prompt": "a robot arm welding", "num_frames": args.frames, "num_inference_steps": args.steps,
                    "seed": 1, "aspect_ratio": "16:9"}

            def direct() -> None:
                frames = pipe(prompt=body["prompt"], height=64, width=112, num_frames=args.frames,
                              num_inference_steps=args.steps, guidance_scale=7.0,
                              generator=torch.Generator().manual_seed(1), max_sequence_length=128).frames[0]
                write_video(frames, work / "direct.mp4", 16)

            def through_server() -> None:
                client.run("fal-ai/cosmos-predict-2.5/text-to-video", arguments=body)

            s, d = interleaved(through_server, direct, args.runs)
            print(f"P3 tiny Cosmos Predict2.5 112x64, {args.frames} frames, {args.steps} steps, {args.runs} runs each: "
                  f"server {s * 1000:.0f} ms, direct {d * 1000:.0f} ms -> ratio {s / d:.2f} "
                  f"(+{(s - d) * 1000:.0f} ms)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
