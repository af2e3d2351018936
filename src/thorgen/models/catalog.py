"""The models thorgen knows how to run, as configuration defaults. Torch-free.

Each entry becomes ``[models.NAME]`` unless config.toml already has that table; a table there may
change single keys (``[models.flux-dev] dtype = "float16"``) and keeps the rest from here. Families
add their models to this table as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thorgen.config import Config

# Only the diffusers layout (model_index.json plus one folder per component): Flux repos also carry
# single-file checkpoints at their root that would double the download.
DIFFUSERS_FILES = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]

# A transformers model repo: weights, configs and tokenizer files at the root.
TRANSFORMERS_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                      "merges.txt", "*.jinja"]


COSMOS_LICENCE = "NVIDIA Open Model License (requires a safety guardrail)"


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
    # Cosmos: text, image and video to video in one pipeline. The diffusers weights live on a branch.
    "cosmos-predict25": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict25", "source": "nvidia/Cosmos-Predict2.5-2B",
                "revision": "diffusers/base/post-trained", "pipeline": "Cosmos2_5_PredictBasePipeline",
                "dtype": "bfloat16"},
        licence=COSMOS_LICENCE,
        gated=True,
        approx_bytes=21_000_000_000,  # 2 B transformer, Cosmos-Reason1-7B text encoder, Wan 2.1 VAE
    ),
    # Cosmos Predict2, the alternative: image or video to video; text to video goes through Text2Image.
    "cosmos-predict2-video2world": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict2-video2world",
                "source": "nvidia/Cosmos-Predict2-2B-Video2World", "pipeline": "Cosmos2VideoToWorldPipeline",
                "dtype": "bfloat16"},
        licence=COSMOS_LICENCE,
        gated=True,
        approx_bytes=13_900_000_000,  # 2 B transformer, T5-11B encoder, Wan 2.1 VAE
    ),
    "cosmos-predict2-text2image": CatalogEntry(
        config={"family": "cosmos", "path": "cosmos-predict2-text2image",
                "source": "nvidia/Cosmos-Predict2-2B-Text2Image", "pipeline": "Cosmos2TextToImagePipeline",
                "dtype": "bfloat16"},
        licence=COSMOS_LICENCE,
        gated=True,
        approx_bytes=13_900_000_000,
    ),
    # LTX-Video 0.9.5 (endpoints/ltx.py says why this checkpoint): loaded as LTXConditionPipeline; the
    # text-to-video and image-to-video pipelines are built around the same modules per job.
    "ltx-video": CatalogEntry(
        config={"family": "ltx", "path": "ltx-video", "source": "Lightricks/LTX-Video-0.9.5",
                "pipeline": "LTXConditionPipeline", "dtype": "bfloat16"},
        licence="OpenRAIL-M (LTX-Video 0.9.5's model card; later LTX checkpoints: LTXV Open Weights License)",
        gated=False,
        approx_bytes=14_300_000_000,  # 1.9 B transformer, T5-XXL v1.1 encoder (4.8 B), video VAE
    ),
    "stable-audio-open": CatalogEntry(
        config={"family": "stable-audio", "path": "stable-audio-open", "source": "stabilityai/stable-audio-open-1.0",
                "pipeline": "StableAudioPipeline", "dtype": "float16"},
        licence="Stability AI Community License",
        gated=True,
        approx_bytes=2_420_000_000,
    ),
    "llm": CatalogEntry(
        config={"family": "llm", "path": "llm", "source": "Qwen/Qwen2.5-1.5B-Instruct",
                "pipeline": "AutoModelForCausalLM", "dtype": "bfloat16"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=3_090_000_000,
        allow_patterns=list(TRANSFORMERS_FILES),
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
    # Kokoro-82M v1.0 (endpoints/kokoro.py): its own file layout, loaded by the kokoro package's KModel.
    "kokoro": CatalogEntry(
        config={"family": "kokoro", "path": "kokoro", "source": "hexgrad/Kokoro-82M", "dtype": "float32"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=355_000_000,  # 82 M parameters in float32 (327 MB) and 54 voice packs of 0.5 MB
        allow_patterns=["config.json", "kokoro-v1_0.pth", "voices/*.pt"],
    ),
}


# Families that need an optional extra: family -> (module that must be importable, extra to install).
# family -> (the module its optional extra provides, the extra's name). Cosmos needs its extra (the
# guardrail) only while [cosmos] guardrail is on.
EXTRAS = {"nemo-tts": ("nemo", "tts"), "cosmos": ("cosmos_guardrail", "guardrail"), "kokoro": ("kokoro", "kokoro")}
GUARDRAIL_HINT = ("; then fetch its weights with `thorgen models pull cosmos-guardrail`. The NVIDIA Open Model "
                  "License requires this guardrail; [cosmos] guardrail = false in config.toml turns it off (read the "
                  "README's \"Cosmos safety guardrail\" first)")


def missing_extra(family: str, config: Config | None = None, *, explain: bool = False) -> str | None:
    """Why a family cannot run in this environment (its optional extra is absent), or None.

    Short, for listings; ``explain`` adds, for Cosmos, the guardrail's weights, licence and off switch
    (the 424 a request gets says it all once). Asks importlib where the module would come from without
    importing it: NeMo's import costs seconds.
    """
    if family not in EXTRAS or (family == "cosmos" and config is not None and not config.guardrail_on):
        return None
    import importlib.util

    module, extra = EXTRAS[family]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    what = " (the Cosmos safety guardrail)" if family == "cosmos" else ""
    return (f"the optional extra '{extra}'{what} is not installed: pip install 'thorgen[{extra}]'"
            + (GUARDRAIL_HINT if family == "cosmos" and explain else ""))


def approx_size(size: int) -> str:
    """A catalog size as the README writes it: "0.5 GB", "2.4 GB", "34 GB"."""
    return f"{size / 1e9:.1f} GB" if size < 10e9 else f"{size / 1e9:.0f} GB"


@dataclass(frozen=True)
class GuardrailListing:
    """The Cosmos guardrail as a row of `thorgen models list`: a package, plus weights that
    `thorgen models pull cosmos-guardrail` puts in the Hugging Face cache (not in models/)."""

    name: str
    installed: str  # "NO", or "package": its weights are fetched into the Hub cache, not checked here
    source: str
    licence: str
    install_hint: str


def guardrail_listing() -> GuardrailListing:
    import importlib.util

    present = importlib.util.find_spec("cosmos_guardrail") is not None
    pull = "thorgen models pull cosmos-guardrail (weights into the Hugging Face cache)"
    return GuardrailListing(
        name="cosmos-guardrail",
        installed="package" if present else "NO",
        source="cosmos_guardrail package + its weights",
        licence="NVIDIA Open Model License; required by the Cosmos models while [cosmos] guardrail is on",
        install_hint=pull if present else f"pip install 'thorgen[guardrail]', then {pull}",
    )


def default_models() -> dict[str, dict[str, Any]]:
    return {name: dict(entry.config) for name, entry in CATALOG.items()}
