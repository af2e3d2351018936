"""What a synced commit costs: JobStore state changes (synchronous=FULL) against progress log lines (NORMAL).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_jobstore_sync.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from thorgen.jobs.record import Job, LogEntry
from thorgen.jobs.store import JobStore

N = 200


def main() -> None:
    store = JobStore(Path(tempfile.mkdtemp()) / "jobs.sqlite3")
    try:
        started = time.perf_counter()
        for index in range(N):
            store.add(Job(id=f"job-{index}", endpoint_id="bench/x", input={"prompt": "x"}, lane="gpu"))
        synced = (time.perf_counter() - started) / N
        started = time.perf_counter()
        for index in range(N):
            store.add_log("job-0", LogEntry(f"step {index}/{N}", "INFO", time.time()))
        unsynced = (time.perf_counter() - started) / N
    finally:
        store.close()
    print(f"state change (synchronous=FULL):  {synced * 1000:.3f} ms per commit")
    print(f"log line     (synchronous=NORMAL): {unsynced * 1000:.3f} ms per commit")
    print(f"ratio FULL / NORMAL: {synced / unsynced:.0f}x")


if __name__ == "__main__":
    main()
