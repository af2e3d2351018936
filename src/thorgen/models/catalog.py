"""What a catalog entry is: a model thorgen knows how to get and run, as configuration defaults.

Each family declares its entries (``Family.catalog``); each becomes ``[models.NAME]`` unless
config.toml already has that table; a table there may change single keys (``[models.flux-dev]
dtype = "float16"``) and keeps the rest from the entry. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Only the diffusers layout (model_index.json plus one folder per component): Flux repos also carry
# single-file checkpoints at their root that would double the download.
DIFFUSERS_FILES = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]

# A transformers model repo: weights, configs and tokenizer files at the root.
TRANSFORMERS_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                      "merges.txt", "*.jinja"]


@dataclass(frozen=True)
class CatalogEntry:
    config: dict[str, Any]
    licence: str
    gated: bool
    approx_bytes: int  # weights in the configured dtype, for `thorgen models list` before a pull
    allow_patterns: list[str] = field(default_factory=lambda: list(DIFFUSERS_FILES))


def approx_size(size: int) -> str:
    """A catalog size as the README writes it: "0.5 GB", "2.4 GB", "34 GB"."""
    return f"{size / 1e9:.1f} GB" if size < 10e9 else f"{size / 1e9:.0f} GB"
