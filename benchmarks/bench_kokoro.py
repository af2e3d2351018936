"""Speech: Kokoro's real-time factor (seconds of compute per second of audio) vs the FastPitch pair's,
on the same text.

Tiny  through the server, fal's Python client: fal-ai/kokoro/american-english (the tiny Kokoro: the
      kokoro package's KModel, random weights, ~59 M parameters because its decoder widths are fixed)
      vs fal-ai/playht/tts/v3 (the tiny FastPitch + HiFi-GAN). The two alternate; medians. The RTF is
      the median compute time over the audio each returned.
Full  (--full) direct in this process, random weights at the real sizes: Kokoro-82M's config.json
      (PL-BERT 12 x 768, 3-layer predictor, iSTFTNet) vs bench_tts's full-size FastPitch + HiFi-GAN v1,
      on the best device here. The speech is noise; the compute is what a real checkpoint costs.

Run:  .venv/bin/python benchmarks/bench_kokoro.py [--runs 5] [--full]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import interleaved, point_client
from server_process import ServerProcess

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank. "
        "Later that evening the rain began to fall softly on the old wooden roof.")


def tiny(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-kokoro-"))
    server = ServerProcess(work / "data", args=["--tiny", "--models-dir", str(work / "models")]).start(timeout=60)
    try:
        server.wait_ready(timeout=600)
        client = point_client(server.base_url)
        seconds: dict[str, float] = {}

        def kokoro() -> None:
            seconds["kokoro"] = client.run("fal-ai/kokoro/american-english",
                                           arguments={"prompt": TEXT, "voice": "af_heart"})["audio"]["duration"]

        def fastpitch() -> None:
            seconds["fastpitch"] = client.run("fal-ai/playht/tts/v3",
                                              arguments={"input": TEXT, "voice": ""})["audio"]["duration"]

        k, f = interleaved(kokoro, fastpitch, runs)
        rk, rf = k / seconds["kokoro"], f / seconds["fastpitch"]
        print(f"tiny, through the server, {len(TEXT)} chars, {runs} runs each: Kokoro RTF {rk:.3f} "
              f"({seconds['kokoro']:.2f} s of audio), FastPitch+HiFi-GAN RTF {rf:.3f} ({seconds['fastpitch']:.2f} s) "
              f"-> Kokoro / FastPitch {rk / rf:.2f}")
    finally:
        server.stop()


def full_kokoro(runs: int) -> None:
    import torch
    from kokoro import KModel

    from thorgen.families import kokoro

    config = kokoro.tiny_config()
    config.update(n_layer=3, plbert={"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2048,
                                     "max_position_embeddings": 512, "num_hidden_layers": 12, "dropout": 0.1})
    config["istftnet"].update(resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty.pth"
        torch.save({}, empty)
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty)).to(device).eval()
    with torch.no_grad():  # about six frames per phoneme, as real speech has
        model.predictor.duration_proj.linear_layer.weight.mul_(0.01)
        model.predictor.duration_proj.linear_layer.bias.fill_(-2.0)
    folder = Path(tempfile.mkdtemp())
    loaded = kokoro.KokoroModel(model, folder, device)
    phonemes = loaded.phonemize(kokoro.LANGUAGES["american-english"], TEXT)
    style = torch.randn(1, 256) * 0.5

    def speak() -> float:
        audio = model(phonemes, style.to(device), 1.0)
        if device == "cuda":
            torch.cuda.synchronize()
        return audio.shape[-1] / kokoro.SAMPLE_RATE

    speak()
    factors = []
    for _ in range(runs):
        started = time.perf_counter()
        seconds = speak()
        factors.append((time.perf_counter() - started) / seconds)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"full-size random Kokoro ({params:.1f}M) on {device}, {seconds:.2f} s of audio: RTF median "
          f"{statistics.median(factors):.4f} over {runs} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also the full-size architectures, direct")
    args = parser.parse_args()
    tiny(args.runs)
    if args.full:
        full_kokoro(max(3, args.runs))
        import bench_tts

        bench_tts.TEXT = TEXT
        bench_tts.full(max(3, args.runs))


if __name__ == "__main__":
    main()
