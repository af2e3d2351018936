"""A tiny random-weight FastPitch + HiFi-GAN, built from config offline and written as two .nemo files.

The configs follow NeMo's own FastPitch (``fastpitch_align_v1.05``: learned alignment) and HiFi-GAN
(v1 generator) recipes with toy sizes: a character tokenizer (no pronunciation dictionary to download,
no text normaliser), one transformer layer each side, a 32-channel generator. The server then restores
them with ``restore_from`` exactly as it restores NVIDIA's checkpoints.

Two adjustments make the noise usable in tests: HiFi-GAN's ``debug`` flag builds its training-only
discriminators small (otherwise they alone make a 280 MB archive), and the duration predictor is
biased to about five frames per character, because a random one predicts almost none (a clip of a
few milliseconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_RATE = 22050
WIDTH = 32  # the transformer width, symbol embedding and predictor input

_MEL = {
    "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
    "features": 80, "lowfreq": 0, "highfreq": 8000, "n_fft": 1024, "n_window_size": 1024, "window_size": False,
    "n_window_stride": 256, "window_stride": False, "pad_to": 1, "pad_value": 0, "sample_rate": SAMPLE_RATE,
    "window": "hann", "normalize": None, "preemph": None, "dither": 0.0, "frame_splicing": 1, "log": True,
    "log_zero_guard_type": "add", "log_zero_guard_value": 1e-05, "mag_power": 1.0,
}
_DATA = {"dataloader_params": {"batch_size": 1, "shuffle": False, "num_workers": 0}, "defer_setup": True}


def _transformer(kind: str) -> dict[str, Any]:
    config = {"_target_": f"nemo.collections.tts.modules.transformer.FFTransformer{kind}", "n_layer": 1,
              "n_head": 1, "d_model": WIDTH, "d_head": 16, "d_inner": 64, "kernel_size": 3, "dropout": 0.1,
              "dropatt": 0.1, "dropemb": 0.0}
    if kind == "Encoder":
        config["d_embed"] = WIDTH
    return config


def _predictor() -> dict[str, Any]:
    return {"_target_": "nemo.collections.tts.modules.fastpitch.TemporalPredictor", "input_size": WIDTH,
            "kernel_size": 3, "filter_size": 32, "dropout": 0.1, "n_layers": 2}


def fastpitch_config() -> dict[str, Any]:
    return {
        "sample_rate": SAMPLE_RATE, "n_mel_channels": 80, "n_window_size": 1024, "n_window_stride": 256,
        "n_fft": 1024, "lowfreq": 0, "highfreq": 8000, "window": "hann",
        "pitch_mean": 212.35, "pitch_std": 68.52, "pitch_fmin": 65.4, "pitch_fmax": 2093.0,  # LJSpeech's
        "learn_alignment": True, "bin_loss_warmup_epochs": 100, "n_speakers": 1, "max_token_duration": 75,
        "symbols_embedding_dim": WIDTH, "pitch_embedding_kernel_size": 3,
        "text_tokenizer": {
            "_target_": "nemo.collections.common.tokenizers.text_to_speech.tts_tokenizers.EnglishCharsTokenizer",
            "punct": True, "apostrophe": True, "pad_with_space": True},
        "train_ds": {"dataset": {"_target_": "nemo.collections.tts.data.dataset.TTSDataset"}, **_DATA},
        "preprocessor": _MEL,
        "input_fft": _transformer("Encoder"),
        "output_fft": _transformer("Decoder"),
        "alignment_module": {"_target_": "nemo.collections.tts.modules.aligner.AlignmentEncoder",
                             "n_text_channels": WIDTH},
        "duration_predictor": _predictor(),
        "pitch_predictor": _predictor(),
    }


def hifigan_config() -> dict[str, Any]:
    return {
        "debug": True,  # small discriminators (training-only; the loader drops them)
        "preprocessor": {  # HiFi-GAN computes its target mels with the feature module itself
            "_target_": "nemo.collections.asr.parts.preprocessing.features.FilterbankFeatures", "nfilt": 80,
            "lowfreq": 0, "highfreq": 8000, "n_fft": 1024, "n_window_size": 1024, "n_window_stride": 256,
            "sample_rate": SAMPLE_RATE, "window": "hann", "normalize": None, "preemph": None, "dither": 0.0,
            "pad_to": 0, "pad_value": -11.52, "exact_pad": True, "frame_splicing": 1, "log": True,
            "log_zero_guard_type": "add", "log_zero_guard_value": 1e-05, "mag_power": 1.0, "use_grads": False,
            "nb_augmentation_prob": 0.0},
        "generator": {"_target_": "nemo.collections.tts.modules.hifigan_modules.Generator", "resblock": 1,
                      "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
                      "upsample_initial_channel": 32, "resblock_kernel_sizes": [3],
                      "resblock_dilation_sizes": [[1, 3, 5]]},  # resblock 1 takes three dilations per kernel
        "train_ds": {"dataset": {"_target_": "nemo.collections.tts.data.dataset.VocoderDataset"}, **_DATA},
        "l1_loss_factor": 45, "denoise_strength": 0.0025,
    }


class TinyPair:
    """The built pair; ``save_to_folder`` is what models.tiny.write_tiny calls instead of save_pretrained."""

    def __init__(self, fastpitch: Any, vocoder: Any):
        self.fastpitch = fastpitch
        self.vocoder = vocoder

    def save_to_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fastpitch.save_to(str(folder / "tiny_fastpitch.nemo"))
        self.vocoder.save_to(str(folder / "tiny_hifigan.nemo"))


def build_tiny_pair() -> TinyPair:
    import torch
    from omegaconf import OmegaConf

    from thorgen.families.speech.nemo import nemo_classes

    fastpitch_class, vocoder_class = nemo_classes()
    torch.manual_seed(0)
    fastpitch = fastpitch_class(cfg=OmegaConf.create(fastpitch_config()))
    with torch.no_grad():
        # About eight frames per token (exp(2.2) - 1), not the ~0 a random head gives.
        head = fastpitch.fastpitch.duration_predictor.fc
        head.weight.mul_(0.01)
        head.bias.fill_(2.2)
        # A trained model's pitch drives its spectrogram; a random one's barely does. Make the pitch
        # embedding count, so that a voice preset's pitch shift shows in the tiny model's output too.
        fastpitch.fastpitch.pitch_emb.weight.mul_(30.0)
    vocoder = vocoder_class(cfg=OmegaConf.create(hifigan_config()))
    with torch.no_grad():  # likewise a random generator's output hardly depends on its spectrogram input
        vocoder.generator.conv_pre.weight_g.mul_(20.0)
    fastpitch.eval()
    vocoder.eval()
    return TinyPair(fastpitch, vocoder)
