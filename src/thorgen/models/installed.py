"""Whether each configured model is installed (on disk), and how big it is. Loading lives in loaders.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from thorgen.models.memory import disk_bytes

if TYPE_CHECKING:
    from thorgen.config import Config


@dataclass(frozen=True)
class ModelStatus:
    name: str
    family: str
    installed: bool
    path: str
    install_hint: str


def model_status(config: Config, name: str) -> ModelStatus:
    if name not in config.models:
        return ModelStatus(name, "?", False, "", f"add [models.{name}] to config.toml")
    path = config.model_path(name)
    installed = path.is_file() or (path.is_dir() and any(path.iterdir()))
    hint = "thorgen models tiny" if config.runtime.tiny else f"thorgen models pull {name}"
    return ModelStatus(
        name=name,
        family=config.model(name).family,
        installed=installed,
        path=str(path),
        install_hint=hint,
    )


def all_model_status(config: Config) -> list[ModelStatus]:
    return [model_status(config, name) for name in sorted(config.models)]


def size_on_disk(config: Config, name: str) -> int:
    return disk_bytes(config.model_path(name))
