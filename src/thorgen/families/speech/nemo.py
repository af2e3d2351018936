"""NeMo FastPitch + HiFi-GAN: restore the two .nemo archives of a model folder and speak with them.

A model folder holds one FastPitch (``*fastpitch*.nemo``: text to mel spectrogram) and one HiFi-GAN
(``*hifigan*.nemo``: spectrogram to waveform), as `thorgen models pull fastpitch-hifigan` downloads them
and `thorgen models tiny` writes them. NeMo is an optional extra (``pip install 'thorgen[tts]'``) and
is imported only here, when the model loads; without it the load is a 424 naming the extra.

Text normalisation ("$3.50" -> "three dollars fifty cents") is NeMo's own when the checkpoint has a
normaliser configured and nemo_text_processing is installed; pip leaves that package out on aarch64
(no pynini wheel), and the tiny model has none, so then thorgen.models.normalise does it, with a
logged warning, before the text reaches the tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from thorgen.errors import FalError
from thorgen.families.base import Extra
from thorgen.families.speech.normalise import normalise

log = logging.getLogger("thorgen.models")

# LJSpeech's pitch statistics, used when a checkpoint's config does not carry its own.
DEFAULT_PITCH_MEAN, DEFAULT_PITCH_STD = 212.35, 68.52

NEMO = Extra(module="nemo", name="tts")  # the optional extra every speech model needs


def nemo_classes() -> tuple[Any, Any]:
    """(FastPitchModel, HifiGanModel), or a 424 naming the extra when NeMo is absent or broken."""
    reason = NEMO.missing()
    if reason:
        raise FalError(f"Speech models cannot load: {reason}", status=424, error_type="extra_not_installed")
    try:
        from nemo.collections.tts.models import FastPitchModel, HifiGanModel
    except ImportError as exc:
        raise FalError(f"Speech models cannot load: importing NeMo failed ({exc}); reinstall the extra with "
                       "pip install 'thorgen[tts]'", status=424, error_type="extra_not_installed") from None
    _quiet_nemo()
    return FastPitchModel, HifiGanModel


def _quiet_nemo() -> None:
    """NeMo logs every restore at INFO and warns about training-only config; keep the server log readable."""
    try:
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.ERROR)
    except Exception:  # noqa: BLE001 - only cosmetics
        pass


def text_processing_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("nemo_text_processing") is not None
    except (ImportError, ValueError):
        return False


def find_archives(folder: Path) -> tuple[Path, Path]:
    archives = sorted(folder.glob("*.nemo"))
    fastpitch = [a for a in archives if "fastpitch" in a.name.lower()]
    vocoder = [a for a in archives if "hifigan" in a.name.lower()]
    if len(fastpitch) != 1 or len(vocoder) != 1:
        raise FalError(f"{folder} must hold exactly one *fastpitch*.nemo and one *hifigan*.nemo (found "
                       f"{', '.join(a.name for a in archives) or 'none'}); run `thorgen models pull` again",
                       status=424, error_type="model_not_installed")
    return fastpitch[0], vocoder[0]


def _number(cfg: Any, key: str, default: float) -> float:
    """A number from a checkpoint's config; released configs may leave it out or as an unresolved ${...}."""
    try:
        value = cfg.get(key)
    except Exception:  # noqa: BLE001 - omegaconf's interpolation errors
        return default
    return float(value) if isinstance(value, int | float) and value else default


class SpeechPair:
    """A loaded FastPitch and HiFi-GAN. ``components`` lets the swapper measure both."""

    def __init__(self, fastpitch: Any, vocoder: Any, *, nemo_normaliser: bool):
        self.fastpitch = fastpitch
        self.vocoder = vocoder
        self.nemo_normaliser = nemo_normaliser
        self.pitch_mean = _number(fastpitch.cfg, "pitch_mean", DEFAULT_PITCH_MEAN)
        self.pitch_std = _number(fastpitch.cfg, "pitch_std", DEFAULT_PITCH_STD)
        self.sample_rate = int(vocoder.cfg.preprocessor.sample_rate)

    @property
    def components(self) -> dict[str, Any]:
        return {"fastpitch": self.fastpitch, "vocoder": self.vocoder}

    def tokens(self, text: str) -> Any:
        if self.nemo_normaliser:
            return self.fastpitch.parse(text, normalize=True)
        return self.fastpitch.parse(normalise(text), normalize=False)

    def speak(self, text: str, *, pitch_semitones: float = 0.0, pace: float = 1.0) -> np.ndarray:
        """Mono float32 samples at ``sample_rate``; empty when the text has nothing to say."""
        import torch

        with torch.inference_mode():
            tokens = self.tokens(text)
            if tokens.numel() == 0:
                return np.zeros(0, np.float32)
            hook = None
            if pitch_semitones:
                hook = self.fastpitch.fastpitch.pitch_predictor.register_forward_hook(
                    self._pitch_shift(pitch_semitones))
            try:
                spectrogram = self.fastpitch.generate_spectrogram(tokens=tokens, pace=pace)
            finally:
                if hook is not None:
                    hook.remove()
            audio = self.vocoder.convert_spectrogram_to_audio(spec=spectrogram)
        return audio.squeeze(0).float().cpu().numpy()

    def _pitch_shift(self, semitones: float) -> Any:
        """FastPitch predicts pitch as (f0 - mean) / std; multiply f0 by 2^(semitones/12) in that space."""
        factor = 2.0 ** (semitones / 12.0)
        offset = self.pitch_mean * (factor - 1.0) / self.pitch_std

        def shift(module: Any, inputs: Any, output: Any) -> Any:
            return output * factor + offset

        return shift


def load_pair(name: str, folder: str | Path, device: str, cache_dir: Path | None = None) -> SpeechPair:
    """Restore both archives onto ``device`` in eval mode, offline."""
    fastpitch_class, vocoder_class = nemo_classes()
    fastpitch_path, vocoder_path = find_archives(Path(folder))
    config = fastpitch_class.restore_from(str(fastpitch_path), return_config=True, map_location="cpu")
    if "text_normalizer" in config and text_processing_available() and cache_dir is not None:
        # Compiling the grammars costs ~30 s per process; with a cache later loads take under a second.
        from omegaconf import open_dict

        cache_dir.mkdir(parents=True, exist_ok=True)
        with open_dict(config):
            config.text_normalizer.cache_dir = str(cache_dir)
    fastpitch = fastpitch_class.restore_from(str(fastpitch_path), override_config_path=config,
                                             map_location=device)
    # NeMo sets the normaliser up only when the config names one and nemo_text_processing imports.
    nemo_normaliser = getattr(fastpitch, "text_normalizer_call", None) is not None
    if not nemo_normaliser:
        why = ("nemo_text_processing is not installed (pip leaves it out on aarch64)" if "text_normalizer" in config
               else "the FastPitch checkpoint configures no text normaliser")
        log.warning("model %s: %s; thorgen's small normaliser spells out numbers and abbreviations instead",
                    name, why)
    vocoder = vocoder_class.restore_from(str(vocoder_path), map_location=device)
    for training_only in ("mpd", "msd"):  # the discriminators: most of HiFi-GAN's weights, unused to speak
        if hasattr(vocoder, training_only):
            delattr(vocoder, training_only)
    fastpitch.eval()
    vocoder.eval()
    log.info("model %s: FastPitch %s + HiFi-GAN %s on %s, %d Hz", name, fastpitch_path.name, vocoder_path.name,
             device, int(vocoder.cfg.preprocessor.sample_rate))
    return SpeechPair(fastpitch, vocoder, nemo_normaliser=nemo_normaliser)
