"""Loading a configured model from its folder: the concrete pipeline class, local files only.

Nothing here reaches a model hub: ``local_files_only=True`` on every load, and weights come only
from ``thorgen models pull``. The swapper calls ``load`` and ``estimate``; families with needs of
their own (a safety checker to inject, a .nemo archive) get a branch here when they arrive.
"""

from __future__ import annotations

import logging
from typing import Any

from thorgen.config import Config
from thorgen.errors import FalError
from thorgen.models import tuning
from thorgen.models.memory import estimate_bytes
from thorgen.models.store import model_status

log = logging.getLogger("thorgen.models")


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Loader:
    def __init__(self, config: Config):
        self.config = config
        self.tuned: dict[str, tuning.Tuned] = {}  # what tuning did to each model at its last load

    def estimate(self, name: str) -> int:
        return estimate_bytes(self.config.model_path(name), self.config.model(name).dtype)

    def load(self, name: str) -> Any:
        status = model_status(self.config, name)
        if not status.installed:
            raise FalError(f"Model '{name}' is not installed (looked in {status.path}). Install it with: "
                           f"{status.install_hint}", status=424, error_type="model_not_installed")
        model = self.config.model(name)
        if model.family == "nemo-tts":  # two .nemo archives, restored by NeMo itself
            from thorgen.models.nemo_tts import load_pair

            return load_pair(name, status.path, self._device(name, model.device),
                             cache_dir=self.config.data_dir / "cache" / "text-normalisation")
        import torch

        from thorgen.logs import adopt_library_loggers

        adopt_library_loggers()  # their warnings in the server's format, and no progress bars

        if model.family == "llm":  # a transformers causal LM, not a diffusers pipeline: models/llm.py
            from thorgen.models.llm import load_causal_lm

            return load_causal_lm(name, status.path, model.dtype, self._device(name, model.device))
        pipeline_class = _pipeline_class(name, model.pipeline)
        device = self._device(name, model.device)
        extra: dict[str, Any] = {}
        if model.family == "cosmos":
            from thorgen.models import cosmos

            cosmos.install_torchvision_stand_ins()
            # Given to the constructor, or it builds cosmos_guardrail's checker itself (see models/cosmos.py).
            guardrail = cosmos.load_guardrail() if self.config.guardrail_on else None
            extra["safety_checker"] = cosmos.passthrough_checker(guardrail)
        placement = tuning.load_kwargs(device)  # straight onto the device: the model is held once, not twice
        pipeline = pipeline_class.from_pretrained(status.path, dtype=getattr(torch, model.dtype),
                                                  local_files_only=True, **placement, **extra)
        if not placement and device != "cpu":  # a device device_map does not name: loaded on the CPU, moved
            pipeline.to(device)
        if model.family == "cosmos":
            pipeline.vae.enable_tiling()  # decodes 720p x 93 frames in tiles instead of all at once
        pipeline.set_progress_bar_config(disable=True)
        self.tuned[name] = tuning.tune(name, model.family, pipeline, quantization=model.quantization,
                                       compile=model.compile, device=device, data_dir=self.config.data_dir,
                                       tiny=self.config.runtime.tiny)
        log.info("model %s: %s from %s on %s in %s", name, model.pipeline, status.path, device, model.dtype)
        return pipeline

    @staticmethod
    def _device(name: str, setting: str) -> str:
        import torch

        device = resolve_device(setting)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FalError(f"models.{name}.device is {setting!r} but torch sees no CUDA GPU here "
                           "(set device = \"auto\" or \"cpu\")", status=424, error_type="device_unavailable")
        return device


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
