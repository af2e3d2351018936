"""ModelSwapper: keeps loaded pipelines inside a memory budget and lends them out.

The GPU lane asks for a model with ``lease(name)`` and gets a ready pipeline; when the job ends the
lease is returned and the model stays loaded for the next job. A load that would break the budget
first evicts the least recently used models that nobody leases and that are not pinned. Evicting
drops every reference the swapper holds, collects garbage, empties CUDA's cache and then checks
that the model's modules are really gone; a model something else still holds is reported.

Sizes: before a load, the loader's estimate (safetensors headers); after it, the measured bytes of
parameters and buffers, which replace the estimate from then on. Pipelines derived from a loaded
one (``Lease.derived``, diffusers' ``from_pipe``) share its modules and so its bytes. A job that runs
a cache (fal's ``acceleration``) reports what the cache held (``Lease.hold_cache_bytes``); the largest
such figure is counted with the model from then on, loaded or not, so the budget leaves room for it.

The swapper knows nothing of diffusers: it is handed a ``load(name)`` and an ``estimate(name)``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from thorgen.errors import FalError
from thorgen.models.memory import Budget, accelerator_allocated, pipeline_bytes, release_memory

log = logging.getLogger("thorgen.models")


class ModelTooLarge(FalError):
    def __init__(self, name: str, need: int, budget: Budget):
        super().__init__(
            f"Model '{name}' needs {_size(need)} but the whole model memory budget is {_size(budget.bytes)} "
            f"({budget.how}). Raise runtime.budget_fraction or runtime.budget_bytes, or use a smaller "
            "dtype or model.",
            status=507, error_type="model_too_large")


class NoRoom(FalError):
    def __init__(self, name: str, need: int, held_by: dict[str, int], budget: Budget, *, measured: bool = False):
        self.held_by = held_by
        holders = ", ".join(f"{n} {_size(b)}" for n, b in held_by.items()) or "nothing"
        # measured: the model was loaded, found larger than its estimate, and unloaded again.
        how = " (measured after loading; it was unloaded again)" if measured else ""
        super().__init__(
            f"Model '{name}' needs {_size(need)}{how}, but models that cannot be unloaded now (pinned or in "
            f"use: {holders}) leave too little of the {_size(budget.bytes)} budget",
            status=507, error_type="insufficient_memory")


@dataclass
class Loaded:
    name: str
    pipeline: Any
    bytes: int
    load_seconds: float
    pinned: bool
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    derived: dict[type, Any] = field(default_factory=dict)
    cache_bytes: int = 0  # the most an acceleration cache held during one of its jobs

    @property
    def footprint(self) -> int:
        return self.bytes + self.cache_bytes


class Lease:
    """A loaned model. Use it inside the ``with`` block only; do not keep references past it."""

    def __init__(self, loaded: Loaded, on_cache: Callable[[str, int], None] = lambda name, size: None):
        self.name = loaded.name
        self.pipeline = loaded.pipeline
        self._loaded = loaded
        self._on_cache = on_cache

    def hold_cache_bytes(self, size: int) -> None:
        """A cache on this model held ``size`` bytes during the job (hooks' state, freed after it)."""
        if size > self._loaded.cache_bytes:
            self._loaded.cache_bytes = size
            self._on_cache(self.name, size)

    def derived(self, pipeline_class: Any) -> Any:
        """Another pipeline class over the same modules (e.g. FluxImg2ImgPipeline), built once."""
        if isinstance(self.pipeline, pipeline_class):
            return self.pipeline
        cache = self._loaded.derived
        if pipeline_class not in cache:
            cache[pipeline_class] = pipeline_class.from_pipe(self.pipeline)
        return cache[pipeline_class]


@dataclass
class SwapperStats:
    loads: int = 0
    evictions: int = 0
    peak_held: int = 0  # the most bytes held at once, right after a load
    load_seconds: dict[str, float] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)  # models whose memory did not come back


