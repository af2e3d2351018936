"""P1 and P2: what fal's wire protocol costs on top of the work itself.

P1  round trip of a trivial utility job (ffmpeg-api/metadata of a 1 s WAV stored on thorgen) through
    fal's real Python client, minus the same probe called directly in-process. Reported p50/p99 ms.
P2  status polls per second while a long job runs, divided by a bare Litestar JSON route served by
    uvicorn the same way, measured in the same run with the same HTTP client.

Run:  .venv/bin/python benchmarks/bench_protocol.py [--requests 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mediagen import make_audio, make_image  # noqa: E402
from server_process import ServerProcess, free_port  # noqa: E402
from wire_helpers import long_compose, upload, wait_state  # noqa: E402

BARE_APP = textwrap.dedent("""
    import sys, uvicorn
    from litestar import Litestar, get

    @get("/status", sync_to_thread=False)
    def status() -> dict:
        return {"status": "IN_PROGRESS", "request_id": "0" * 36, "queue_position": 0, "logs": None,
                "response_url": "http://x/queue/a/b/requests/1", "status_url": "http://x/s",
                "cancel_url": "http://x/c"}

    uvicorn.run(Litestar([status]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def p1(base: str, wav: Path, requests: int) -> None:
    import fal_client
    import fal_client.client as fal_internal

    from thorgen.media.probe import probe

    fal_internal.RUN_URL_FORMAT = f"{base}/run/"
    fal_internal.QUEUE_URL_FORMAT = f"{base}/queue/"
    client = fal_client.SyncClient(key="bench")
    url = upload(base, wav, "audio/wav")

    def timed(call) -> list[float]:
        call()  # warm up
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    direct = timed(lambda: probe(wav))
    run = timed(lambda: client.run("fal-ai/ffmpeg-api/metadata", {"media_url": url}))
    subscribe = timed(lambda: client.subscribe("fal-ai/ffmpeg-api/metadata", {"media_url": url}))
    print(f"\nP1 trivial utility job, {requests} requests each (ms)")
    print(f"  {'path':38} {'p50':>8} {'p99':>8} {'p50 - direct':>13} {'p99 - direct':>13}")
    d50, d99 = statistics.median(direct), percentile(direct, 0.99)
    for name, samples in (("direct probe() in-process", direct), ("fal_client.run (sync HTTP)", run),
                          ("fal_client.subscribe (queue, 0.1 s poll)", subscribe)):
        s50, s99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"  {name:38} {s50:8.2f} {s99:8.2f} {s50 - d50:13.2f} {s99 - d99:13.2f}")


def polls_per_second(url: str, seconds: float, threads: int) -> float:
    count = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal count
        done = 0
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                client.get(url).raise_for_status()
                done += 1
        with lock:
            count += done

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return count / seconds


def p2(base: str, png: Path, seconds: float, threads: int) -> None:
    image_url = upload(base, png, "image/png")
    request_id = long_compose(base, image_url, seconds=600)["request_id"]
    wait_state(base, request_id, "IN_PROGRESS")
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/status")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        status_url = f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/status?logs=0"
        thorgen_rate = polls_per_second(status_url, seconds, threads)
        bare_rate = polls_per_second(f"http://127.0.0.1:{port}/status", seconds, threads)
    finally:
        bare.terminate()
        httpx.put(f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/cancel")
    print(f"\nP2 status polls/s while a compose job runs ({threads} client threads, {seconds:.0f} s each)")
    print(f"  thorgen status route : {thorgen_rate:8.0f} /s")
    print(f"  bare Litestar route  : {bare_rate:8.0f} /s")
    print(f"  ratio thorgen / bare : {thorgen_rate / bare_rate:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wav = make_audio(folder / "tone.wav", seconds=1.0)
        png = make_image(folder / "still.png")
        server = ServerProcess(folder / "data", env={"THORGEN_SERVER__LOG_LEVEL": "warning"}).start()
        try:
            p1(server.base_url, wav, args.requests)
            p2(server.base_url, png, args.seconds, args.threads)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
