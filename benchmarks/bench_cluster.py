"""What the PostgreSQL job store costs against the embedded SQLite one, and what a second node adds.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_cluster.py [--jobs 100]

1. Store only: add + claim/start + finish of one job, per job (SQLite: add, mark_started, finish; its
   lane pops a local heap. PostgreSQL: add, claim with FOR UPDATE SKIP LOCKED, mark_started, finish).
2. End to end on one node (`thorgen serve --tiny`): cheap utility jobs (ffmpeg metadata of a small
   WAV) submitted over HTTP and waited for, SQLite against PostgreSQL: ms per job and the ratio.
3. One node against two nodes on the same PostgreSQL, jobs submitted round-robin: jobs/s. Caveat:
   both nodes share this machine's cores (2 here, with other work on them), so a second node adds
   lanes, not CPU; on two machines the second node brings its own.

Needs the PostgreSQL server binaries (Debian's postgresql package); initdb runs as `nobody` when root.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mediagen import make_audio  # noqa: E402
from pg_server import PostgresServer, find_bin_dir  # noqa: E402
from server_process import ServerProcess  # noqa: E402

from thorgen.jobs.record import Job  # noqa: E402
from thorgen.jobs.stores.postgres import PostgresJobStore  # noqa: E402
from thorgen.jobs.stores.sqlite import SqliteJobStore  # noqa: E402

METADATA = "fal-ai/ffmpeg-api/metadata"


def store_cycle(n: int, pg_url: str, folder: Path) -> tuple[float, float, float, float]:
    """(sqlite ms per job, postgres ms per job, sqlite ms per start, postgres ms per claim+start)."""
    sqlite = SqliteJobStore(folder / "bench.sqlite3")
    pg = PostgresJobStore(pg_url, "bench-node")
    results = []
    for store in (sqlite, pg):
        started = time.perf_counter()
        claim_total = 0.0
        for index in range(n):
            job_id = f"{type(store).__name__}-{index}"
            store.add(Job(id=job_id, endpoint_id="bench/x", input={"prompt": "x"}, lane="gpu"))
            before = time.perf_counter()
            if isinstance(store, PostgresJobStore):
                claimed = store.claim("gpu", ["bench/x"], [], 30.0)
                assert claimed is not None and claimed[0] == job_id
            assert store.mark_started(job_id)
            claim_total += time.perf_counter() - before
            store.finish(job_id, output={"ok": True})
        results.append(((time.perf_counter() - started) / n * 1000, claim_total / n * 1000))
        store.close()
    return results[0][0], results[1][0], results[0][1], results[1][1]


def run_jobs(servers: list[ServerProcess], upload: str, n: int) -> float:
    """Submit n metadata jobs round-robin over the servers (8 at a time) and wait for all: seconds."""
    def one(index: int) -> None:
        base = servers[index % len(servers)].base_url
        with httpx.Client(timeout=120) as client:
            submitted = client.post(f"{base}/queue/{METADATA}", json={"media_url": upload}).json()
            while True:
                status = client.get(submitted["status_url"]).json()
                if status["status"] == "COMPLETED":
                    break
                time.sleep(0.02)
            assert client.get(submitted["response_url"]).status_code == 200

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started


def node(root: Path, name: str, models: Path, database: str = "") -> ServerProcess:
    env = {"THORGEN_JOBS__DATABASE": database, "THORGEN_JOBS__NODE_ID": name} if database else {}
    return ServerProcess(root / name, env=env, args=["--tiny", "--models-dir", str(models)]).start(60).wait_ready()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (install Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    models = root / "models"
    pg = PostgresServer(bin_dir, durable=True).init().start()  # fsync on, as SQLite's FULL sync is
    try:
        sqlite_ms, pg_ms, sqlite_claim, pg_claim = store_cycle(500, pg.url, root)
        print(f"store, per job (add, start, finish):  SQLite {sqlite_ms:.2f} ms   PostgreSQL {pg_ms:.2f} ms   "
              f"ratio {pg_ms / sqlite_ms:.2f}x")
        print(f"claim latency (SQLite: mark_started after the local heap; PostgreSQL: claim + mark_started): "
              f"SQLite {sqlite_claim:.2f} ms   PostgreSQL {pg_claim:.2f} ms   ratio {pg_claim / sqlite_claim:.2f}x")
        wav = make_audio(root / "tone.wav", seconds=0.5)
        timings = {}
        for label, database in (("SQLite", ""), ("PostgreSQL", pg.url)):
            server = node(root, f"one-{label}", models, database)
            try:
                upload = httpx.post(f"{server.base_url}/rest/storage/upload/initiate",
                                    json={"content_type": "audio/wav", "file_name": "tone.wav"}).json()
                httpx.put(upload["upload_url"], content=wav.read_bytes(), headers={"content-type": "audio/wav"})
                run_jobs([server], upload["file_url"], 10)  # warm
                timings[label] = run_jobs([server], upload["file_url"], args.jobs)
                if label == "PostgreSQL":
                    second = node(root, "two-b", models, database)
                    try:
                        run_jobs([server, second], upload["file_url"], 10)
                        timings["two nodes"] = run_jobs([server, second], upload["file_url"], args.jobs)
                    finally:
                        second.stop()
            finally:
                server.stop()
        n = args.jobs
        print(f"end to end, one node, {n} metadata jobs, 8 clients: SQLite {timings['SQLite'] / n * 1000:.1f} ms/job, "
              f"PostgreSQL {timings['PostgreSQL'] / n * 1000:.1f} ms/job, ratio "
              f"{timings['PostgreSQL'] / timings['SQLite']:.2f}x")
        print(f"PostgreSQL, 1 node: {n / timings['PostgreSQL']:.1f} jobs/s   2 nodes: {n / timings['two nodes']:.1f} "
              f"jobs/s   ratio {timings['PostgreSQL'] / timings['two nodes']:.2f}x (both nodes share this box's cores)")
    finally:
        pg.remove()


if __name__ == "__main__":
    main()
