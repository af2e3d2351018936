"""Loading a configured model from its folder: local files only, one family-agnostic path.

Nothing here reaches a model hub: ``local_files_only=True`` on every load, and weights come only
from ``thorgen models pull``. The swapper calls ``load`` and ``estimate``. ``load`` checks the model
is installed and its device exists, then hands a ``LoadRequest`` to the load hook of the model's
family (``Family.load``, given to the Loader by the composition root); a family without a hook of
its own gets ``load_diffusers``, the plain diffusers loader, which hooks also call with extra
components (Cosmos's safety checker) before adjusting what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thorgen.errors import FalError
from thorgen.models import tuning
from thorgen.models.installed import model_status
from thorgen.models.memory import estimate_bytes

if TYPE_CHECKING:
    from thorgen.config import Config, ModelConfig

log = logging.getLogger("thorgen.models")


@dataclass(frozen=True)
class LoadRequest:
    """Everything a load hook needs: which model, where it is, how to load it, and the config."""

    name: str  # the [models.NAME] entry
    path: str  # its installed folder (or file)
    model: ModelConfig  # its settings as they apply now (tiny mode: CPU, fp32)
    device: str  # resolved and checked: "cpu", "cuda", "cuda:1"...
    config: Config


LoadHook = Callable[[LoadRequest], Any]


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Loader:
    def __init__(self, config: Config, hooks: Mapping[str, LoadHook] | None = None,
                 warm_ups: Mapping[str, tuning.WarmUp] | None = None):
        self.config = config
        self.hooks = dict(hooks or {})  # family name -> its load hook; absent: load_diffusers
        self.warm_ups = dict(warm_ups or {})  # family name -> its compile warm-up; absent: no compile
        self.tuned: dict[str, tuning.Tuned] = {}  # what tuning did to each model at its last load

    def estimate(self, name: str) -> int:
        return estimate_bytes(self.config.model_path(name), self.config.model(name).dtype)

    def load(self, name: str) -> Any:
        status = model_status(self.config, name)
        if not status.installed:
            raise FalError(f"Model '{name}' is not installed (looked in {status.path}). Install it with: "
                           f"{status.install_hint}", status=424, error_type="model_not_installed")
        model = self.config.model(name)
        device = self._device(name, model.device)
        from thorgen.logs import adopt_library_loggers

        adopt_library_loggers()  # the libraries' warnings in the server's format, and no progress bars
        hook = self.hooks.get(model.family, load_diffusers)
        pipeline = hook(LoadRequest(name=name, path=status.path, model=model, device=device, config=self.config))
        self.tuned[name] = tuning.tune(name, model.family, pipeline, quantization=model.quantization,
                                       compile=model.compile, device=device, data_dir=self.config.data_dir,
                                       tiny=self.config.runtime.tiny, warm_up=self.warm_ups.get(model.family))
        return pipeline

    @staticmethod
    def _device(name: str, setting: str) -> str:
        import torch

        device = resolve_device(setting)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FalError(f"models.{name}.device is {setting!r} but torch sees no CUDA GPU here "
                           "(set device = \"auto\" or \"cpu\")", status=424, error_type="device_unavailable")
        return device


def load_diffusers(request: LoadRequest, **components: Any) -> Any:
    """The plain diffusers loader: the configured pipeline class from the folder, on its device.

    ``components`` go to ``from_pretrained`` (a family's hook passes what it builds itself).
    """
    import torch

    model = request.model
    pipeline_class = _pipeline_class(request.name, model.pipeline)
    placement = tuning.load_kwargs(request.device)  # straight onto the device: held once, not twice
    pipeline = pipeline_class.from_pretrained(request.path, dtype=getattr(torch, model.dtype),
                                              local_files_only=True, **placement, **components)
    if not placement and request.device != "cpu":  # a device device_map does not name: loaded on the CPU, moved
        pipeline.to(request.device)
    pipeline.set_progress_bar_config(disable=True)
    log.info("model %s: %s from %s on %s in %s", request.name, model.pipeline, request.path, request.device,
             model.dtype)
    return pipeline


def _pipeline_class(name: str, class_name: str) -> Any:
    """diffusers' class by name, imported now; a failing import says why instead of "no class".

    diffusers exposes its classes lazily: the attribute access imports the pipeline's module, and a
    failure there (a missing dependency, a broken install) raises with the real cause, which
    ``getattr(diffusers, name, None)`` used to hide behind "no class".
    """
    import diffusers

    try:
        return getattr(diffusers, class_name)
    except AttributeError as exc:
        raise FalError(f"models.{name}.pipeline: diffusers {diffusers.__version__} has no class {class_name!r} "
                       f"({exc})", status=500, error_type="bad_model_config") from exc
    except Exception as exc:  # diffusers wraps its lazy import's failure in a RuntimeError
        raise FalError(f"models.{name}.pipeline: importing diffusers' {class_name} failed: "
                       f"{type(exc).__name__}: {exc}", status=500, error_type="model_import_failed") from exc
