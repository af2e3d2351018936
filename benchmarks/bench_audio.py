"""P3 for Stable Audio: a tiny Stable Audio job through the server ÷ the same diffusers call direct.

The server side is fal's Python client calling fal.run("fal-ai/stable-audio") on a tiny-mode server:
queue, GPU lane, lease, the pipeline, the WAV written and stored, the result fetched. The direct
side loads the same tiny weights in this process and makes the same call (same seconds, steps, seed)
plus the same WAV encode. The two alternate so both see the same machine state; medians are compared.

Run:  .venv/bin/python benchmarks/bench_audio.py [--runs 10] [--steps 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import interleaved, point_client, write_tiny_models
from server_process import ServerProcess

SECONDS = 1.0  # within the tiny model's ≈1.49 s window


def p3(models_dir: Path, work: Path, runs: int, steps: int) -> None:
    import torch
    from diffusers import StableAudioPipeline

    from thorgen.media.audio_out import write_audio

    arguments = {"prompt": "calm piano with soft rain", "seconds_total": SECONDS, "steps": steps, "seed": 1}
    server = ServerProcess(work / "p3", args=["--tiny", "--models-dir", str(models_dir)]).start().wait_ready()
    try:
        client = point_client(server.base_url)
        pipe = StableAudioPipeline.from_pretrained(models_dir / "tiny" / "stable-audio-open", dtype=torch.float32,
                                                   local_files_only=True)
        pipe.set_progress_bar_config(disable=True)

        def direct() -> None:
            audio = pipe(prompt=arguments["prompt"], audio_end_in_s=SECONDS, num_inference_steps=steps,
                         guidance_scale=7.0, generator=torch.Generator().manual_seed(1)).audios[0]
            write_audio(work / "direct.wav", audio.float().numpy(), pipe.vae.config.sampling_rate)

        def through_server() -> None:
            client.run("fal-ai/stable-audio", arguments=arguments)

        s, d = interleaved(through_server, direct, runs)
        print(f"P3 tiny Stable Audio, {SECONDS:g} s at 44.1 kHz stereo, {steps} steps, {runs} runs each: "
              f"server {s * 1000:.1f} ms, direct {d * 1000:.1f} ms -> ratio {s / d:.2f} (+{(s - d) * 1000:.1f} ms)")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = work / "models"
        write_tiny_models(models_dir)
        p3(models_dir, work, args.runs, args.steps)


if __name__ == "__main__":
    main()
