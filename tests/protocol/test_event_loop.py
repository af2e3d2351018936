"""The job store is never read or written on the event loop: one slow store call stalls one request.

The fault: a JobStore whose chosen call blocks until the test releases it (standing in for SQLite
waiting on its lock, a checkpoint or a slow disk). Everything else (app, service, lanes) is real,
served by uvicorn on a loopback port from a thread of the test process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from server_process import free_port

from thorgen.app import build_app
from thorgen.config import Config, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.record import Job
from thorgen.jobs.service import JobService
from thorgen.jobs.store import JobStore

HANG_GUARD_S = 10.0  # only reached when the loop is blocked (the defect); a pass never waits on it


class Echo(msgspec.Struct):
    text: str


def echo(ctx: Any, inp: Echo) -> Echo:
    return inp


class StallingStore(JobStore):
    """A JobStore whose ``add`` or ``get`` of one armed call blocks until ``gate`` opens."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.armed: tuple[str, str | None] | None = None  # (method, job id or None for any)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.released_by_gate: bool | None = None

    def _stall(self, method: str, job_id: str) -> None:
        if self.armed and self.armed[0] == method and self.armed[1] in (None, job_id):
            self.armed = None
            self.entered.set()
            # True when the test opened the gate, False when the guard ran out (the loop was blocked).
            self.released_by_gate = self.gate.wait(HANG_GUARD_S)

    def add(self, job: Job) -> Job:
        self._stall("add", job.id)
        return super().add(job)

    def get(self, job_id: str, *, with_input: bool = False) -> Job | None:
        self._stall("get", job_id)
        return super().get(job_id, with_input=with_input)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread of this process, so the store can be a fake."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("stalled", ["status read", "submit insert"])
def test_a_stalled_store_call_does_not_block_other_requests(tmp_path, stalled):
    config = Config(storage=StorageConfig(data_dir=str(tmp_path)))
    service = JobService(config, Registry(config, [Endpoint("test/echo", Echo, Echo, echo, "utility", "echo")]))
    service.store.close()
    store = service.store = StallingStore(tmp_path / "jobs.sqlite3")
    with serve_in_thread(build_app(config, service)) as base, httpx.Client(base_url=base, timeout=60) as http:
        first = http.post("/queue/test/echo", json={"text": "a"}).json()["request_id"]
        other = http.post("/queue/test/echo", json={"text": "b"}).json()["request_id"]
        assert service.wait(first, 30).output == {"text": "a"}
        assert service.wait(other, 30).output == {"text": "b"}
        if stalled == "status read":
            store.armed = ("get", first)
            request = partial(httpx.get, f"{base}/queue/test/echo/requests/{first}/status", timeout=60)
        else:
            store.armed = ("add", None)
            request = partial(httpx.post, f"{base}/queue/test/echo", json={"text": "c"}, timeout=60)
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(request)
            assert store.entered.wait(HANG_GUARD_S)
            # The stalled call holds its own request; another request must be answered meanwhile.
            answered = http.get(f"/queue/test/echo/requests/{other}/status")
            store.gate.set()
            assert answered.status_code == 200 and answered.json()["status"] == "COMPLETED"
            assert slow.result().status_code == 200
    assert store.released_by_gate is True, "the other request waited for the stalled store call"
