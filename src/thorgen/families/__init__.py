"""The model families thorgen serves: the one ``FAMILIES`` list, and what is read from it.

A family lives in one module (or a small package) of this folder and ends with ``FAMILY =
Family(...)`` (see base.py and the README's "Adding a model family"). It is served once listed:
built-in families by one line in ``FAMILIES`` below; a family in another package by one entry point
in the ``thorgen.families`` group of that package's metadata, ``name = "package.module:FAMILY"``
(or a module whose ``FAMILY`` it is). The registry, the catalog defaults, `thorgen models tiny`,
/info, the start log, `thorgen doctor` and `thorgen models pull` all read this list.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thorgen.families import cosmos, ffmpeg, flux, kokoro, llm, ltx, music, speech
from thorgen.families.base import Download, Family, TinyBuilder
from thorgen.models import pull as pulling
from thorgen.models.pull import PullError

if TYPE_CHECKING:
    from thorgen.config import Config, ModelConfig
    from thorgen.models.catalog import CatalogEntry
    from thorgen.models.loaders import LoadHook

log = logging.getLogger("thorgen")

ENTRY_POINT_GROUP = "thorgen.families"


def _plugins() -> list[Family]:
    """Families other packages declare through the ``thorgen.families`` entry point group."""
    found = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name):
        try:
            loaded: Any = point.load()
        except Exception:  # one broken plugin must not stop the server: said, and skipped
            log.exception("the family %s (entry point %s) failed to import; it is not served", point.name,
                          point.value)
            continue
        family = getattr(loaded, "FAMILY", loaded)
        if not isinstance(family, Family):
            log.error("the entry point %s (%s) is not a thorgen Family; it is not served", point.name, point.value)
            continue
        found.append(family)
    return found


FAMILIES: list[Family] = [
    ffmpeg.FAMILY,
    flux.FAMILY,
    cosmos.FAMILY,
    music.FAMILY,
    llm.FAMILY,
    speech.FAMILY,
    ltx.FAMILY,
    kokoro.FAMILY,
    *_plugins(),
]


def family_named(name: str) -> Family | None:
    """The family whose [models.NAME] tables say ``family = name``."""
    return next((family for family in FAMILIES if family.name == name), None)


def catalog() -> dict[str, CatalogEntry]:
    """Every family's catalog entries, by model name."""
    return {name: entry for family in FAMILIES for name, entry in family.catalog.items()}


def default_models() -> dict[str, dict[str, Any]]:
    """The [models.NAME] tables config.toml starts from."""
    return {name: dict(entry.config) for name, entry in catalog().items()}


def missing_extra(family: str, config: Config | None = None, *, explain: bool = False) -> str | None:
    """Why models of a family cannot run in this environment (its optional extra is absent), or None."""
    found = family_named(family)
    return found.missing_extra(config, explain=explain) if found is not None else None


def load_hooks() -> dict[str, LoadHook]:
    """Each family's load hook, for models.loaders.Loader."""
    return {family.name: family.load for family in FAMILIES}


def tiny_builder(model: ModelConfig, config: Config | None = None) -> TinyBuilder | None:
    """The builder of a configured model's tiny version; None when its family has none, or when the
    family's optional extra is absent (there is nothing to build it with)."""
    family = family_named(model.family)
    if family is None or family.missing_extra(config):
        return None
    return family.tiny_builder(model.pipeline)


def write_missing_tiny(config: Config, *, force: bool = False) -> list[str]:
    """`thorgen models tiny`: a tiny checkpoint for every configured model whose family builds one."""
    from thorgen.models.runtime import write_missing_tiny as write

    return write(config, tiny_builder, force=force)


def downloads() -> dict[str, Download]:
    """What `thorgen models pull` fetches besides [models.NAME] folders (the Cosmos guardrail)."""
    return {download.name: download for family in FAMILIES for download in family.downloads}


def pull(config: Config, name: str) -> Path:
    """`thorgen models pull NAME`: a family's download, or a model with its catalog entry's file patterns."""
    if name in downloads():
        return downloads()[name].fetch()
    entry = catalog().get(name)
    return pulling.pull(config, name, entry.allow_patterns if entry else None)


__all__ = ["FAMILIES", "PullError", "catalog", "default_models", "downloads", "family_named", "load_hooks",
           "missing_extra", "pull", "tiny_builder", "write_missing_tiny"]
