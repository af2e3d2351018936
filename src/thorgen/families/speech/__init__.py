"""Speech: every voiceover id the editor sends, answered by NeMo FastPitch + HiFi-GAN in-process.

One loaded model pair (``[models.fastpitch-hifigan]``, see speech/nemo.py) serves all ids;
they differ only in how their input names the text and the voice, and in the output's shape.

Voices: the English FastPitch NVIDIA publishes (and the tiny one) has a single speaker, so a voice
name becomes a pitch and pace preset (``PRESETS``): names known to be female or male pick a preset of
that kind, any other name picks one by a stable hash, and the same name always gives the same voice.
A dialog gives each speaker a different preset. None of this imitates the named PlayHT, Kokoro or
MiniMax voice; it keeps speakers apart.

Text: ``prompt`` stands in for the main field when that is missing (the editor's re-run sends only
``prompt``). Long text is split at sentence ends, spoken piece by piece (each piece is a progress step
and a point where a cancel takes effect) and joined with short pauses. ``duration`` is the exact
number of samples spoken divided by the sample rate.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from msgspec import Meta, Struct

from thorgen.errors import InputError
from thorgen.families.base import (
    ANY_PIPELINE,
    AudioFile,
    CatalogEntry,
    Context,
    Endpoint,
    Family,
    Finding,
    LoadRequest,
    store_audio,
)
from thorgen.families.speech.nemo import NEMO

MODEL = "fastpitch-hifigan"
MAX_TEXT = 10_000
MAX_CHUNK_CHARS = 300  # FastPitch attends over the whole input: long inputs cost quadratic time
SENTENCE_PAUSE_S = 0.15
TURN_PAUSE_S = 0.35


@dataclass(frozen=True)
class Voice:
    preset: str
    pitch: float  # semitones relative to the checkpoint's own voice
    pace: float  # > 1 speaks faster


# The checkpoint's own voice is female (LJSpeech); the male presets lower the pitch.
PRESETS = {
    "female": Voice("female", 0.0, 1.0),
    "female-bright": Voice("female-bright", 2.5, 1.06),
    "female-low": Voice("female-low", -2.0, 0.96),
    "male": Voice("male", -6.0, 0.97),
    "male-deep": Voice("male-deep", -8.5, 0.92),
    "male-light": Voice("male-light", -4.0, 1.04),
}
_FEMALE = ("female", "female-bright", "female-low")
_MALE = ("male", "male-deep", "male-light")
# First names of the PlayHT / PlayAI voices the editor lists, and words in MiniMax voice ids.
FEMALE_NAMES = {"jennifer", "ava", "amelia", "ruby", "olivia", "charlotte", "nova", "sophia", "delilah",
                "aurora", "samara", "susan", "nia", "abigail", "lily", "nicole", "sarah",
                "emma", "isabella", "madison", "mia", "bella", "jessica", "sky", "river", "kore", "aoede",
                "alloy", "heart", "woman", "girl", "lady", "abbess"}
MALE_NAMES = {"dexter", "furio", "angelo", "arthur", "hudson", "atlas", "mason", "william", "adrian", "oliver",
              "frederick", "logan", "hunter", "arsenio", "cecil", "jack", "michael", "adam", "echo", "eric",
              "fenrir", "liam", "onyx", "puck", "santa", "man", "guy", "boy", "knight", "gentleman"}


def voice_for(name: str | None) -> Voice:
    """A voice name (PlayHT "Dexter (English (US)/American)", Kokoro "am_adam", MiniMax
    "Wise_Woman", or "") to its preset. "" or None is the checkpoint's own voice."""
    name = (name or "").strip()
    if not name:
        return PRESETS["female"]
    lowered = name.lower()
    if lowered in PRESETS:
        return PRESETS[lowered]
    words = re.findall(r"[a-z]+", lowered)
    if re.match(r"^[ab]f_", lowered):
        kinds: tuple[str, ...] = _FEMALE
    elif re.match(r"^[ab]m_", lowered):
        kinds = _MALE
    elif any(word in FEMALE_NAMES for word in words):  # before male: "woman" ends in "man"
        kinds = _FEMALE
    elif any(word in MALE_NAMES for word in words):
        kinds = _MALE
    else:
        kinds = (*_FEMALE, *_MALE)
    return PRESETS[kinds[zlib.crc32(lowered.encode()) % len(kinds)]]


