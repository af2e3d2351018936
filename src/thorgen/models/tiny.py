"""What every family's tiny random-weight models share: toy tokenizers, and writing one to disk.

Each family builds its own tiny models (``Family.tiny``) with the real architectures and the real
on-disk layout (diffusers ``save_pretrained``), so the server loads them through the same code as
real weights; only the sizes are toy and the weights are random, so every output is noise.
Tokenizers are trained here on a few sentences with the ``tokenizers`` library and handed to the
transformers classes the real models use.
"""

from __future__ import annotations

import logging
import shutil
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("thorgen.models")

CORPUS = [
    "a photo of a cat sitting on a windowsill in the morning light",
    "coffee beans falling into a cup, cinematic, 4k, shallow depth of field",
    "a red car driving along a coastal road at sunset",
    "an astronaut riding a horse on the moon, digital art",
    "calm piano music with soft rain in the background",
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a test of the tiny tokenizer: 0123456789!",
]


def t5_tokenizer(max_length: int) -> Any:
    """A T5 (Unigram + Metaspace) tokenizer: <pad>=0, </s>=1, <unk>=2, as T5Config expects."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    alphabet = [c for c in string.printable if not c.isspace()] + ["▁"]
    raw = Tokenizer(models.Unigram())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace("▁", prepend_scheme="always")])
    # show_progress=False: the trainer's bar (drawn by the Rust library, not tqdm) would go to the log.
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", initial_alphabet=alphabet, show_progress=False)
    raw.train_from_iterator(CORPUS, trainer)
    pieces = [(piece, score) for piece, score in _json(raw)["model"]["vocab"]]
    known = {piece for piece, _ in pieces}
    pieces += [(c, -20.0) for c in alphabet if c not in known]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def clip_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer with CLIP's word-end suffix; model_max_length 77 as CLIP's."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    raw = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    split = Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(split, behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>",
                                  show_progress=False)
    raw.train_from_iterator([line.lower() for line in CORPUS], trainer)
    model = _json(raw)["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for char in pre_tokenizers.ByteLevel.alphabet():
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    merges: Any = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)  # tuples, not "a b" strings


# Qwen2's special tokens: the chat markers, and the vision markers a Qwen2.5-VL config points at.
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
# Renders <|im_start|>role\ntext<|im_end|>\n for string content or a list of {"type": "text"} parts.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen2_tokenizer(max_length: int = 128, eos_token: str = "<|endoftext|>", extra_corpus: tuple[str, ...] = ()) -> Any:
    """A Qwen2 byte-level BPE tokenizer (no word-end suffix) with chat markers and a chat template.

    Qwen's instruct models end a turn with ``<|im_end|>``: pass it as ``eos_token`` for a chat model.
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=QWEN_SPECIALS[:1],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(CORPUS + list(extra_corpus), trainer)
    model = _json(raw)["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for char in pre_tokenizers.ByteLevel.alphabet():  # every byte has a token: nothing falls to <unk>
        vocab.setdefault(char, len(vocab))
    merges: Any = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=eos_token, pad_token="<|endoftext|>",
                               model_max_length=max_length)
    # Registered as special, or they would be split into characters.
    tokenizer.add_tokens([AddedToken(token, special=True) for token in QWEN_SPECIALS[1:]], special_tokens=True)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def _json(raw: Any) -> dict[str, Any]:
    import json

    return json.loads(raw.to_str())


def write_tiny(build: Callable[[], Any], target: Path) -> Path:
    """Build a tiny pipeline and save it to ``target`` (replacing what is there)."""
    pipeline = build()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if hasattr(pipeline, "save_to_folder"):  # a family with its own format (NeMo's .nemo archives)
        pipeline.save_to_folder(partial)
    else:
        pipeline.save_pretrained(partial, safe_serialization=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log.info("wrote tiny %s to %s", type(pipeline).__name__, target)
    return target
