"""Speech with Kokoro-82M (hexgrad, Apache-2.0): fal's kokoro ids with Kokoro's own voices.

The ``kokoro`` package (optional extra ``thorgen[kokoro]``) supplies the model (``KModel``); thorgen
loads it from ``[models.kokoro]`` (config.json, kokoro-v1_0.pth, voices/NAME.pt, as hexgrad/Kokoro-82M
has them) and never lets it reach the Hub. Without the extra, every kokoro id is answered by the
FastPitch stand-in (families/speech) instead, and /endpoints names that model.

Offline G2P (text to phonemes): the package's English pipeline (misaki's ``en.G2P``) needs spaCy's
``en_core_web_sm``, which it downloads at first use (no official package of it is on PyPI), so it
fails offline. thorgen phonemizes with espeak-ng instead, through misaki's own espeak adapters (the
library and its data come in the ``espeakng-loader`` wheel, nothing from apt): ``EspeakFallback``,
which maps espeak's English phonemes onto Kokoro's phoneme set, for American and British English, and
``EspeakG2P`` for the other languages (where that is what the package itself uses too). What English
loses: misaki's hand-checked lexicon (gold/silver dictionaries), its spaCy part-of-speech choice between
heteronyms ("read", "live", "record"), its number and currency wording, and its stress placement;
espeak's rules misread more rare words and names. Spanish, French, Hindi, Italian and Brazilian
Portuguese lose nothing: the package uses espeak-ng for them too. Japanese and Mandarin (misaki[ja],
misaki[zh]: pyopenjtalk, jieba...) are not served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from msgspec import Meta, Struct

from thorgen.errors import FalError, InputError
from thorgen.families.base import (
    ANY_PIPELINE,
    AudioFile,
    CatalogEntry,
    Context,
    Endpoint,
    Extra,
    Family,
    Finding,
    LoadRequest,
    store_audio,
)

MODEL = "kokoro"
FALLBACK = "fastpitch-hifigan"  # answers when the kokoro extra is not installed
SAMPLE_RATE = 24_000
MAX_PHONEMES = 510  # the model's context (512 positions) less the two boundary tokens
SENTENCE_PAUSE_S = 0.1


@dataclass(frozen=True)
class Language:
    code: str  # Kokoro's language letter (voice names start with it)
    espeak: str  # espeak-ng's voice for the G2P
    default_voice: str
    voices: tuple[str, ...] = field(default_factory=tuple)


# fal's kokoro ids this package can speak offline, with Kokoro-82M v1.0's voices for each language.
LANGUAGES = {
    "american-english": Language("a", "en-us", "af_heart", (
        "af_heart", "af_alloy", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole", "af_nova",
        "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael",
        "am_onyx", "am_puck", "am_santa")),
    "british-english": Language("b", "en-gb", "bf_alice", (
        "bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis")),
    "spanish": Language("e", "es", "ef_dora", ("ef_dora", "em_alex", "em_santa")),
    "french": Language("f", "fr-fr", "ff_siwis", ("ff_siwis",)),
    "hindi": Language("h", "hi", "hf_alpha", ("hf_alpha", "hf_beta", "hm_omega", "hm_psi")),
    "italian": Language("i", "it", "if_sara", ("if_sara", "im_nicola")),
    "brazilian-portuguese": Language("p", "pt-br", "pf_dora", ("pf_dora", "pm_alex", "pm_santa")),
}
ALL_VOICES = tuple(voice for language in LANGUAGES.values() for voice in language.voices)


class KokoroInput(Struct, kw_only=True):
    prompt: Annotated[str, Meta(max_length=10_000)] = ""
    voice: str | None = None  # None: the language's default (af_heart for American English)
    speed: Annotated[float, Meta(ge=0.25, le=4.0)] = 1.0
    output_format: Literal["wav", "mp3"] = "wav"  # thorgen's addition; fal's kokoro returns WAV


class AudioOutput(Struct):
    audio: AudioFile


def _language(endpoint_id: str) -> Language:
    return LANGUAGES[endpoint_id.rsplit("/", 1)[1]]


def _checker(language: Language) -> Any:
    def validate(args: KokoroInput, model: Any = None) -> None:
        if not args.prompt.strip():
            raise InputError("prompt", "There is no text to speak: the field is empty", "value_error")
        if args.voice is not None and args.voice not in language.voices:
            raise InputError("voice", f"Unknown voice {args.voice!r}; this id's voices are: "
                                      f"{', '.join(language.voices)}", "enum")

    return validate


def _runner(language: Language) -> Any:
    def run(ctx: Context, args: KokoroInput) -> AudioOutput:
        _checker(language)(args)
        voice = args.voice or language.default_voice
        if ctx.model is not None and ctx.config.model(ctx.model).family != "kokoro":
            return _stand_in(ctx, args, voice)
        samples = speak(ctx, language, voice, args.prompt, args.speed)
        return AudioOutput(audio=store_audio(ctx, samples, SAMPLE_RATE, args.output_format))

    return run


def _stand_in(ctx: Context, args: KokoroInput, voice: str) -> AudioOutput:
    """No kokoro package (or [endpoint_models] chose another model): FastPitch speaks with a preset."""
    from thorgen.families import speech as tts

    ctx.log(f"{ctx.model} answers this Kokoro id (pip install 'thorgen[kokoro]' and "
            f"`thorgen models pull kokoro` for Kokoro's own voices)", "WARNING")
    stand_in = tts.kokoro(ctx, tts.KokoroInput(prompt=args.prompt, voice=voice, speed=args.speed))
    return AudioOutput(audio=stand_in.audio)


def speak(ctx: Context, language: Language, voice: str, text: str, speed: float) -> np.ndarray:
    """Kokoro's audio for ``text``: phonemized sentence by sentence, each a progress step, joined."""
    import torch

    with ctx.lease() as lease:
        loaded: KokoroModel = lease.pipeline
        pieces = [piece for sentence in _sentences(text) for piece in _fit(loaded.phonemize(language, sentence))]
        if not pieces:
            raise InputError("prompt", "The text has nothing the voice can speak", "value_error")
        style_pack = loaded.voice(voice)
        ctx.log(f"voice {voice} ({len(pieces)} piece(s), speed {speed:g}, espeak-ng G2P '{language.espeak}')")
        out: list[np.ndarray] = []
        # The vocoder draws noise for unvoiced sounds from torch's global generator: a fixed seed per
        # job makes the same input give the same audio.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for done, phonemes in enumerate(pieces, start=1):
                style = style_pack[min(len(phonemes), len(style_pack)) - 1]
                audio = loaded.model(phonemes, style.to(loaded.device), speed)
                if out:
                    out.append(np.zeros(int(SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32))
                out.append(audio.detach().float().cpu().numpy().reshape(-1))
                ctx.step(done, len(pieces), "sentence")
    return np.clip(np.concatenate(out), -1.0, 1.0)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;:])\s+|\n+", text) if s.strip()]


