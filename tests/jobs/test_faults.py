"""Injected faults (a full disk, a crashing endpoint): the job fails clearly, the service goes on."""

from __future__ import annotations

import errno

import msgspec

from thorgen.config import Config, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.record import JobState
from thorgen.jobs.service import JobService


class Anything(msgspec.Struct):
    mode: str


class Done(msgspec.Struct):
    ok: bool


def flaky(ctx, inp: Anything) -> Done:
    # The fault stands in for a real full disk / a bug; everything around it is real.
    if inp.mode == "disk-full":
        raise OSError(errno.ENOSPC, "No space left on device")
    if inp.mode == "bug":
        raise ZeroDivisionError("division by zero")
    ctx.step(1, 1)
    return Done(ok=True)


def test_faults_fail_the_job_with_a_clear_status_and_the_lane_keeps_working(tmp_path):
    config = Config(storage=StorageConfig(data_dir=str(tmp_path)))
    registry = Registry(config, [Endpoint("test/flaky", Anything, Done, flaky, "gpu", "fault injection")])
    service = JobService(config, registry)
    service.start()
    try:
        full = service.wait(service.submit("test/flaky", {"mode": "disk-full"}).id, timeout=10)
        assert full.state is JobState.COMPLETED and full.error_status == 507
        assert full.error_type == "insufficient_storage" and "full" in full.error
        bug = service.wait(service.submit("test/flaky", {"mode": "bug"}).id, timeout=10)
        assert bug.error_status == 500 and "ZeroDivisionError" in bug.error
        fine = service.wait(service.submit("test/flaky", {"mode": "ok"}).id, timeout=10)
        assert fine.output == {"ok": True} and not fine.failed
        assert [entry.message for entry in service.logs(fine.id)][-1] == "step 1/1"
    finally:
        service.stop()
