"""A transformers causal language model and its tokenizer, held the way the swapper holds a pipeline.

It is not a diffusers pipeline, so it gets its own small wrapper: ``components`` (what
memory.pipeline_bytes sizes and the swapper's eviction check follows), ``to(device)`` and
``save_pretrained`` (what models.tiny.write_tiny calls). Loading reads only local files.
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


# -- tiny: a Qwen2 causal LM with its own byte-level BPE tokenizer and a ChatML chat template
# (model-stack.md §2), saved as transformers saves a real one.

def build_tiny() -> Any:
    """A two-layer Qwen2ForCausalLM with its tokenizer; stops at <|im_end|> as Qwen's instruct models."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from thorgen.models.tiny import qwen2_tokenizer

    torch.manual_seed(0)
    tokenizer = qwen2_tokenizer(max_length=4096, eos_token="<|im_end|>",
                                extra_corpus=('{"title": "A short film", "description": "Waves at dawn."}',))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=eos, pad_token_id=pad, bos_token_id=None))
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
    model.eval()
    return CausalLM(model=model, tokenizer=tokenizer)
