"""No job is ever stranded: a state change that fails to write is retried, or the job ends with the reason.

The fault (SQLite's "database or disk is full" for the first N calls of one store method) is injected
by wrapping the real JobStore; the service, its lanes, the endpoint and the database are real.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from thorgen.config import Config, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.record import Job, JobState, LogEntry
from thorgen.jobs.service import JobService
from thorgen.jobs.store import JobStore
from thorgen.jobs.stores import sqlite as store_module
from thorgen.jobs.stores.base import StoreUnavailable


class Anything(msgspec.Struct):
    mode: str


class Done(msgspec.Struct):
    ok: bool


def succeed(ctx, inp: Anything) -> Done:
    ctx.step(1, 1)
    return Done(ok=True)


def disk_is_full() -> sqlite3.OperationalError:
    """The error SQLite raises when the WAL cannot grow (what a full disk gives mark_started)."""
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return exc


class FullDisk:
    """The real store, except that ``method`` fails ``times`` times (a negative count: always)."""

    def __init__(self, real: JobStore, method: str, times: int):
        self._real = real
        self._method = method
        self.left = times
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._method:
            return attribute

        def failing(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.left != 0:
                self.left -= 1
                raise disk_is_full()
            return attribute(*args, **kwargs)

        return failing


def service_with(tmp_path: Path, method: str, times: int) -> tuple[JobService, FullDisk]:
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")))
    registry = Registry(config, [Endpoint("test/succeed", Anything, Done, succeed, "gpu", "always succeeds")])
    service = JobService(config, registry)
    service.retry_delays_s = (0.01, 0.02, 0.04)  # the same back-off, shorter, so the test is quick
    faulty = FullDisk(service.store, method, times)
    service.store = faulty  # type: ignore[assignment]
    return service, faulty


def test_a_start_that_fails_to_write_is_retried_and_the_job_runs(tmp_path):
    service, faulty = service_with(tmp_path, "mark_started", times=3)
    service.start()
    try:
        job = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=30)
        assert job is not None and job.state is JobState.COMPLETED, f"stranded in {job and job.state}"
        assert job.output == {"ok": True} and not job.failed
        assert faulty.calls == 4  # three failures, then the write that took
    finally:
        service.stop()


def test_a_job_that_can_never_start_ends_with_a_507_naming_the_data_folder(tmp_path, caplog):
    service, _ = service_with(tmp_path, "mark_started", times=-1)
    service.start()
    try:
        with caplog.at_level(logging.INFO, logger="thorgen.jobs"):
            job = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=30)
        assert job is not None and job.state is JobState.COMPLETED, f"stranded in {job and job.state}"
        assert job.error_status == 507 and job.error_type == "insufficient_storage"
        assert str(tmp_path / "data") in job.error and "could not start" in job.error
        # The server log says which job failed, where, and why.
        line = next(r.getMessage() for r in caplog.records if f"{job.id} (test/succeed) failed" in r.getMessage())
        assert "507 insufficient_storage" in line and "full" in line
    finally:
        service.stop()


def test_a_finish_that_fails_to_write_is_recorded_once_the_disk_allows(tmp_path):
    # More failures than the bounded retries allow: the finisher thread takes the job over.
    service, faulty = service_with(tmp_path, "finish", times=6)
    service.start()
    try:
        job = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=60)
        assert job is not None and job.state is JobState.COMPLETED, f"stranded in {job and job.state}"
        assert job.output == {"ok": True} and not job.failed
        assert faulty.calls == 7
    finally:
        service.stop()


def test_status_and_result_reads_never_decode_the_input(tmp_path, monkeypatch):
    service, _ = service_with(tmp_path, "nothing", times=0)
    big = {"mode": "ok", "padding": "x" * 5_000_000}  # ignored by the endpoint, stored with the job
    service.start()
    try:
        job = service.wait(service.submit("test/succeed", big).id, timeout=30)
        assert job is not None and job.output == {"ok": True}
        decoded: list[int] = []
        real_decode = store_module._decode

        def counting(data: Any, *args: Any, **kwargs: Any) -> Any:
            decoded.append(len(data))
            return real_decode(data, *args, **kwargs)

        monkeypatch.setattr(store_module, "_decode", counting)
        status = service.get(job.id)  # what every status poll, stream wake-up and result read does
        assert status is not None and status.output == {"ok": True} and status.input is None
        assert service.store.in_state(JobState.COMPLETED)[0].input is None
        assert decoded and max(decoded) < 1000, f"a status read decoded {max(decoded)} bytes"
        # The worker still gets the whole input when it asks for it.
        assert service.store.get(job.id, with_input=True).input == big
    finally:
        service.stop()


def test_state_changes_commit_with_a_full_sync(tmp_path):
    # In WAL mode synchronous=NORMAL may lose the last commits on a power cut; a job's state changes
    # must not be among them. Every statement the connection runs is traced.
    store = JobStore(tmp_path / "jobs.sqlite3")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        job = store.add(Job(id="j1", endpoint_id="test/succeed", input={"mode": "ok"}, lane="gpu"))
        store.add_log(job.id, LogEntry("step 1/1", "INFO", 0.0))
        store.mark_started(job.id)
        store.request_cancel(job.id)
        store.finish(job.id, output={"ok": True})
    finally:
        store.close()
    level = "NORMAL"
    synced: dict[str, list[bool]] = {}
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            level = statement.split("=")[1]
        elif statement.startswith(("INSERT", "UPDATE")):
            synced.setdefault(" ".join(statement.split()[:3]), []).append(level == "FULL")
    assert synced == {
        "INSERT INTO jobs": [True], "INSERT INTO job_inputs": [True], "UPDATE jobs SET": [True, True, True],
        "INSERT INTO logs": [False],  # progress lines: no sync of their own
    }


@pytest.fixture(autouse=True)
def _quiet_retries(caplog):
    caplog.set_level(logging.ERROR, logger="thorgen.lanes")


class InputUnreadable:
    """The real store, except that reading a job's input fails ``times`` times (negative: always)
    with an I/O error that is not a full disk; every other call is the real one."""

    def __init__(self, real: JobStore, times: int):
        self._real = real
        self.left = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get(self, job_id: str, *, with_input: bool = False) -> Job | None:
        if with_input and self.left != 0:
            self.left -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._real.get(job_id, with_input=with_input)


def test_a_started_job_whose_input_cannot_be_read_ends_with_the_reason(tmp_path):
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")))
    registry = Registry(config, [Endpoint("test/succeed", Anything, Done, succeed, "gpu", "always succeeds")])
    service = JobService(config, registry)
    service.retry_delays_s = (0.01, 0.02)
    service.store = InputUnreadable(service.store, times=-1)  # type: ignore[assignment]
    service.start()
    try:
        job = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=30)
        assert job is not None and job.state is JobState.COMPLETED, f"stranded in {job and job.state}"
        assert job.error_status == 500 and job.error_type == "internal_error"
        assert "could not give this job its input" in job.error and "disk I/O error" in job.error
        # The lane goes on: the next job (its input readable again) runs.
        service.store = service.store._real  # type: ignore[attr-defined]
        fine = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=30)
        assert fine is not None and fine.output == {"ok": True}
    finally:
        service.stop()


class LogsUnreachable:
    """The real store, except that adding a log line fails as an unreachable shared database does."""

    def __init__(self, real: JobStore):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def add_log(self, job_id: str, entry: LogEntry) -> None:
        raise StoreUnavailable("connection refused")


def test_a_job_whose_progress_lines_cannot_be_written_still_succeeds(tmp_path, caplog):
    # PostgreSQL away for a moment mid-job (cluster mode): the progress lines are lost, not the job.
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")))
    registry = Registry(config, [Endpoint("test/succeed", Anything, Done, succeed, "gpu", "always succeeds")])
    service = JobService(config, registry)
    service.store = LogsUnreachable(service.store)  # type: ignore[assignment]
    service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="thorgen.jobs"):
            job = service.wait(service.submit("test/succeed", {"mode": "ok"}).id, timeout=30)
        assert job is not None and job.state is JobState.COMPLETED and not job.failed, job and job.error
        assert job.output == {"ok": True}
        assert any("a log line was lost" in record.getMessage() for record in caplog.records)
    finally:
        service.stop()
