"""What an installed model's own config files say, read without loading it (no torch, no weights).

Submit-time checks use this: Stable Audio's window, for one, is fixed by its transformer and VAE
config.json, so a length past it is refused at submit rather than after the model has loaded.
Files are read once and cached for as long as they are unchanged (by size and modification time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thorgen.config import Config


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the [models.NAME] entry
    folder: Path  # where it is (or would be) installed

    def component_config(self, component: str) -> dict[str, Any] | None:
        """``<folder>/<component>/config.json`` as a dict; None when it is not there (yet) or unreadable."""
        path = self.folder / component / "config.json"
        try:
            stat = path.stat()
        except OSError:
            return None
        return _read_json(path, stat.st_mtime_ns, stat.st_size)


def model_info(config: Config, name: str | None) -> ModelInfo | None:
    if name is None or name not in config.models:
        return None
    return ModelInfo(name, config.model_path(name))


@lru_cache(maxsize=64)
def _read_json(path: Path, mtime_ns: int, size: int) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
