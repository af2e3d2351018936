"""Tiny random-weight models of every family, written to disk offline in seconds.

They have the real architectures and the real on-disk layout (diffusers ``save_pretrained``), so the
server loads them through the same code as real weights; only the sizes are toy and the weights are
random, so every output is noise. Tokenizers are trained here on a few sentences with the
``tokenizers`` library and handed to the transformers classes the real models use.
"""

from __future__ import annotations

import logging
import shutil
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thorgen.models import tiny_tts
from thorgen.models.tiny_audio import build_llm, build_stable_audio

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


def build_flux() -> Any:
    """FluxPipeline with Flux's real structure: 16 latent channels, 8x VAE, CLIP + T5 encoders."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    tokenizer_2 = t5_tokenizer(max_length=64)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
        latent_channels=16, norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.1159, scaling_factor=0.3611)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096, shift=3.0)
    modules: list[Any] = [transformer, vae, text_encoder, text_encoder_2]
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def _cosmos(builder: str) -> Callable[[], Any]:
    def build() -> Any:
        from thorgen.models import cosmos

        return getattr(cosmos, builder)()

    return build


def _ltx() -> Any:
    from thorgen.endpoints import ltx

    return ltx.build_tiny()


def _kokoro() -> Any:
    from thorgen.endpoints import kokoro

    return kokoro.build_tiny()


# A model's pipeline class (or, failing that, its family) -> the builder of its tiny version.
BUILDERS: dict[str, Callable[[], Any]] = {
    "flux": build_flux,
    "stable-audio": build_stable_audio,
    "llm": build_llm,
    "nemo-tts": tiny_tts.build_tiny_pair,
    "Cosmos2_5_PredictBasePipeline": _cosmos("build_cosmos2_5"),
    "Cosmos2VideoToWorldPipeline": _cosmos("build_cosmos2_video2world"),
    "Cosmos2TextToImagePipeline": _cosmos("build_cosmos2_text2image"),
    "ltx": _ltx,
    "kokoro": _kokoro,
}


def builder_for(pipeline: str, family: str) -> Callable[[], Any] | None:
    return BUILDERS.get(pipeline) or BUILDERS.get(family)


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
