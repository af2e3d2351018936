"""Tiny random-weight Stable Audio and instruct language model, for tests and tiny mode.

Stable Audio follows model-stack.md §3: the real component classes at toy widths, a 2048-sample hop
and a 1024-latent DiT, so the longest clip it can make is 1024 × 2048 / 44100 ≈ 47.55 s of 44.1 kHz
stereo, as long as Stable Audio Open 1.0's. The language model is a Qwen2 causal LM with its own
byte-level BPE tokenizer and a ChatML chat template (model-stack.md §2), saved as transformers saves
a real one.
"""

from __future__ import annotations

from typing import Any


def build_stable_audio() -> Any:
    """StableAudioPipeline with the real structure (Oobleck VAE, T5, projection, DiT, cosine DPM)."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    from thorgen.models.tiny import t5_tokenizer  # tiny.py lists this module's builders: import late

    torch.manual_seed(0)
    tokenizer = t5_tokenizer(max_length=64)  # the pipeline pads to model_max_length (gotcha G4)
    # The window is sample_size latents × the VAE's hop (the product of its downsampling ratios) ÷
    # the sample rate: 1024 × (4·8·8·8 = 2048) ÷ 44100 = 47.55 s, Stable Audio Open 1.0's own window
    # (1024 latents × hop 2048), so tiny mode takes every length the real model takes (the editor
    # always sends seconds_total 30). The pipeline decodes the whole window (2.1 M samples) every
    # time: 2 channels in the VAE's last stage keep that about 1 s on one CPU core (8 took 10 s).
    transformer = StableAudioDiTModel(
        sample_size=1024, in_channels=8, out_channels=8, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, num_key_value_attention_heads=1, cross_attention_dim=16, time_proj_dim=16,
        global_states_input_dim=32, cross_attention_input_dim=16)
    vae = AutoencoderOobleck(
        encoder_hidden_size=8, downsampling_ratios=[4, 8, 8, 8], channel_multiples=[1, 2, 4, 4], decoder_channels=2,
        decoder_input_channels=8, audio_channels=2, sampling_rate=44100)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))
    projection_model = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=16, min_value=0,
                                                  max_value=512)
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3, sigma_max=500, sigma_data=1.0, sigma_schedule="exponential",
        prediction_type="v_prediction", solver_order=2)
    modules: list[Any] = [transformer, vae, text_encoder, projection_model]
    for module in modules:
        module.eval()  # built modules start in training mode (dropout): outputs would not repeat
    return StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection_model,
                               tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)


def build_llm() -> Any:
    """A two-layer Qwen2ForCausalLM with its tokenizer; stops at <|im_end|> as Qwen's instruct models."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from thorgen.models.llm import CausalLM
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
