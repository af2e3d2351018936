"""A transformers causal language model and its tokenizer, held the way the swapper holds a pipeline.

It is not a diffusers pipeline, so it gets its own small wrapper: ``components`` (what
memory.pipeline_bytes sizes and the swapper's eviction check follows), ``to(device)`` and
``save_pretrained`` (what tiny.write_tiny calls). Loading reads only local files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thorgen.errors import FalError

log = logging.getLogger("thorgen.models")


@dataclass
class CausalLM:
    model: Any  # a transformers PreTrainedModel with generate()
    tokenizer: Any  # its tokenizer, carrying the chat template

    @property
    def components(self) -> dict[str, Any]:
        return {"model": self.model, "tokenizer": self.tokenizer}

    @property
    def device(self) -> Any:
        return self.model.device

    def to(self, device: str) -> CausalLM:
        self.model.to(device)
        return self

    def save_pretrained(self, target: Path, **_: Any) -> None:
        """Model (safetensors), generation config and tokenizer in one folder, as a Hub repo has them."""
        self.model.save_pretrained(target)
        self.tokenizer.save_pretrained(target)


def load_causal_lm(name: str, path: Path | str, dtype: str, device: str) -> CausalLM:
    """Tokenizer and model from a local folder (never the Hub), moved to ``device`` (the loader checked it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise FalError(f"models.{name}: the tokenizer in {path} has no chat template; use an instruct (chat) "
                       "model", status=500, error_type="bad_model_config")
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
    model.eval()
    if device != "cpu":
        model.to(device)
    log.info("model %s: %s from %s on %s in %s", name, type(model).__name__, path, device, dtype)
    return CausalLM(model=model, tokenizer=tokenizer)
