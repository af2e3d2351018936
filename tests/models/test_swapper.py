"""The swapper with real torch modules and small budgets: what stays, what goes, and what comes back."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import psutil
import pytest
import torch

from thorgen.config import Config, load_config
from thorgen.models.memory import Budget, DeviceInfo, compute_budget, estimate_bytes, pipeline_bytes
from thorgen.models.swapper import ModelSwapper, ModelTooLarge, NoRoom

MB = 1024 * 1024


class Weights(torch.nn.Module):
    """A model of an exact size: one fp32 parameter of ``size`` bytes."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size // 4), requires_grad=False)


class Zoo:
    """A loader over named sizes that records what it was asked to load."""

    def __init__(self, sizes: dict[str, int], estimates: dict[str, int] | None = None):
        self.sizes = sizes
        self.estimates = estimates or sizes
        self.loads: list[str] = []

    def load(self, name: str) -> Weights:
        self.loads.append(name)
        return Weights(self.sizes[name])

    def estimate(self, name: str) -> int:
        return self.estimates[name]


def swapper_for(zoo: Zoo, budget: int, pinned: set[str] = frozenset()) -> ModelSwapper:
    return ModelSwapper(Budget(budget, "test"), zoo.load, zoo.estimate, pinned=lambda name: name in pinned)


def use(swapper: ModelSwapper, *names: str) -> None:
    for name in names:
        with swapper.lease(name) as lease:
            assert isinstance(lease.pipeline, Weights)


