"""P6: the editor's export (ffmpeg-api/compose) against a hand-written ffmpeg command, same run.

Timeline, 30 s, three tracks like the editor's: video track = a 10 s 640x360 video with sound, a
still image for 10 s, the video again; music track = one 30 s WAV; voiceover track = three 2 s
clips. Both sides render 1024x576 at 30 fps, H.264 (veryfast, crf 23) + AAC 128k, faststart.
The ffmpeg side is the binary imageio-ffmpeg ships, driven by one filter graph.

Run:  .venv/bin/python benchmarks/bench_compose.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import imageio_ffmpeg  # noqa: E402
from mediagen import make_audio, make_image, make_video  # noqa: E402

from thorgen.media.compose import Clip, compose  # noqa: E402
from thorgen.media.probe import probe  # noqa: E402

COVER = "scale=1024:576:force_original_aspect_ratio=increase,crop=1024:576,fps=30,setsar=1"


def sources(folder: Path) -> dict[str, Path]:
    return {
        "video": make_video(folder / "clip.mp4", width=640, height=360, fps=24, seconds=10.0),
        "still": make_image(folder / "still.png", width=640, height=360),
        "music": make_audio(folder / "music.wav", seconds=30.0),
        "voice": make_audio(folder / "voice.wav", seconds=2.0, freq=660.0),
    }


def thorgen_side(src: dict[str, Path], out: Path) -> None:
    clips = [
        Clip(src["video"], 0, 10_000, "video"),
        Clip(src["still"], 10_000, 10_000, "video"),
        Clip(src["video"], 20_000, 10_000, "video"),
        Clip(src["music"], 0, 30_000, "audio"),
        *(Clip(src["voice"], start, 2_000, "audio") for start in (2_000, 12_000, 22_000)),
    ]
    compose(clips, out, out.with_suffix(".jpg"))


def ffmpeg_side(src: dict[str, Path], out: Path) -> None:
    graph = ";".join([
        f"[0:v]{COVER},trim=duration=10,setpts=PTS-STARTPTS[v0]",
        f"[1:v]{COVER},trim=duration=10,setpts=PTS-STARTPTS[v1]",
        f"[2:v]{COVER},trim=duration=10,setpts=PTS-STARTPTS[v2]",
        "[v0][v1][v2]concat=n=3:v=1:a=0,format=yuv420p[v]",
        "[0:a]atrim=0:10,asetpts=PTS-STARTPTS[a0]",
        "[2:a]atrim=0:10,asetpts=PTS-STARTPTS,adelay=20000:all=1[a2]",
        "[3:a]atrim=0:30[m]",
        "[4:a]adelay=2000:all=1[o1]", "[5:a]adelay=12000:all=1[o2]", "[6:a]adelay=22000:all=1[o3]",
        "[a0][a2][m][o1][o2][o3]amix=inputs=6:normalize=0:duration=longest,aresample=48000[a]",
    ])
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-i", str(src["video"]), "-loop", "1", "-t", "10", "-i", str(src["still"]), "-i", str(src["video"]),
        "-i", str(src["music"]), "-i", str(src["voice"]), "-i", str(src["voice"]), "-i", str(src["voice"]),
        "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-r", "30",
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-t", "30", str(out),
    ]
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = sources(folder)
        times: dict[str, list[float]] = {"thorgen": [], "ffmpeg": []}
        for round_ in range(args.repeat):
            for name, side in (("thorgen", thorgen_side), ("ffmpeg", ffmpeg_side)):
                out = folder / f"{name}-{round_}.mp4"
                started = time.perf_counter()
                side(src, out)
                times[name].append(time.perf_counter() - started)
        for name in times:
            info = probe(folder / f"{name}-0.mp4")
            print(f"  {name:8} median {statistics.median(times[name]):6.2f} s  runs "
                  f"{', '.join(f'{t:.2f}' for t in times[name])}  -> {info['resolution']['width']}x"
                  f"{info['resolution']['height']} {info['fps']} fps {info['duration']:.2f} s "
                  f"{(folder / f'{name}-0.mp4').stat().st_size / 1e6:.2f} MB")
        ratio = statistics.median(times["thorgen"]) / statistics.median(times["ffmpeg"])
        print(f"P6 compose of a 30 s 3-track timeline: thorgen / ffmpeg = {ratio:.2f}")


if __name__ == "__main__":
    main()
