"""The CUDA paths a CPU machine cannot exercise: the loader putting a model on the GPU, the swapper's
accounting against what CUDA really holds, and a real out-of-memory error under a small memory cap
that evicts the other model and succeeds on the retry.

Skipped, with the reason, where torch sees no CUDA device. On a GPU box:
    PYTHONPATH=src .venv/bin/python -m pytest tests/gpu -q
(benchmarks/gpu/run_all.py runs them too.)
"""

from __future__ import annotations

import gc
from pathlib import Path

import msgspec
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: these tests exercise GPU memory and run only on a GPU")

MB = 1024 * 1024


def allocated() -> int:
    gc.collect()
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def test_the_loader_puts_a_model_on_cuda(tmp_path: Path):
    from thorgen.config import Config, ModelConfig, RuntimeConfig, StorageConfig
    from thorgen.families.flux import build_tiny as build_flux
    from thorgen.models.loaders import Loader
    from thorgen.models.tiny import write_tiny

    write_tiny(build_flux, tmp_path / "models" / "flux-dev")
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")),
                    runtime=RuntimeConfig(),
                    models={"flux-dev": ModelConfig(family="flux", path="flux-dev", pipeline="FluxPipeline",
                                                    dtype="bfloat16", device="auto")})
    before = allocated()
    pipe = Loader(config).load("flux-dev")
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name)
        assert {p.device.type for p in module.parameters()} == {"cuda"}, name
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}, name
    assert allocated() > before
    del pipe


def test_the_swappers_accounting_matches_cuda_and_eviction_returns_the_memory():
    from thorgen.models.memory import Budget
    from thorgen.models.swapper import ModelSwapper

    def load(name: str) -> torch.nn.Module:
        return torch.nn.Linear(4096, 4096, device="cuda")  # 64 MiB of fp32 weights (+ 16 KiB bias)

    swapper = ModelSwapper(Budget(100 * MB, "test: room for one"), load, lambda name: 64 * MB)
    baseline = allocated()
    with swapper.lease("a"):
        pass
    held_a = allocated() - baseline
    held = swapper.held() if callable(swapper.held) else swapper.held  # a method here, a property on main
    assert held == held_a == 4096 * 4096 * 4 + 4096 * 4
    with swapper.lease("b"):  # over the budget with "a": the swapper evicts it first
        pass
    assert swapper.loaded_names() == ["b"]
    assert allocated() - baseline == held_a, "evicting 'a' did not return its CUDA memory"
    swapper.evict_all()
    assert allocated() == baseline


class Ask(msgspec.Struct):
    megabytes: int


class Answer(msgspec.Struct):
    attempts: int
    loaded_during_success: list[str]


def test_a_real_out_of_memory_evicts_the_other_model_and_the_retry_succeeds(tmp_path: Path):
    """CUDA is capped a little above one resident model plus the job's work; the job's allocation
    really fails while the bystander is loaded, and succeeds after the service evicts it."""
    from thorgen.config import Config, ModelConfig, StorageConfig
    from thorgen.families.base import Endpoint
    from thorgen.families.registry import Registry
    from thorgen.jobs.record import JobState
    from thorgen.jobs.service import JobService
    from thorgen.models.memory import Budget
    from thorgen.models.swapper import ModelSwapper

    models = {name: ModelConfig(family="test", path=name) for name in ("worker", "bystander")}
    for name in models:
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "weights").write_bytes(b"x")
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")),
                    models=models)
    attempts: list[int] = []

    def run(ctx, ask: Ask) -> Answer:
        attempts.append(1)
        with ctx.lease():
            work = torch.empty(ask.megabytes * MB, dtype=torch.uint8, device="cuda")  # really allocates
            loaded = service.runtime.swapper.loaded_names()
            del work
        return Answer(attempts=len(attempts), loaded_during_success=sorted(loaded))

    def use_bystander(ctx, ask: Ask) -> Answer:
        with ctx.lease():
            pass
        return Answer(attempts=1, loaded_during_success=[])

    registry = Registry(config, [
        Endpoint("test/worker", Ask, Answer, run, "gpu", "allocates on the GPU", model="worker"),
        Endpoint("test/bystander", Ask, Answer, use_bystander, "gpu", "holds GPU memory", model="bystander"),
    ])
    service = JobService(config, registry)
    model_mb = 512
    service.runtime._swapper = ModelSwapper(  # a budget that keeps both: only CUDA itself says no
        Budget(10 * model_mb * MB, "test"),
        lambda name: torch.nn.Linear(model_mb * MB // 4 // 1024, 1024, bias=False, device="cuda"),
        lambda name: model_mb * MB)
    total = torch.cuda.get_device_properties(0).total_memory
    # Two models fit (1024 MB), one model and 768 MB of work fit (1280), both and the work do not (1792).
    cap = allocated() + (2 * model_mb + 384) * MB
    torch.cuda.set_per_process_memory_fraction(cap / total)
    service.start()
    assert service.runtime.ready.wait(300)  # model jobs wait for the warm-up, which imports diffusers
    try:
        warm = service.wait(service.submit("test/bystander", {"megabytes": 0}).id, timeout=60)
        assert not warm.failed
        job = service.wait(service.submit("test/worker", {"megabytes": 768}).id, timeout=60)
        assert job.state is JobState.COMPLETED and not job.failed, job.error
        assert job.output == {"attempts": 2, "loaded_during_success": ["worker"]}
        messages = [entry.message for entry in service.logs(job.id)]
        assert any("out of memory" in m for m in messages), messages
    finally:
        service.stop()
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