# -- inputs and outputs -----------------------------------------------------------------------

Text = Annotated[str, Meta(max_length=MAX_TEXT)]


class AudioOutput(Struct):
    audio: AudioFile


class F5Output(Struct):
    audio_url: AudioFile  # fal's F5 returns an object here, not a string


class MinimaxOutput(Struct):
    audio: AudioFile
    duration_ms: int


class PlayHTInput(Struct, kw_only=True):
    input: Text | None = None
    prompt: Text | None = None
    voice: str = ""
    response_format: Literal["url", "bytes"] = "url"  # accepted; the audio is always a stored file
    seed: int | None = None  # accepted; synthesis is deterministic


class DialogVoice(Struct):
    voice: str
    turn_prefix: str


class DialogInput(Struct, kw_only=True):
    input: Text | None = None
    prompt: Text | None = None
    voices: list[DialogVoice] = []
    response_format: Literal["url", "bytes"] = "url"
    seed: int | None = None


class F5Input(Struct, kw_only=True):
    gen_text: Text | None = None
    prompt: Text | None = None
    ref_audio_url: str | None = None  # not fetched: the voice is not cloned (logged)
    ref_text: str | None = None
    model_type: str | None = None
    remove_silence: bool = True


class KokoroInput(Struct, kw_only=True):
    prompt: Text = ""
    voice: str = "af_heart"
    speed: Annotated[float, Meta(ge=0.25, le=4.0)] = 1.0


class VoiceSetting(Struct, kw_only=True):
    voice_id: str = "Wise_Woman"
    speed: Annotated[float, Meta(ge=0.5, le=2.0)] = 1.0
    vol: Annotated[float, Meta(gt=0, le=10)] = 1.0
    pitch: Annotated[int, Meta(ge=-12, le=12)] = 0
    emotion: str | None = None  # accepted; FastPitch has no emotion control
    english_normalization: bool = False


class AudioSetting(Struct, kw_only=True):
    sample_rate: Literal[8000, 16000, 22050, 24000, 32000, 44100] = 32000
    bitrate: Literal[32000, 64000, 128000, 256000] = 128000
    format: Literal["mp3", "pcm", "flac"] = "mp3"
    channel: Literal[1, 2] = 1


class MinimaxInput(Struct, kw_only=True):
    text: Annotated[str, Meta(max_length=5000)] | None = None
    prompt: Text | None = None
    voice_setting: VoiceSetting | None = None
    audio_setting: AudioSetting | None = None
    language_boost: str | None = None
    output_format: Literal["url", "hex"] = "hex"  # accepted; the audio is always a stored file


# -- text -------------------------------------------------------------------------------------

def text_of(main: str | None, prompt: str | None, field: str) -> str:
    """The text to speak: the endpoint's own field, else ``prompt``; a 422 naming the field if empty."""
    for candidate in (main, prompt):
        if candidate and candidate.strip():
            return candidate.strip()
    raise InputError(field, "There is no text to speak: the field is empty", "value_error")