class ModelSwapper:
    def __init__(
        self,
        budget: Budget,
        load: Callable[[str], Any],
        estimate: Callable[[str], int],
        pinned: Callable[[str], bool] = lambda name: False,
        measure: Callable[[Any], int] = pipeline_bytes,
    ):
        self.budget = budget
        self._load = load
        self._estimate = estimate
        self._pinned = pinned
        self._measure = measure
        self._loaded: dict[str, Loaded] = {}
        self._sizes: dict[str, int] = {}  # measured bytes, kept after eviction
        self._estimates: dict[str, int] = {}  # from the files, until a load measures the truth
        self._cache_sizes: dict[str, int] = {}  # the most an acceleration cache held, kept after eviction
        self._lock = threading.RLock()
        self.stats = SwapperStats()

    # -- what the GPU lane calls ---------------------------------------------------------------

    @contextmanager
    def lease(self, name: str) -> Iterator[Lease]:
        with self._lock:
            loaded = self._ensure(name)
            loaded.leases += 1
            loaded.last_used = time.monotonic()
        try:
            yield Lease(loaded, self._note_cache)
        finally:
            with self._lock:
                loaded.leases -= 1
                loaded.last_used = time.monotonic()

    def preload(self, name: str) -> None:
        with self._lock:
            self._ensure(name)

    def size_of(self, name: str) -> int:
        """Measured bytes if the model was ever loaded, else the estimate from its files; plus the most
        its acceleration cache ever held."""
        cache = self._cache_sizes.get(name, 0)
        if name in self._sizes:
            return self._sizes[name] + cache
        if not self._estimates.get(name):  # 0: not on disk yet; ask again next time
            self._estimates[name] = self._estimate(name)
        return self._estimates[name] + cache

    def _note_cache(self, name: str, size: int) -> None:
        with self._lock:
            self._cache_sizes[name] = max(size, self._cache_sizes.get(name, 0))

    def check_fits(self, name: str) -> None:
        """Refuse a model that could never fit, before anything is unloaded for it."""
        need = self.size_of(name)
        if need > self.budget.bytes:
            raise ModelTooLarge(name, need, self.budget)

    @property
    def held(self) -> int:
        return sum(m.footprint for m in self._loaded.values())

    def loaded_names(self) -> list[str]:
        return list(self._loaded)  # no lock: a load holds it for minutes (see snapshot)

    # -- eviction ----------------------------------------------------------------------------

    def evict(self, name: str) -> int:
        """Unload one model that nobody leases; returns the bytes it held (0 if it was not loaded)."""
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None:
                return 0
            if loaded.leases:
                raise RuntimeError(f"model {name} is in use and cannot be unloaded")
            return self._unload(loaded)

    def evict_all(self, keep: set[str] | frozenset[str] = frozenset(), *, include_pinned: bool = False) -> int:
        """Unload every unleased model not in ``keep`` (pinned ones too with include_pinned)."""
        freed = 0
        with self._lock:
            for loaded in list(self._loaded.values()):
                if loaded.name in keep or loaded.leases or (loaded.pinned and not include_pinned):
                    continue
                freed += self._unload(loaded)
        release_memory()
        return freed

    # -- inside ----------------------------------------------------------------------------------

    def _ensure(self, name: str) -> Loaded:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        need = self.size_of(name)
        if need > self.budget.bytes:
            raise ModelTooLarge(name, need, self.budget)
        self._make_room(name, need)
        started = time.perf_counter()
        pipeline = self._load(name)
        seconds = time.perf_counter() - started
        self._sizes[name] = self._measure(pipeline)
        loaded = Loaded(name, pipeline, self._sizes[name], seconds, pinned=self._pinned(name),
                        cache_bytes=self._cache_sizes.get(name, 0))
        size = loaded.footprint
        pipeline = None  # the Loaded record is the one owner, so an eviction can really free it
        self._loaded[name] = loaded
        self.stats.loads += 1
        self.stats.load_seconds[name] = seconds
        log.info("loaded model %s: %s in %.2f s (held now %s of %s)", name, _size(size), seconds,
                 _size(self.held), _size(self.budget.bytes))
        if size > self.budget.bytes:
            self._unload(loaded)
            raise ModelTooLarge(name, size, self.budget)
        if self.held > self.budget.bytes:  # the estimate was low: make room after the fact
            try:
                self._make_room(name, size)
            except NoRoom as exc:
                # Nothing more can go: this model is the one that must, or the budget would not hold.
                self._unload(loaded)
                raise NoRoom(name, size, exc.held_by, self.budget, measured=True) from None
        self.stats.peak_held = max(self.stats.peak_held, self.held)
        return loaded

    def _make_room(self, name: str, need: int) -> None:
        """Evict least recently used, unleased, unpinned models other than ``name`` until ``need``
        bytes fit beside them (``name`` itself, if already loaded, is not counted)."""
        candidates = sorted((m for m in self._loaded.values() if not m.leases and not m.pinned
                             and m.name != name), key=lambda m: m.last_used)

        def others() -> int:
            return sum(m.footprint for m in self._loaded.values() if m.name != name)

        freed_any = False
        while others() + need > self.budget.bytes and candidates:
            victim = candidates.pop(0)
            log.info("unloading model %s (%s) to make room for %s", victim.name, _size(victim.footprint), name)
            self._unload(victim, collect=False)
            freed_any = True
        if freed_any:
            release_memory()
        if others() + need > self.budget.bytes:
            held_by = {m.name: m.footprint for m in self._loaded.values() if m.name != name}
            raise NoRoom(name, need, held_by, self.budget)

    def _unload(self, loaded: Loaded, *, collect: bool = True) -> int:
        watch = _weak_modules(loaded.pipeline)
        before = accelerator_allocated()
        del self._loaded[loaded.name]
        loaded.pipeline = None
        loaded.derived.clear()
        self.stats.evictions += 1
        if collect:
            release_memory()
        else:
            import gc

            gc.collect()
        alive = [ref for ref in watch if ref() is not None]
        after = accelerator_allocated()
        if alive:
            self.stats.leaks.append(loaded.name)
            log.warning("model %s was unloaded but %d of its modules are still referenced elsewhere; "
                        "its memory did not come back", loaded.name, len(alive))
        elif before is not None and after is not None and before - after < 0.5 * loaded.bytes:
            log.warning("model %s was unloaded but CUDA memory fell by only %s of %s", loaded.name,
                        _size(before - after), _size(loaded.bytes))
        return loaded.bytes

    def snapshot(self) -> dict[str, Any]:
        """For /info and /metrics. Takes no lock: a load holds it for as long as the load takes,
        and these are answered on the event loop. A copy of the table is consistent enough."""
        loaded = list(self._loaded.values())
        return {
            "budget_bytes": self.budget.bytes,
            "budget": self.budget.how,
            "held_bytes": sum(m.footprint for m in loaded),
            "peak_held_bytes": self.stats.peak_held,
            "loads": self.stats.loads,
            "evictions": self.stats.evictions,
            "unreleased": list(self.stats.leaks),
            "loaded": [
                {"name": m.name, "bytes": m.bytes, "cache_bytes": m.cache_bytes,
                 "load_seconds": round(m.load_seconds, 3),
                 "pinned": m.pinned, "in_use": m.leases > 0}
                for m in sorted(loaded, key=lambda m: -m.last_used)
            ],
        }


def _weak_modules(pipeline: Any) -> list[weakref.ref[Any]]:
    components = getattr(pipeline, "components", None)
    objects = list(components.values()) if isinstance(components, dict) else [pipeline]
    refs = []
    for obj in objects:
        try:
            if hasattr(obj, "parameters"):
                refs.append(weakref.ref(obj))
        except TypeError:
            pass
    return refs


def _size(value: int) -> str:
    """Bytes as GiB, or as MiB below 1 GiB so small models never read as "0.00 GiB"."""
    if abs(value) >= 1024**3:
        return f"{value / 1024**3:.2f} GiB"
    return f"{value / 1024**2:.2f} MiB"
