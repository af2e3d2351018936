"""Speech: real-time factor (seconds of compute per second of audio) through the server vs NeMo direct.

Tiny  the tiny FastPitch + HiFi-GAN the server writes in tiny mode. Server: fal's Python client,
      fal.run("fal-ai/playht/tts/v3"), the WAV stored and its URL returned. Direct: the same two .nemo
      files restored in this process with NeMo's own classes, then parse -> generate_spectrogram ->
      convert_spectrogram_to_audio and the same WAV encode. The two alternate; medians; the ratio is
      server RTF / direct RTF.
Full  (--full) NeMo's full-size FastPitch (6+6 layers, 384 wide, IPA-sized vocabulary not needed:
      characters) and HiFi-GAN v1 generator (512 channels) with random weights, direct on the best
      device here (CUDA when present): the RTF a real checkpoint of that architecture would have.

Run:  .venv/bin/python benchmarks/bench_tts.py [--runs 10] [--full]
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


def direct_speaker(folder: Path, device: str):
    """NeMo's own calls on restored archives; returns a function giving (samples, rate)."""
    import torch
    from nemo.collections.tts.models import FastPitchModel, HifiGanModel

    from thorgen.media.audio_out import write_audio

    fastpitch = FastPitchModel.restore_from(str(next(folder.glob("*fastpitch*.nemo"))), map_location=device).eval()
    vocoder = HifiGanModel.restore_from(str(next(folder.glob("*hifigan*.nemo"))), map_location=device).eval()
    out = Path(tempfile.mkdtemp()) / "direct.wav"

    def speak() -> float:
        with torch.inference_mode():
            tokens = fastpitch.parse(TEXT, normalize=False)
            audio = vocoder.convert_spectrogram_to_audio(spec=fastpitch.generate_spectrogram(tokens=tokens))
            samples = audio.squeeze(0).float().cpu().numpy()
        write_audio(out, samples, int(vocoder.sample_rate))
        return samples.size / int(vocoder.sample_rate)

    return speak


def tiny(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-tts-"))
    models = work / "models"
    server = ServerProcess(work / "data", args=["--tiny", "--models-dir", str(models)]).start(timeout=60)
    try:
        server.wait_ready(timeout=300)
        client = point_client(server.base_url)
        direct = direct_speaker(models / "tiny" / "fastpitch-hifigan", "cpu")

        def through_server() -> float:
            return client.run("fal-ai/playht/tts/v3", arguments={"input": TEXT, "voice": ""})["audio"]["duration"]

        seconds = direct()  # the audio's length: the same text and voice on both sides
        served, made = interleaved(through_server, direct, runs)
        s, d = served / seconds, made / seconds
        print(f"tiny FastPitch+HiFi-GAN, {len(TEXT)} chars, {runs} runs each: RTF server {s:.4f}, direct {d:.4f} "
              f"-> ratio {s / d:.2f}")
    finally:
        server.stop()


def full(runs: int) -> None:
    import torch
    from omegaconf import OmegaConf

    from thorgen.families.speech import tiny as tiny_tts
    from thorgen.families.speech.nemo import nemo_classes

    fastpitch_class, vocoder_class = nemo_classes()
    config = tiny_tts.fastpitch_config()
    config["symbols_embedding_dim"] = 384
    for side in ("input_fft", "output_fft"):
        config[side].update(n_layer=6, d_model=384, d_head=64, d_inner=1536)
    config["input_fft"]["d_embed"] = 384
    config["alignment_module"]["n_text_channels"] = 384
    for predictor in ("duration_predictor", "pitch_predictor"):
        config[predictor].update(input_size=384, filter_size=256)
    vocoder_config = tiny_tts.hifigan_config()
    vocoder_config["generator"].update(upsample_initial_channel=512, resblock_kernel_sizes=[3, 7, 11],
                                       resblock_dilation_sizes=[[1, 3, 5]] * 3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fastpitch = fastpitch_class(cfg=OmegaConf.create(config)).to(device).eval()
    vocoder = vocoder_class(cfg=OmegaConf.create(vocoder_config)).to(device).eval()
    with torch.no_grad():
        fastpitch.fastpitch.duration_predictor.fc.weight.mul_(0.01)
        fastpitch.fastpitch.duration_predictor.fc.bias.fill_(1.8)
    params = sum(p.numel() for p in fastpitch.parameters()), sum(p.numel() for p in vocoder.generator.parameters())

    def speak() -> float:
        with torch.inference_mode():
            tokens = fastpitch.parse(TEXT, normalize=False)
            audio = vocoder.convert_spectrogram_to_audio(spec=fastpitch.generate_spectrogram(tokens=tokens))
            if device == "cuda":
                torch.cuda.synchronize()
        return audio.shape[-1] / int(vocoder.sample_rate)

    speak()
    factors = []
    for _ in range(runs):
        started = time.perf_counter()
        seconds = speak()
        factors.append((time.perf_counter() - started) / seconds)
    print(f"full-size random FastPitch ({params[0] / 1e6:.1f}M) + HiFi-GAN generator ({params[1] / 1e6:.1f}M) on "
          f"{device}, {seconds:.2f} s of audio: RTF median {statistics.median(factors):.4f} over {runs} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="also the full-size architecture, direct")
    args = parser.parse_args()
    tiny(args.runs)
    if args.full:
        full(max(3, args.runs // 2))


if __name__ == "__main__":
    main()
