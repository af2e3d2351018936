"""What loading NVIDIA Cosmos needs beyond a plain ``from_pretrained``: the guardrail, torchvision
stand-ins, and the tiny Cosmos pipelines for tests.

The guardrail. The NVIDIA Open Model License requires one. diffusers' Cosmos pipelines construct
``cosmos_guardrail.CosmosSafetyChecker`` themselves unless given a checker, and only run its video
check when it is that exact class. thorgen makes the checks explicit instead: every Cosmos pipeline
gets a ``PassThroughChecker`` component, and the Cosmos endpoints call the real guardrail
(``load_guardrail``, carried by that component so it is moved, sized and freed with the pipeline)
on the prompt before generating and on the frames after. With ``[cosmos] guardrail = false``
no guardrail is loaded and nothing is checked; the README says what that means.

torchvision. Cosmos calls two torchvision functions (a nearest resize of the padding mask, and
PIL-to-tensor for a conditioning image). The CPU test environment has no torchvision (a CUDA-only
wheel would break every import), so when it is absent the two are supplied here from torch.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin

from thorgen.errors import FalError

log = logging.getLogger("thorgen.models")

GUARDRAIL_EXTRA = "pip install 'thorgen[guardrail]'"


class PassThroughChecker(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """The pipelines' safety-checker component: lets everything through, and carries the guardrail.

    diffusers calls ``check_text_safety`` and ``check_video_safety`` on it, which pass; thorgen calls
    the real guardrail held in ``guardrail`` itself. The guardrail's networks are registered here as
    submodules, so moving, measuring and freeing the pipeline covers them too.
    """

    def __init__(self, guardrail: Any = None) -> None:
        super().__init__()
        # One empty, unsaved buffer gives .device and .dtype something to report.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)
        object.__setattr__(self, "guardrail", guardrail)  # not a submodule: its networks are, below
        if guardrail is not None:
            self.guardrail_models = torch.nn.ModuleList(guardrail.nn_models)

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: Any) -> Any:
        return frames


def passthrough_checker(guardrail: Any = None) -> PassThroughChecker:
    return PassThroughChecker(guardrail)


def load_guardrail() -> Any:
    """The real Cosmos guardrail, from weights already in the Hugging Face cache, or a clear 424."""
    try:
        from cosmos_guardrail import CosmosSafetyChecker
    except ImportError:
        raise FalError(
            "Cosmos needs its safety guardrail (NVIDIA Open Model License) and the cosmos_guardrail package "
            f"is not installed. Install it with {GUARDRAIL_EXTRA} and fetch its weights with "
            "`thorgen models pull cosmos-guardrail`, or set [cosmos] guardrail = false in config.toml "
            "(see the README before you do)", status=424, error_type="extra_not_installed") from None
    try:
        return CosmosSafetyChecker()
    except Exception as exc:  # its constructor reads the hub cache; offline and empty, it fails
        raise FalError(
            f"The Cosmos guardrail could not load its weights ({type(exc).__name__}). Fetch them once with "
            "`thorgen models pull cosmos-guardrail`", status=424, error_type="extra_not_installed") from None


def install_torchvision_stand_ins() -> None:
    """Give diffusers' Cosmos modules the two torchvision functions they call, if torchvision is absent."""
    from diffusers.models.transformers import transformer_cosmos
    from diffusers.pipelines.cosmos import pipeline_cosmos2_5_predict

    def resize(tensor: torch.Tensor, size: Any, interpolation: Any = None, **_: Any) -> torch.Tensor:
        return torch.nn.functional.interpolate(tensor, size=tuple(size), mode="nearest")

    def to_tensor(image: Any) -> torch.Tensor:
        import numpy as np

        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    if not hasattr(transformer_cosmos, "transforms"):
        functional = types.SimpleNamespace(resize=resize)
        transformer_cosmos.transforms = types.SimpleNamespace(  # type: ignore[attr-defined]
            functional=functional, InterpolationMode=types.SimpleNamespace(NEAREST="nearest"))
    if not hasattr(pipeline_cosmos2_5_predict, "torchvision"):
        functional = types.SimpleNamespace(to_tensor=to_tensor)
        pipeline_cosmos2_5_predict.torchvision = types.SimpleNamespace(  # type: ignore[attr-defined]
            transforms=types.SimpleNamespace(functional=functional))


# -- tiny pipelines ---------------------------------------------------------------------------------
# The real architectures and layouts at toy sizes. The transformer's learnable position embedding
# (max_size, in latent units) bounds a tiny clip to 29 frames and 256 px a side.

TINY_MAX_SIZE = (8, 32, 32)


def _tiny_transformer(in_channels: int, text_embed_dim: int) -> Any:
    from diffusers import CosmosTransformer3DModel

    return CosmosTransformer3DModel(
        in_channels=in_channels, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        mlp_ratio=2, text_embed_dim=text_embed_dim, adaln_lora_dim=4, max_size=TINY_MAX_SIZE, patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=True, extra_pos_embed_type="learnable")


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKLWan

    # 4x in time and 8x in space, as the real Wan 2.1 VAE.
    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _tiny_t5() -> tuple[Any, Any]:
    from transformers import T5Config, T5EncoderModel

    from thorgen.models.tiny import t5_tokenizer

    tokenizer = t5_tokenizer(max_length=64)
    encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    return tokenizer, encoder


def _eval(*modules: Any) -> None:
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat


def build_cosmos2_5() -> Any:
    """Cosmos Predict2.5: a Qwen2.5-VL text encoder, UniPC, one pipeline for text/image/video to video."""
    from diffusers import Cosmos2_5_PredictBasePipeline, UniPCMultistepScheduler
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from thorgen.models.tiny import qwen2_tokenizer

    torch.manual_seed(0)
    tokenizer = qwen2_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    layers, hidden = 2, 16
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 16,
                     "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default"},
                     "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
                     "pad_token_id": ids("<|endoftext|>")},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>")))
    # The pipeline concatenates every layer's hidden state: layers x hidden features per token.
    transformer = _tiny_transformer(in_channels=17, text_embed_dim=layers * hidden)
    vae = _tiny_vae()
    _eval(text_encoder, transformer, vae)
    return Cosmos2_5_PredictBasePipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                                         vae=vae, scheduler=UniPCMultistepScheduler(),
                                         safety_checker=passthrough_checker())


def build_cosmos2_video2world() -> Any:
    """Cosmos Predict2 Video2World: T5 text encoder, image or video conditioning (mask channel: 16 + 1)."""
    from diffusers import Cosmos2VideoToWorldPipeline

    return _build_cosmos2(Cosmos2VideoToWorldPipeline, in_channels=17)


def build_cosmos2_text2image() -> Any:
    """Cosmos Predict2 Text2Image: makes the first frame when Predict2 is asked for text-to-video."""
    from diffusers import Cosmos2TextToImagePipeline

    return _build_cosmos2(Cosmos2TextToImagePipeline, in_channels=16)


def _build_cosmos2(pipeline_class: Any, in_channels: int) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_t5()
    transformer = _tiny_transformer(in_channels=in_channels, text_embed_dim=32)
    vae = _tiny_vae()
    _eval(text_encoder, transformer, vae)
    return pipeline_class(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
                          scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
                          safety_checker=passthrough_checker())