def _fit(phonemes: str) -> list[str]:
    """Phonemes in pieces the model's context holds, cut between words."""
    pieces = []
    while len(phonemes) > MAX_PHONEMES:
        cut = phonemes.rfind(" ", 0, MAX_PHONEMES)
        cut = cut if cut > 0 else MAX_PHONEMES
        pieces.append(phonemes[:cut].strip())
        phonemes = phonemes[cut:].strip()
    return [p for p in [*pieces, phonemes.strip()] if p]


# -- loading (the swapper calls this through models/loaders.py) -----------------------------------

class KokoroModel:
    """The loaded KModel, its voices (read on first use), and one espeak-ng G2P per language."""

    def __init__(self, model: Any, folder: Path, device: str):
        self.model = model
        self.folder = folder
        self.device = device
        self._voices: dict[str, Any] = {}
        self._g2p: dict[str, Any] = {}

    @property
    def components(self) -> dict[str, Any]:
        """What the swapper measures (and watches for leaks): the model; voice packs are 0.5 MB each."""
        return {"model": self.model}

    def voice(self, name: str) -> Any:
        if name not in self._voices:
            import torch

            path = self.folder / "voices" / f"{name}.pt"
            if not path.is_file():
                raise FalError(f"The voice file {path} is missing: run `thorgen models pull kokoro` again",
                               status=424, error_type="model_not_installed")
            self._voices[name] = torch.load(path, map_location="cpu", weights_only=True)
        return self._voices[name]

    def phonemize(self, language: Language, text: str) -> str:
        if language.code not in self._g2p:
            from misaki import espeak

            if language.code in "ab":
                self._g2p[language.code] = _English(espeak.EspeakFallback(british=language.code == "b"))
            else:
                self._g2p[language.code] = espeak.EspeakG2P(language=language.espeak)
        phonemes, _ = self._g2p[language.code](text)
        return str(phonemes or "")


class _English:
    """misaki's EspeakFallback phonemizes one token (an object with ``text``); here a whole sentence."""

    @dataclass
    class _Token:
        text: str

    def __init__(self, fallback: Any):
        self.fallback = fallback

    def __call__(self, text: str) -> tuple[str, None]:
        phonemes, _ = self.fallback(self._Token(text))
        return phonemes or "", None


def load(request: LoadRequest) -> KokoroModel:
    """KModel from the folder's config.json and .pth, local files only (never the Hub)."""
    from kokoro import KModel

    folder, device = Path(request.path), request.device

    weights = sorted(folder.glob("*.pth"))
    if not weights:
        raise FalError(f"{folder} holds no Kokoro weights (*.pth): run `thorgen models pull kokoro`",
                       status=424, error_type="model_not_installed")
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(weights[0]))
    return KokoroModel(model.to(device).eval(), folder, device)