def split_sentences(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Sentences grouped into pieces of at most ``limit`` characters (a longer sentence is cut at
    commas, then at spaces)."""
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?;])\s+|\n+", text):
        sentence = sentence.strip()
        while len(sentence) > limit:
            cut = max(sentence.rfind(", ", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut + 1].strip())
            sentence = sentence[cut + 1:].strip()
        if not sentence:
            continue
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= limit and pieces[-1][-1:] in ".!?;":
            pieces[-1] += " " + sentence
        else:
            pieces.append(sentence)
    return pieces


DEFAULT_DIALOG_VOICES = [DialogVoice("Jennifer (English (US)/American)", "Speaker 1: "),
                         DialogVoice("Dexter (English (US)/American)", "Speaker 2: ")]


def dialog_turns(text: str, voices: list[DialogVoice]) -> list[tuple[str, int]]:
    """(text, index into voices) per turn. Text before the first prefix belongs to the first voice."""
    prefixes = [v.turn_prefix.strip() for v in voices]
    if not any(prefixes):
        return [(text, 0)]
    pattern = re.compile("|".join(re.escape(p) for p in sorted({p for p in prefixes if p}, key=len, reverse=True)))
    turns: list[tuple[str, int]] = []
    speaker, start = 0, 0
    for match in pattern.finditer(text):
        turns.append((text[start:match.start()], speaker))
        speaker, start = prefixes.index(match.group(0)), match.end()
    turns.append((text[start:], speaker))
    return [(turn.strip(), index) for turn, index in turns if turn.strip()]


def distinct_voices(names: list[str]) -> list[Voice]:
    """Each different name its own preset: a clash moves to the next free preset of the same kind."""
    chosen: dict[str, Voice] = {}
    for name in names:
        if name in chosen:
            continue
        voice = voice_for(name)
        taken = {v.preset for v in chosen.values()}
        if voice.preset in taken:
            kind = _FEMALE if voice.preset in _FEMALE else _MALE
            free = [p for p in (*kind, *_FEMALE, *_MALE) if p not in taken]
            voice = PRESETS[free[0]] if free else voice
        chosen[name] = voice
    return [chosen[name] for name in names]


# -- running ----------------------------------------------------------------------------------

def speak(ctx: Context, parts: list[tuple[str, Voice]], pause_s: float = TURN_PAUSE_S) -> tuple[np.ndarray, int]:
    """Synthesize each (text, voice) part, sentence by sentence, joined by pauses. (samples, rate)."""
    plan = [(piece, voice, index) for index, (text, voice) in enumerate(parts) for piece in split_sentences(text)]
    if not plan:
        raise InputError([], "There is no text to speak", "value_error")
    with ctx.lease() as model:
        pair = model.pipeline
        rate = pair.sample_rate
        pieces: list[np.ndarray] = []
        for done, (piece, voice, index) in enumerate(plan, start=1):
            if pieces:
                pause = pause_s if index != plan[done - 2][2] else SENTENCE_PAUSE_S
                pieces.append(np.zeros(int(round(pause * rate)), np.float32))
            audio = pair.speak(piece, pitch_semitones=voice.pitch, pace=voice.pace)
            pieces.append(audio)
            ctx.step(done, len(plan), "sentence")
    samples = np.concatenate(pieces)
    if samples.size == 0:
        raise InputError([], "The text has nothing the voice can speak (no letters or numbers)", "value_error")
    return samples, rate


def _log_voice(ctx: Context, name: str, voice: Voice) -> None:
    ctx.log(f"voice {name or '(default)'!r} -> preset {voice.preset} (pitch {voice.pitch:+g} semitones, "
            f"pace {voice.pace:g})")


def playht(ctx: Context, args: PlayHTInput) -> AudioOutput:
    text = text_of(args.input, args.prompt, "input")
    voice = voice_for(args.voice)
    _log_voice(ctx, args.voice, voice)
    samples, rate = speak(ctx, [(text, voice)])
    return AudioOutput(audio=store_audio(ctx, samples, rate))


def dialog(ctx: Context, args: DialogInput) -> AudioOutput:
    text = text_of(args.input, args.prompt, "input")
    speakers = args.voices or DEFAULT_DIALOG_VOICES
    voices = distinct_voices([s.voice for s in speakers])
    turns = dialog_turns(text, speakers)
    for speaker, voice in zip(speakers, voices, strict=True):
        _log_voice(ctx, f"{speaker.turn_prefix.strip()} {speaker.voice}", voice)
    ctx.log(f"{len(turns)} turn(s)")
    samples, rate = speak(ctx, [(turn, voices[index]) for turn, index in turns])
    return AudioOutput(audio=store_audio(ctx, samples, rate))


def f5(ctx: Context, args: F5Input) -> F5Output:
    text = text_of(args.gen_text, args.prompt, "gen_text")
    if args.ref_audio_url:
        ctx.log("ref_audio_url is not fetched and the voice is not cloned: FastPitch speaks in its own voice")
    samples, rate = speak(ctx, [(text, PRESETS["female"])])
    return F5Output(audio_url=store_audio(ctx, samples, rate))


def kokoro(ctx: Context, args: KokoroInput) -> AudioOutput:
    """The stand-in for fal's kokoro ids while the kokoro extra is absent (families/kokoro.py calls it)."""
    text = text_of(args.prompt, None, "prompt")
    base = voice_for(args.voice)
    voice = Voice(base.preset, base.pitch, base.pace * args.speed)
    _log_voice(ctx, args.voice, voice)
    samples, rate = speak(ctx, [(text, voice)])
    return AudioOutput(audio=store_audio(ctx, samples, rate))


def minimax(ctx: Context, args: MinimaxInput) -> MinimaxOutput:
    text = text_of(args.text, args.prompt, "text")
    setting = args.voice_setting or VoiceSetting()
    audio = args.audio_setting or AudioSetting()
    base = voice_for(setting.voice_id)
    voice = Voice(base.preset, base.pitch + setting.pitch, base.pace * setting.speed)
    _log_voice(ctx, setting.voice_id, voice)
    samples, rate = speak(ctx, [(text, voice)])
    samples = np.clip(samples * setting.vol, -1.0, 1.0)
    fmt = "wav" if audio.format == "pcm" else audio.format
    stored = store_audio(ctx, samples, rate, fmt, out_rate=audio.sample_rate, channels=audio.channel,
                    bitrate=audio.bitrate)
    return MinimaxOutput(audio=stored, duration_ms=int(round(stored.duration * 1000)))


# -- submit-time checks: an empty text is a 422 at once (the run functions check it again) ------

def validate_playht(args: PlayHTInput, model: Any) -> None:
    text_of(args.input, args.prompt, "input")


def validate_dialog(args: DialogInput, model: Any) -> None:
    text = text_of(args.input, args.prompt, "input")
    if not dialog_turns(text, args.voices or DEFAULT_DIALOG_VOICES):
        raise InputError("input", "There is no text to speak: the turns hold only speaker prefixes", "value_error")


def validate_f5(args: F5Input, model: Any) -> None:
    text_of(args.gen_text, args.prompt, "gen_text")


def validate_minimax(args: MinimaxInput, model: Any) -> None:
    text_of(args.text, args.prompt, "text")


def _endpoint(endpoint_id: str, input_type: type[Struct], output: type[Struct], run: Any, summary: str,
              validate: Any) -> Endpoint:
    return Endpoint(endpoint_id, input_type, output, run, "gpu", summary, model=MODEL, validate=validate)


ENDPOINTS = [
    _endpoint("fal-ai/playht/tts/v3", PlayHTInput, AudioOutput, playht, "Text to speech (PlayHT voices as presets)",
              validate_playht),
    _endpoint("fal-ai/playai/tts/dialog", DialogInput, AudioOutput, dialog,
              "Two-or-more-speaker dialog (Speaker N: turns)", validate_dialog),
    _endpoint("fal-ai/f5-tts", F5Input, F5Output, f5, "Text to speech (reference voice not cloned)", validate_f5),
    _endpoint("fal-ai/minimax/speech-02-hd", MinimaxInput, MinimaxOutput, minimax,
              "Text to speech (MiniMax voice_setting/audio_setting)", validate_minimax),
]

# NeMo's English FastPitch (LJSpeech voice, 22050 Hz) and HiFi-GAN vocoder: two .nemo files from two
# repos, pulled into one folder (sources are space-separated). float32: small models, and FastPitch's
# duration and pitch predictors are not trained for half precision.
CATALOG = {
    MODEL: CatalogEntry(
        config={"family": "nemo-tts", "path": MODEL,
                "source": "nvidia/tts_en_fastpitch nvidia/tts_hifigan", "dtype": "float32"},
        licence="CC-BY-4.0",
        gated=False,
        approx_bytes=502_000_000,
        allow_patterns=["*.nemo"],
    ),
}


def load(request: LoadRequest) -> Any:
    """Two .nemo archives, restored by NeMo itself (speech/nemo.py)."""
    from thorgen.families.speech.nemo import load_pair

    return load_pair(request.name, request.path, request.device,
                     cache_dir=request.config.data_dir / "cache" / "text-normalisation")


def build_tiny() -> Any:
    from thorgen.families.speech.tiny import build_tiny_pair

    return build_tiny_pair()


def doctor(config: Any) -> list[Finding]:
    installed = NEMO.missing() is None
    return [Finding("extra: NeMo TTS", "ok" if installed else "info",
                    "installed" if installed else "not installed (pip install 'thorgen[tts]')")]


FAMILY = Family(
    name="nemo-tts",
    title="NeMo TTS",
    endpoints=ENDPOINTS,
    catalog=CATALOG,
    extra=NEMO,
    load=load,
    tiny={ANY_PIPELINE: build_tiny},
    doctor=doctor,
)
