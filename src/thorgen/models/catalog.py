"""The models thorgen knows how to run, as configuration defaults. Torch-free.

Each entry becomes ``[models.NAME]`` unless config.toml already has that table; a table there may
change single keys (``[models.flux-dev] dtype = "float16"``) and keeps the rest from here. Families
add their models to this table as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Only the diffusers layout (model_index.json plus one folder per component): Flux repos also carry
# single-file checkpoints at their root that would double the download.
DIFFUSERS_FILES = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]


@dataclass(frozen=True)
class CatalogEntry:
    config: dict[str, Any]
    licence: str
    gated: bool
    approx_bytes: int  # weights in the configured dtype, for `thorgen models list` before a pull
    allow_patterns: list[str] = field(default_factory=lambda: list(DIFFUSERS_FILES))


CATALOG: dict[str, CatalogEntry] = {
    "flux-dev": CatalogEntry(
        config={"family": "flux", "path": "flux-dev", "source": "black-forest-labs/FLUX.1-dev",
                "pipeline": "FluxPipeline", "dtype": "bfloat16"},
        licence="FLUX.1 [dev] Non-Commercial License",
        gated=True,
        approx_bytes=33_700_000_000,
    ),
    "flux-schnell": CatalogEntry(
        config={"family": "flux", "path": "flux-schnell", "source": "black-forest-labs/FLUX.1-schnell",
                "pipeline": "FluxPipeline", "dtype": "bfloat16"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=33_700_000_000,
    ),
    # NeMo's English FastPitch (LJSpeech voice, 22050 Hz) and HiFi-GAN vocoder: two .nemo files from two
    # repos, pulled into one folder (sources are space-separated). float32: small models, and FastPitch's
    # duration and pitch predictors are not trained for half precision.
    "fastpitch-hifigan": CatalogEntry(
        config={"family": "nemo-tts", "path": "fastpitch-hifigan",
                "source": "nvidia/tts_en_fastpitch nvidia/tts_hifigan", "dtype": "float32"},
        licence="CC-BY-4.0",
        gated=False,
        approx_bytes=502_000_000,
        allow_patterns=["*.nemo"],
    ),
}


# Families that need an optional extra: family -> (module that must be importable, extra to install).
EXTRAS = {"nemo-tts": ("nemo", "tts")}


def missing_extra(family: str) -> str | None:
    """Why a family cannot run in this environment (its optional extra is absent), or None.

    Asks importlib where the module would come from without importing it: NeMo's import costs seconds.
    """
    if family not in EXTRAS:
        return None
    import importlib.util

    module, extra = EXTRAS[family]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (f"the '{family}' models need the optional extra '{extra}', which is not installed here: "
            f"pip install 'thorgen[{extra}]' (or scripts/setup.sh --test)")


def default_models() -> dict[str, dict[str, Any]]:
    return {name: dict(entry.config) for name, entry in CATALOG.items()}