# -- tiny random weights with Kokoro-82M's real file layout -----------------------------------------

# Kokoro's phoneme alphabet (punctuation, misaki's English symbols, IPA): the tiny model's vocabulary.
PHONEMES = (';:,.!?¡¿—…"«»“” ()' "ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyz"
            "ɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ")


def tiny_config() -> dict[str, Any]:
    """config.json as Kokoro-82M's, at toy sizes where the code allows it. The decoder's widths are
    fixed in the kokoro package (1024 and 512 channels, hidden_dim 512), so the tiny model is ~58 M
    parameters; the text side (ALBERT, predictor, text encoder) is small."""
    vocab = {symbol: index for index, symbol in enumerate(dict.fromkeys(PHONEMES), start=1)}
    return {
        "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                     "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5]], "resblock_kernel_sizes": [3],
                     "upsample_initial_channel": 512},
        "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50, "multispeaker": True,
        "n_layer": 1, "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
        "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.1},
        "vocab": vocab,
    }


class TinyKokoro:
    """What tiny.write_tiny saves: config.json, kokoro-v1_0.pth (KModel's per-part state dicts) and one
    voices/NAME.pt per voice (a [510, 1, 256] style pack, indexed by phoneme count)."""

    def __init__(self, model: Any, config: dict[str, Any]):
        self.model = model
        self.config = config

    def save_to_folder(self, folder: Path) -> None:
        import json

        import torch

        (folder / "voices").mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config, ensure_ascii=False, indent=1), encoding="utf-8")
        parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
        torch.save({part: getattr(self.model, part).state_dict() for part in parts}, folder / "kokoro-v1_0.pth")
        generator = torch.Generator().manual_seed(1)
        for name in ALL_VOICES:
            pack = torch.randn(MAX_PHONEMES, 1, 2 * self.config["style_dim"], generator=generator) * 0.5
            torch.save(pack, folder / "voices" / f"{name}.pt")


def build_tiny() -> TinyKokoro:
    import tempfile

    import torch
    from kokoro import KModel

    torch.manual_seed(0)
    config = tiny_config()
    with tempfile.TemporaryDirectory() as scratch:  # KModel wants a weights file: an empty one
        empty = Path(scratch) / "empty.pth"
        torch.save({}, empty)
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty))
    with torch.no_grad():
        # About two frames per phoneme, not the ~25 a random duration head gives (half of its 50 bins).
        head = model.predictor.duration_proj.linear_layer
        head.weight.mul_(0.01)
        head.bias.fill_(-3.2)  # sigmoid(-3.2) x 50 bins = about 2 frames (25 ms each): short, cheap clips
    return TinyKokoro(model.eval(), config)


def _endpoint(name: str, language: Language) -> Endpoint:
    return Endpoint(f"fal-ai/kokoro/{name}", KokoroInput, AudioOutput, _runner(language), "gpu",
                    f"Text to speech, Kokoro-82M {name.replace('-', ' ')} voices", model=MODEL,
                    validate=_checker(language), fallback=FALLBACK)


ENDPOINTS = [_endpoint(name, language) for name, language in LANGUAGES.items()]
KOKORO = Extra(module="kokoro", name="kokoro")


def doctor(config: Any) -> list[Finding]:
    """Whether Kokoro answers the kokoro ids (package and espeak-ng), or the FastPitch stand-in does."""
    if KOKORO.missing() is not None:
        return [Finding("extra: Kokoro", "info", f"not installed: the kokoro ids answer with {FALLBACK} presets "
                                                  "(pip install 'thorgen[kokoro]', then `thorgen models pull kokoro`)")]
    try:
        import espeakng_loader

        library = Path(espeakng_loader.get_library_path())
        found = library.is_file() and Path(espeakng_loader.get_data_path()).is_dir()
    except Exception:  # a broken wheel: said, not raised
        found = False
    if not found:
        return [Finding("extra: Kokoro", "FAIL", "installed, but espeak-ng (espeakng-loader's library and data) "
                                                  "is missing: no text can be phonemized")]
    return [Finding("extra: Kokoro", "ok", "installed; G2P by espeak-ng offline")]


CATALOG = {
    MODEL: CatalogEntry(
        config={"family": "kokoro", "path": MODEL, "source": "hexgrad/Kokoro-82M", "dtype": "float32"},
        licence="Apache-2.0",
        gated=False,
        approx_bytes=355_000_000,  # 82 M parameters in float32 (327 MB) and 54 voice packs of 0.5 MB
        allow_patterns=["config.json", "kokoro-v1_0.pth", "voices/*.pt"],
    ),
}

FAMILY = Family(
    name="kokoro",
    title="Kokoro",
    endpoints=ENDPOINTS,
    catalog=CATALOG,
    extra=KOKORO,
    load=load,
    tiny={ANY_PIPELINE: build_tiny},
    doctor=doctor,
)
