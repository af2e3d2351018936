"""L1: does the front door stay quick while the GPU lane is busy?

Starts a real ``thorgen serve --tiny`` on a loopback port, then runs two phases of ``--seconds`` each:

idle  ``--clients`` clients each loop: submit a utility job (ffmpeg-api metadata or waveform of a
      small WAV stored on the server), poll its status until COMPLETED, read its result.
busy  the same, while a feeder keeps ``--backlog`` tiny-model jobs (fal-ai/flux/schnell) queued on
      the GPU lane, which on a CPU box runs torch on the same cores as the event loop.

Prints, per phase: jobs submitted / completed / failed / lost (never seen COMPLETED, or gone),
responses with a 5xx status, status-poll latency p50/p99 and utility-job latency (submit to
COMPLETED seen by the poller) p50/p99; then the busy ÷ idle ratio of each percentile.
The goal on the 2-core box: nothing lost, no 5xx, status-poll p99 while busy <= 250 ms.

Run:  .venv/bin/python benchmarks/bench_load.py [--clients 8] [--seconds 60] [--backlog 16]
To measure other sources (e.g. the code before a change), put them first on PYTHONPATH: the server
is a subprocess and imports thorgen from there.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mediagen import make_audio  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from wire_helpers import upload  # noqa: E402

FLUX = {"prompt": "a lighthouse at dusk", "image_size": {"width": 512, "height": 512},
        "num_inference_steps": 4}
POLL_INTERVAL_S = 0.05
DRAIN_S = 300.0  # how long a phase waits, after its clients stop, for every job it submitted


@dataclass
class Tally:
    """What one phase saw; appended to by several threads (list.append is atomic under the GIL)."""

    submitted: list[str] = field(default_factory=list)
    gpu_submitted: list[str] = field(default_factory=list)  # the backlog's share of ``submitted``
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    server_errors: list[int] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    poll_s: list[float] = field(default_factory=list)
    job_s: list[float] = field(default_factory=list)

    def note(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            self.server_errors.append(response.status_code)
        return response


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def status_url(base: str, request_id: str) -> str:
    return f"{base}/queue/fal-ai/ffmpeg-api/requests/{request_id}/status"


def utility_client(base: str, media_url: str, tally: Tally, stop: threading.Event, index: int) -> None:
    endpoints = itertools.cycle(["fal-ai/ffmpeg-api/metadata", "fal-ai/ffmpeg-api/waveform"])
    with httpx.Client(timeout=60) as http:
        for endpoint in endpoints:
            if stop.is_set():
                return
            started = time.perf_counter()
            try:
                submitted = tally.note(http.post(f"{base}/queue/{endpoint}", json={"media_url": media_url}))
                if submitted.status_code != 200:
                    continue
                request_id = submitted.json()["request_id"]
                tally.submitted.append(request_id)
                # Bounded: a job that never completes is counted lost by the drain, not waited on here.
                deadline = time.monotonic() + DRAIN_S
                while time.monotonic() < deadline:
                    polled = time.perf_counter()
                    status = tally.note(http.get(status_url(base, request_id)))
                    tally.poll_s.append(time.perf_counter() - polled)
                    if status.status_code == 200 and status.json()["status"] == "COMPLETED":
                        tally.job_s.append(time.perf_counter() - started)
                        result = tally.note(http.get(f"{base}/queue/{endpoint}/requests/{request_id}"))
                        (tally.completed if result.status_code == 200 else tally.failed).append(request_id)
                        break
                    time.sleep(POLL_INTERVAL_S)
            except httpx.HTTPError as exc:
                tally.transport_errors.append(f"client {index}: {type(exc).__name__}: {exc}")


def backlog_feeder(base: str, backlog: int, tally: Tally, stop: threading.Event) -> None:
    """Keep ``backlog`` tiny-model jobs queued on the GPU lane until ``stop``."""
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            try:
                queued = http.get(f"{base}/info").json()["lanes"]["gpu"]["queued"]
                for _ in range(max(0, backlog - queued)):
                    response = tally.note(http.post(f"{base}/queue/fal-ai/flux/schnell", json=FLUX))
                    if response.status_code == 200:
                        tally.submitted.append(response.json()["request_id"])
                        tally.gpu_submitted.append(response.json()["request_id"])
            except httpx.HTTPError as exc:
                tally.transport_errors.append(f"feeder: {type(exc).__name__}: {exc}")
            stop.wait(0.5)


def drain(base: str, tally: Tally, already: set[str]) -> list[str]:
    """Wait (bounded) for every submitted job not yet seen COMPLETED; return the ones lost."""
    pending = [job for job in tally.submitted if job not in already]
    deadline = time.monotonic() + DRAIN_S
    lost: list[str] = []
    with httpx.Client(timeout=60) as http:
        while pending and time.monotonic() < deadline:
            still = []
            for request_id in pending:
                status = tally.note(http.get(status_url(base, request_id)))
                if status.status_code == 404:
                    lost.append(request_id)
                elif status.json()["status"] == "COMPLETED":
                    result = tally.note(http.get(f"{base}/queue/fal-ai/flux/requests/{request_id}"))
                    (tally.completed if result.status_code == 200 else tally.failed).append(request_id)
                else:
                    still.append(request_id)
            pending = still
            if pending:
                time.sleep(0.5)
    return lost + pending


def phase(base: str, media_url: str, clients: int, seconds: float, backlog: int) -> tuple[Tally, list[str]]:
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=utility_client, args=(base, media_url, tally, stop, index))
               for index in range(clients)]
    if backlog:
        feeder = threading.Thread(target=backlog_feeder, args=(base, backlog, tally, stop))
        feeder.start()
        wait_for_backlog(base, backlog)
    # Measure only what clients see while the phase's conditions hold.
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if backlog:
        feeder.join()
    seen = set(tally.completed) | set(tally.failed)
    lost = drain(base, tally, seen)
    return tally, lost


def wait_for_backlog(base: str, backlog: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lanes = httpx.get(f"{base}/info", timeout=60).json()["lanes"]["gpu"]
        if lanes["busy"] and lanes["queued"] >= backlog // 2:
            return
        time.sleep(0.2)
    raise RuntimeError("the GPU lane never got busy")


def report(name: str, tally: Tally, lost: list[str]) -> dict[str, float]:
    row = {"status_p50": percentile(tally.poll_s, 0.5) * 1000, "status_p99": percentile(tally.poll_s, 0.99) * 1000,
           "job_p50": percentile(tally.job_s, 0.5) * 1000, "job_p99": percentile(tally.job_s, 0.99) * 1000}
    print(f"{name:5} {len(tally.submitted):9} {len(tally.completed):9} {len(tally.failed):6} {len(lost):4} "
          f"{len(tally.server_errors):4} {len(tally.transport_errors):6} {len(tally.poll_s):6} "
          f"{row['status_p50']:8.1f} {row['status_p99']:8.1f} {row['job_p50']:8.1f} {row['job_p99']:8.1f}")
    if tally.gpu_submitted:
        gpu_done = set(tally.gpu_submitted) & set(tally.completed)
        print(f"      of which tiny-model jobs: {len(tally.gpu_submitted)} submitted, {len(gpu_done)} completed")
    for error in tally.transport_errors[:5]:
        print(f"      {error}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--backlog", type=int, default=16, help="tiny-model jobs kept queued while busy")
    parser.add_argument("--models-dir", type=Path, help="tiny models folder to reuse (default: a temp one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models_dir = args.models_dir or root / "models"
        server = ServerProcess(root / "data", args=["--tiny", "--models-dir", str(models_dir)]).start()
        try:
            server.wait_ready(timeout=300)
            info = httpx.get(f"{server.base_url}/info").json()
            print(f"server: torch threads {info['runtime'].get('cpu_threads', 'not reported')}")
            media_url = upload(server.base_url, make_audio(root / "tone.wav", seconds=1.0), "audio/wav")
            print(f"{args.clients} clients, {args.seconds:.0f} s per phase, GPU backlog {args.backlog}")
            print(f"{'phase':5} {'submitted':>9} {'completed':>9} {'failed':>6} {'lost':>4} {'5xx':>4} "
                  f"{'neterr':>6} {'polls':>6} {'st p50':>8} {'st p99':>8} {'job p50':>8} {'job p99':>8}  (ms)")
            idle = report("idle", *phase(server.base_url, media_url, args.clients, args.seconds, 0))
            busy = report("busy", *phase(server.base_url, media_url, args.clients, args.seconds, args.backlog))
            print("busy ÷ idle: " + ", ".join(f"{key} {busy[key] / idle[key]:.1f}×" for key in idle))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