def test_least_recently_used_model_goes_first():
    zoo = Zoo({"a": MB, "b": MB, "c": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2)
    use(swapper, "a", "b", "a", "c")  # b is now the least recently used
    assert sorted(swapper.loaded_names()) == ["a", "c"]
    assert zoo.loads == ["a", "b", "c"] and swapper.stats.evictions == 1
    use(swapper, "b")  # then a (used before c) goes
    assert sorted(swapper.loaded_names()) == ["b", "c"]
    assert swapper.held <= swapper.budget.bytes


def test_pinned_model_is_never_evicted():
    zoo = Zoo({"a": MB, "b": MB, "c": MB, "d": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2, pinned={"a"})
    use(swapper, "a", "b", "c", "d")
    assert sorted(swapper.loaded_names()) == ["a", "d"]
    assert zoo.loads.count("a") == 1


def test_leased_models_stay_and_a_load_that_cannot_fit_is_refused():
    zoo = Zoo({"a": MB, "b": MB, "c": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2)
    with swapper.lease("a"), swapper.lease("b"):
        with pytest.raises(NoRoom) as caught:
            use(swapper, "c")
        assert caught.value.status == 507 and "a 1.00 MiB" in str(caught.value.detail)
        assert sorted(swapper.loaded_names()) == ["a", "b"]
    use(swapper, "c")  # once the leases end, c fits by evicting the older one
    assert "c" in swapper.loaded_names()


def test_model_larger_than_the_whole_budget_is_refused_before_loading():
    zoo = Zoo({"small": MB, "huge": 4 * MB})
    swapper = swapper_for(zoo, budget=2 * MB)
    use(swapper, "small")
    with pytest.raises(ModelTooLarge) as caught:
        swapper.check_fits("huge")
    assert caught.value.status == 507 and "huge" in str(caught.value.detail)
    with pytest.raises(ModelTooLarge):
        use(swapper, "huge")
    assert zoo.loads == ["small"] and swapper.loaded_names() == ["small"]  # nothing was evicted for it


def test_an_estimate_that_was_too_low_is_corrected_after_the_load():
    zoo = Zoo({"a": MB, "b": 2 * MB, "c": 3 * MB}, estimates={"a": MB, "b": MB, "c": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2)
    use(swapper, "a", "b")  # b really takes 2 MB: a has to go after all
    assert swapper.loaded_names() == ["b"] and swapper.held == 2 * MB
    assert swapper.size_of("b") == 2 * MB  # measured size replaces the estimate
    with pytest.raises(ModelTooLarge):
        use(swapper, "c")  # 3 MB measured at load: loaded, found too large, unloaded again
    assert "c" not in swapper.loaded_names() and swapper.held <= swapper.budget.bytes


def test_an_estimate_too_low_with_nothing_to_unload_keeps_the_budget():
    """b's files say 1 MB but it takes 2 MB; a (leased) cannot go: b is unloaded again and refused,
    with the measured figures, and asking again is refused before any load."""
    zoo = Zoo({"a": MB, "b": 2 * MB}, estimates={"a": MB, "b": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2)
    with swapper.lease("a"):
        with pytest.raises(NoRoom) as caught:
            use(swapper, "b")
        message = str(caught.value.detail)
        assert "needs 2.00 MiB" in message and "a 1.00 MiB" in message and "2.50 MiB budget" in message, message
        assert swapper.loaded_names() == ["a"] and swapper.held == MB <= swapper.budget.bytes
        with pytest.raises(NoRoom):
            use(swapper, "b")  # the next request is refused too, from the measured size, without loading
        assert zoo.loads == ["a", "b"] and swapper.held <= swapper.budget.bytes
    use(swapper, "b")  # once a is free it goes, and b fits
    assert swapper.loaded_names() == ["b"] and swapper.held == 2 * MB
    assert swapper.stats.peak_held <= swapper.budget.bytes


def test_an_estimate_too_low_beside_a_pinned_model_keeps_the_budget():
    zoo = Zoo({"pin": MB, "b": 2 * MB}, estimates={"pin": MB, "b": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2, pinned={"pin"})
    use(swapper, "pin")
    with pytest.raises(NoRoom) as caught:
        use(swapper, "b")
    assert "pin 1.00 MiB" in str(caught.value.detail)
    assert swapper.loaded_names() == ["pin"] and swapper.held <= swapper.budget.bytes


def test_evict_of_a_model_in_use_is_refused_and_it_stays():
    zoo = Zoo({"a": MB})
    swapper = swapper_for(zoo, budget=10 * MB)
    with swapper.lease("a") as lease:
        with pytest.raises(RuntimeError, match="in use"):
            swapper.evict("a")
        assert swapper.loaded_names() == ["a"] and isinstance(lease.pipeline, Weights)
        assert swapper.evict_all(include_pinned=True) == 0  # evict_all passes over it too
    assert swapper.evict("a") == MB and swapper.loaded_names() == [] and swapper.held == 0
    assert swapper.evict("a") == 0  # not loaded: nothing to do


def _held_by_this_process() -> int:
    """Resident plus swapped-out bytes: a busy machine may swap the test's pages out between reads."""
    gc.collect()
    info = psutil.Process(os.getpid()).memory_full_info()
    return info.rss + getattr(info, "swap", 0)


def test_eviction_really_returns_the_memory():
    size = 256 * MB
    zoo = Zoo({"big": size, "other": MB})
    swapper = swapper_for(zoo, budget=size + MB // 2)
    before = _held_by_this_process()
    use(swapper, "big")
    loaded = _held_by_this_process()
    assert loaded - before > 0.8 * size
    use(swapper, "other")  # does not fit beside big: big is evicted
    after = _held_by_this_process()
    assert swapper.loaded_names() == ["other"]
    assert loaded - after > 0.8 * size, f"RSS {before / MB:.0f} -> {loaded / MB:.0f} -> {after / MB:.0f} MB"
    assert swapper.stats.leaks == []


def test_a_model_still_referenced_elsewhere_is_reported():
    zoo = Zoo({"a": MB, "b": MB})
    swapper = swapper_for(zoo, budget=MB + MB // 2)
    with swapper.lease("a") as lease:
        kept = lease.pipeline  # a caller that keeps the model past its lease
    use(swapper, "b")
    assert swapper.stats.leaks == ["a"]
    del kept


def test_budget_from_unified_memory_counts_what_thorgen_holds():
    device = DeviceInfo("cuda", "Jetson Thor (simulated)", unified=True)
    held = 3 * 1024**3
    # Other processes change MemAvailable all the time: bracket the read instead of guessing a tolerance.
    low = psutil.virtual_memory().available
    budget = compute_budget(0, 0.5, device, held=held)
    high = psutil.virtual_memory().available
    low, high = min(low, high), max(low, high)
    assert 0.5 * (low + held) - 1 <= budget.bytes <= 0.5 * (high + held) + 1
    assert "MemAvailable" in budget.how and "held by thorgen" in budget.how
    assert compute_budget(123456, 0.5, device).bytes == 123456


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    from thorgen.families import write_missing_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(root), "THORGEN_RUNTIME__TINY": "1"})
    write_missing_tiny(config)
    return config


def test_estimate_from_files_matches_the_measured_size(tiny_config: Config):
    from thorgen.models.loaders import Loader

    loader = Loader(tiny_config)
    pipeline = loader.load("flux-dev")
    measured = pipeline_bytes(pipeline)
    assert loader.estimate("flux-dev") == pytest.approx(measured, rel=0.01)
    half = estimate_bytes(Path(tiny_config.model_path("flux-dev")), "bfloat16")
    assert half == pytest.approx(loader.estimate("flux-dev") / 2, rel=0.01)


def test_pipelines_made_with_from_pipe_share_modules_and_bytes(tiny_config: Config):
    from diffusers import FluxImg2ImgPipeline

    from thorgen.models.loaders import Loader

    loader = Loader(tiny_config)
    swapper = ModelSwapper(Budget(100 * MB, "test"), loader.load, loader.estimate)
    with swapper.lease("flux-dev") as lease:
        held = swapper.held
        image_to_image = lease.derived(FluxImg2ImgPipeline)
        assert image_to_image is lease.derived(FluxImg2ImgPipeline)  # built once
        assert image_to_image.transformer is lease.pipeline.transformer
        assert image_to_image.text_encoder_2 is lease.pipeline.text_encoder_2
        assert pipeline_bytes(image_to_image) == pipeline_bytes(lease.pipeline) == held
        del image_to_image  # a test that keeps a reference would (rightly) be reported as a leak
    del lease
    assert swapper.held == held
    swapper.evict("flux-dev")
    assert swapper.stats.leaks == [] and swapper.held == 0


def test_info_does_not_wait_for_a_load_in_progress():
    """/info and /metrics read the swapper on the event loop; a long load must not block them."""
    import threading

    release, loading_started, answered = threading.Event(), threading.Event(), threading.Event()
    zoo = Zoo({"slow": MB, "fast": MB})
    seen: dict[str, object] = {}

    def slow_load(name: str) -> Weights:
        if name == "slow":
            loading_started.set()  # preload holds the swapper's lock from here until the load returns
            release.wait(30)
        return zoo.load(name)

    def read() -> None:
        seen["snapshot"], seen["names"] = swapper.snapshot(), swapper.loaded_names()
        answered.set()

    swapper = ModelSwapper(Budget(10 * MB, "test"), slow_load, zoo.estimate)
    loading = threading.Thread(target=swapper.preload, args=("slow",))
    loading.start()
    try:
        assert loading_started.wait(30)
        threading.Thread(target=read, daemon=True).start()
        # The load cannot end before release is set, so an answer now means the reads took no lock.
        assert answered.wait(30), "snapshot() / loaded_names() waited for the load's lock"
        assert seen["snapshot"]["loaded"] == [] and seen["names"] == []
    finally:
        release.set()
        loading.join(30)
    assert swapper.loaded_names() == ["slow"]


def test_what_an_acceleration_cache_held_counts_with_its_model_from_then_on():
    """A cache's state (fal's acceleration) is freed after each job, but the next job of that model
    needs the room again: after a job reports it, the model's footprint includes it, loaded or not."""
    zoo = Zoo({"a": MB, "b": MB, "c": MB})
    swapper = swapper_for(zoo, budget=2 * MB + MB // 2)
    use(swapper, "b", "a")  # both fit: 2 MB of 2.5; b is the least recently used
    with swapper.lease("a") as lease:
        lease.hold_cache_bytes(MB)  # a's cache held 1 MB during this job
    assert swapper.held == 3 * MB and swapper.size_of("a") == 2 * MB
    assert {m["name"]: m["cache_bytes"] for m in swapper.snapshot()["loaded"]} == {"a": MB, "b": 0}
    use(swapper, "c")  # c (1 MB) fits only once b and a (1 MB + its 1 MB cache) are both gone
    assert swapper.loaded_names() == ["c"] and swapper.stats.evictions == 2
    assert swapper.size_of("a") == 2 * MB  # remembered after eviction, for the room its next load needs
