"""An out-of-memory error in a GPU job: unload every other model, retry once, then fail clearly.

The OOM itself is injected (a CPU machine cannot run out of GPU memory on cue); the job service,
the swapper and the models it unloads are real.
"""

from __future__ import annotations

import msgspec
import torch

from thorgen.config import Config, ModelConfig, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.record import JobState
from thorgen.jobs.service import JobService
from thorgen.models.memory import Budget
from thorgen.models.swapper import ModelSwapper

MB = 1024 * 1024


class Ask(msgspec.Struct):
    failures: int  # how many attempts run out of memory before one succeeds


class Answer(msgspec.Struct):
    attempts: int
    loaded_during_success: list[str]


def make_service(tmp_path) -> tuple[JobService, dict[str, int]]:
    models = {name: ModelConfig(family="test", path=name) for name in ("worker", "bystander")}
    for name in models:
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "weights").write_bytes(b"x")
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")),
                    models=models)
    attempts: dict[str, int] = {}

    def run(ctx, ask: Ask) -> Answer:
        attempts[ctx.request_id] = attempts.get(ctx.request_id, 0) + 1
        with ctx.lease() as lease:
            assert isinstance(lease.pipeline, torch.nn.Module)
            if attempts[ctx.request_id] <= ask.failures:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
            loaded = service.runtime.swapper.loaded_names()
        return Answer(attempts=attempts[ctx.request_id], loaded_during_success=sorted(loaded))

    def use_bystander(ctx, ask: Ask) -> Answer:
        with ctx.lease():
            pass
        return Answer(attempts=1, loaded_during_success=[])

    registry = Registry(config, [
        Endpoint("test/worker", Ask, Answer, run, "gpu", "runs out of memory on cue", model="worker"),
        Endpoint("test/bystander", Ask, Answer, use_bystander, "gpu", "loads another model", model="bystander"),
    ])
    service = JobService(config, registry)
    service.runtime._swapper = ModelSwapper(  # real swapper, small real modules; the bystander is pinned
        Budget(100 * MB, "test"), lambda name: torch.nn.Linear(256, 256), lambda name: 300_000,
        pinned=lambda name: name == "bystander")
    return service, attempts


def test_out_of_memory_unloads_the_others_and_retries_once(tmp_path):
    service, attempts = make_service(tmp_path)
    service.start()
    assert service.runtime.ready.wait(300)  # model jobs wait for the warm-up, which imports diffusers
    try:
        warm = service.wait(service.submit("test/bystander", {"failures": 0}).id, timeout=20)
        assert not warm.failed and service.runtime.swapper.loaded_names() == ["bystander"]
        assert service.runtime.swapper.snapshot()["loaded"][0]["pinned"] is True
        job = service.wait(service.submit("test/worker", {"failures": 1}).id, timeout=20)
        assert job.state is JobState.COMPLETED and not job.failed, job.error
        assert job.output == {"attempts": 2, "loaded_during_success": ["worker"]}
        messages = [entry.message for entry in service.logs(job.id)]
        assert any("out of memory" in m and "trying once more" in m for m in messages), messages
    finally:
        service.stop()


def test_out_of_memory_twice_fails_clearly_and_the_lane_goes_on(tmp_path):
    service, attempts = make_service(tmp_path)
    service.start()
    assert service.runtime.ready.wait(300)  # model jobs wait for the warm-up, which imports diffusers
    try:
        job = service.wait(service.submit("test/worker", {"failures": 5}).id, timeout=20)
        assert job.failed and job.error_status == 507 and job.error_type == "out_of_memory"
        assert "Out of memory running test/worker" in job.error and "Tried to allocate" in job.error
        assert attempts[job.id] == 2  # retried once, not more
        after = service.wait(service.submit("test/worker", {"failures": 0}).id, timeout=20)
        assert not after.failed and after.output["attempts"] == 1
    finally:
        service.stop()


def test_after_the_second_out_of_memory_nothing_stays_loaded(tmp_path):
    """The job that ran out twice, and the pinned bystander, are all unloaded: the memory is back."""
    service, attempts = make_service(tmp_path)
    service.start()
    try:
        warm = service.wait(service.submit("test/bystander", {"failures": 0}).id, timeout=20)
        assert not warm.failed and service.runtime.swapper.loaded_names() == ["bystander"]
        job = service.wait(service.submit("test/worker", {"failures": 5}).id, timeout=20)
        assert job.failed and job.error_type == "out_of_memory" and attempts[job.id] == 2
        assert service.runtime.swapper.loaded_names() == [] and service.runtime.swapper.held == 0
    finally:
        service.stop()
