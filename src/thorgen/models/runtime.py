"""ModelRuntime: the one place the job service meets models.

It creates the swapper when first needed (that is when torch is imported, so a server with no
models never pays for it), and at start, in a background thread: writes missing tiny models in tiny
mode, refuses models that can never fit the budget, and loads the ``preload`` ones. ``ready`` is set
when that is done; /ready answers from it, and every lease waits for it: a job that needs a model
must not import diffusers while the warm-up thread is importing it (a half-imported diffusers has
no pipeline classes yet), nor look for a tiny model that is still being written. Jobs that need no
model (the utility lane) never wait.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from thorgen.errors import FalError
from thorgen.models.installed import model_status
from thorgen.models.swapper import Lease, ModelSwapper

if TYPE_CHECKING:
    from thorgen.config import Config, ModelConfig
    from thorgen.models.loaders import LoadHook
    from thorgen.models.tuning import WarmUp

# The builder of a configured model's tiny version (given the model and the tiny-mode config), or None:
# what the families provide (thorgen.families.tiny_builder); this module names no family.
TinyBuilderFor = Callable[["ModelConfig", "Config"], "Callable[[], Any] | None"]

log = logging.getLogger("thorgen.models")

TINY_NOTE = ("tiny mode: every model is a tiny random-weight checkpoint running on the CPU in fp32; "
             "outputs are noise, not pictures, video or sound")
CPU_SWITCH_INTERVAL_S = 0.001  # see ModelRuntime._set_cpu_threads


class ModelRuntime:
    def __init__(self, config: Config, load_hooks: Mapping[str, LoadHook] | None = None,
                 tiny_builder: TinyBuilderFor | None = None, warm_ups: Mapping[str, WarmUp] | None = None):
        self.config = config
        self.load_hooks = dict(load_hooks or {})  # family -> its load hook (models.loaders.Loader)
        self.warm_ups = dict(warm_ups or {})  # family -> its compile warm-up (models.tuning)
        self.tiny_builder = tiny_builder  # None: tiny mode writes no model (a registry of test endpoints)
        self.ready = threading.Event()
        self.refused: dict[str, str] = {}  # model -> why it can never load here
        self._refusals: dict[str, FalError] = {}  # model -> the error its jobs get
        self._loader: Any = None  # the swapper's Loader, for what tuning did (snapshot)
        self.device: dict[str, Any] = {}
        self.cpu_threads: dict[str, Any] | None = None  # what torch was told, once torch is imported
        self._swapper: ModelSwapper | None = None
        self._lock = threading.Lock()
        self._threads_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._warm_up, name="model-warm-up", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        try:
            if self.config.runtime.tiny:
                self._set_cpu_threads()  # writing the tiny models already runs torch on the CPU
                if self.tiny_builder is not None:
                    write_missing_tiny(self.config, self.tiny_builder)
            installed = [name for name in self.config.models if model_status(self.config, name).installed]
            if not installed:
                return
            swapper = self.swapper
            import diffusers  # noqa: F401  (paid once here, not inside the first job's load time)

            for name in installed:
                try:
                    self._check_settings(name)
                    swapper.check_fits(name)
                except FalError as exc:
                    self.refused[name] = str(exc.detail)
                    self._refusals[name] = exc
                    log.error("model %s can never load here: %s", name, exc.detail)
            for name in installed:
                model = self.config.model(name)
                # A compiled model is warmed up at start, so that no job pays for compiling it.
                if (model.preload or model.compile) and name not in self.refused:
                    try:
                        swapper.preload(name)
                    except Exception:
                        log.exception("preloading model %s failed", name)
        except Exception:
            log.exception("the model runtime could not start; model endpoints will fail")
        finally:
            self.ready.set()

    # -- the swapper -------------------------------------------------------------------------

    @property
    def swapper(self) -> ModelSwapper:
        with self._lock:
            if self._swapper is None:
                self._swapper = self._create_swapper()
            return self._swapper

    @property
    def started(self) -> bool:
        return self._swapper is not None

    def _create_swapper(self) -> ModelSwapper:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise FalError("torch is not installed, so no model can run; install thorgen with its "
                           "dependencies (scripts/setup.sh)", status=424, error_type="torch_missing") from None
        from thorgen.models.loaders import Loader
        from thorgen.models.memory import compute_budget, device_info

        self._set_cpu_threads()
        info = device_info()
        runtime = self.config.runtime
        budget = compute_budget(runtime.budget_bytes, runtime.budget_fraction, info)
        self.device = {"kind": info.kind, "name": info.name, "unified_memory": info.unified}
        log.info("model memory budget: %.2f GiB (%s)", budget.bytes / 1024**3, budget.how)
        loader = self._loader = Loader(self.config, self.load_hooks, self.warm_ups)
        return ModelSwapper(budget, loader.load, loader.estimate,
                            pinned=lambda name: self.config.model(name).pinned)

    def wait_until_warm(self, check: Callable[[], None] | None = None) -> None:
        """Block until the warm-up is done (at once if it is, or if it was never started).

        ``check`` runs about twice a second meanwhile; it may raise to stop waiting (a cancel).
        """
        if self._thread is None:
            return
        while not self.ready.wait(0.5):
            if check is not None:
                check()

    def preparing(self, name: str) -> bool:
        """True while the warm-up may still write this configured model (tiny mode, not ready yet)."""
        return (self.config.runtime.tiny and self._thread is not None and not self.ready.is_set()
                and name in self.config.models)

    def _set_cpu_threads(self) -> None:
        """When models run on the CPU, leave one core to the event loop and the utility lane.

        By default torch runs every matmul on all cores, so while a model works on the CPU (tiny mode,
        or a machine without CUDA) status polls and ffmpeg jobs wait for a core: on a 2-core box a
        poll's p99 went from milliseconds to seconds. The setting is process-wide, so it is made once,
        before torch first computes. With CUDA, torch's CPU threads only feed the GPU: left alone.

        The same holds for the GIL: a pipeline's Python between torch calls holds it, and every
        request the event loop serves waits for it several times (socket, thread hop, reply), each
        time up to the switch interval. 1 ms instead of Python's 5 ms keeps those waits short
        (bench_load: busy status-poll p99 roughly a third) for a negligible cost to the model.
        """
        with self._threads_lock:
            if self.cpu_threads is not None:
                return
            import torch

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            on_cpu = self.config.runtime.tiny or not torch.cuda.is_available()
            if on_cpu:
                sys.setswitchinterval(CPU_SWITCH_INTERVAL_S)
                torch.set_num_threads(max(1, cores - 1))
                try:
                    torch.set_num_interop_threads(max(1, cores - 1))
                except RuntimeError:  # only settable before torch's first parallel work; keep what it has
                    pass
            intra_op, inter_op = torch.get_num_threads(), torch.get_num_interop_threads()
            self.cpu_threads = {"cores": cores, "models_on": "cpu" if on_cpu else "cuda", "limited": on_cpu,
                                "intra_op": intra_op, "inter_op": inter_op,
                                "gil_switch_interval_s": sys.getswitchinterval()}
        if on_cpu:
            log.info("models run on the CPU: torch uses %d of %d cores (%d inter-op), leaving one to the "
                     "event loop and the utility lane; GIL switch interval %g s", intra_op, cores, inter_op,
                     CPU_SWITCH_INTERVAL_S)
        else:
            log.info("models run on CUDA: torch's CPU threads left at %d", intra_op)

    @contextmanager
    def lease(self, name: str) -> Iterator[Lease]:
        self.wait_until_warm()
        self.check(name)
        with self.swapper.lease(name) as lease:
            yield lease

    def check(self, name: str) -> None:
        """At submit: refuse at once a model that can never fit (once the runtime knows)."""
        if name in self._refusals:
            refused = self._refusals[name]  # a fresh error each time: one instance must not collect tracebacks
            raise FalError(refused.detail, status=refused.status, error_type=refused.error_type)
        if self._swapper is not None:
            self._swapper.check_fits(name)

    def after_out_of_memory(self, keep: str | None) -> int:
        """Unload every other model, pinned ones included: the job that ran out is retried once."""
        if self._swapper is None:
            return 0
        return self._swapper.evict_all({keep} if keep else set(), include_pinned=True)

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ready": self.ready.is_set(), "tiny": self.config.runtime.tiny,
                                "refused": dict(self.refused), "cpu_threads": self.cpu_threads}
        if self.config.runtime.tiny:
            data["note"] = TINY_NOTE
        if self._swapper is None:
            data["started"] = False
            return data
        tuned = {name: tuned.as_dict() for name, tuned in self._loader.tuned.items()} if self._loader else {}
        return {**data, "started": True, "device": self.device, **self._swapper.snapshot(), "tuning": tuned}

    def _check_settings(self, name: str) -> None:
        """Refuse at start a model whose quantization or compile setting cannot work on this machine."""
        from thorgen.models.loaders import resolve_device
        from thorgen.models.tuning import refusal

        model = self.config.model(name)
        reason = refusal(name, model.family, model.quantization, model.compile, resolve_device(model.device),
                         can_compile=model.family in self.warm_ups)
        if reason:
            raise FalError(reason, status=424, error_type="unsupported_model_setting")


def write_missing_tiny(config: Config, builder_for: TinyBuilderFor, *, force: bool = False) -> list[str]:
    """Write a tiny checkpoint for every configured model that ``builder_for`` has a builder for."""
    from thorgen.models.tiny import write_tiny

    tiny = as_tiny(config)
    written = []
    for name in sorted(tiny.models):
        build = builder_for(tiny.model(name), tiny)
        if build is None:  # no tiny version, or its family's optional extra is absent
            continue
        if force or not model_status(tiny, name).installed:
            tiny.models_dir.mkdir(parents=True, exist_ok=True)
            from thorgen.logs import adopt_library_loggers

            adopt_library_loggers()  # the builders' warnings in the server's format, and no progress bars
            try:
                write_tiny(build, tiny.model_path(name))
            except FalError as exc:  # e.g. an extra that is installed but will not import: the others still run
                log.error("tiny model %s not written: %s", name, exc.detail)
                continue
            written.append(name)
    return written


def as_tiny(config: Config) -> Config:
    """The same configuration in tiny mode (tiny models' folder, CPU, fp32)."""
    if config.runtime.tiny:
        return config
    import msgspec

    return msgspec.structs.replace(config, runtime=msgspec.structs.replace(config.runtime, tiny=True))
