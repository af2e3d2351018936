"""A job's outputs are put in place when it succeeds, before COMPLETED, and never when it fails."""

from __future__ import annotations

import msgspec

from thorgen.config import Config, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.service import JobService


class Ask(msgspec.Struct):
    fail: bool


class Made(msgspec.Struct):
    url: str


def write_then_maybe_fail(ctx, inp: Ask) -> Made:
    key, path = ctx.new_output("txt")
    path.write_bytes(b"complete")
    assert not ctx._service.media.exists(key)  # written, but not served while the run goes on
    if inp.fail:
        raise RuntimeError("the run fails after writing")
    return Made(url=ctx.url(key))


def test_outputs_appear_only_for_a_successful_job(tmp_path):
    config = Config(storage=StorageConfig(data_dir=str(tmp_path)))
    registry = Registry(config, [Endpoint("test/write", Ask, Made, write_then_maybe_fail, "utility", "writes")])
    service = JobService(config, registry)
    service.start()
    try:
        done = service.wait(service.submit("test/write", {"fail": False}).id, timeout=10)
        assert done is not None and done.output is not None
        key = done.output["url"].rsplit("/", 1)[1]
        assert service.media.path(key).read_bytes() == b"complete"  # in place once COMPLETED is seen
        failed = service.wait(service.submit("test/write", {"fail": True}).id, timeout=10)
        assert failed is not None and failed.failed
    finally:
        service.stop()
    files = sorted(path.name for path in (tmp_path / "files").iterdir())
    assert files == [key]  # the failed run's output and every temporary are gone
