"""The speech endpoints through fal's Python client, against the session's server in tiny mode.

The tiny FastPitch + HiFi-GAN have NeMo's real architectures with random weights; the server's warm-up
writes them as two .nemo archives and loads them with NeMo's ``restore_from``, as it would real ones.
Their speech is noise, so the checks are on the audio itself: rate, exact duration, not silent, and
voices that really differ.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import fal_client
import httpx
import numpy as np
import pytest

from thorgen.families.speech.normalise import normalise
from thorgen.media.audio import decode_audio
from thorgen.media.probe import probe

needs_nemo = pytest.mark.skipif(importlib.util.find_spec("nemo") is None,
                                reason="NeMo (the tts extra) is not installed here")
RATE = 22050
EDITOR_BASE = {"image_size": "landscape_16_9", "aspect_ratio": "16:9", "seconds_total": 30}
F5_EXTRA = {"ref_audio_url": "https://github.com/SWivid/F5-TTS/raw/main/src/f5_tts/infer/examples/basic/"
                             "basic_ref_en.wav",
            "ref_text": "Some call me nature, others call me mother nature.", "model_type": "F5-TTS",
            "remove_silence": True}


def fetch_audio(tmp_path, audio: dict, name: str = "out") -> tuple[dict, np.ndarray]:
    """Download a returned File; (probe, mono samples at the file's own rate)."""
    response = httpx.get(audio["url"])
    assert response.status_code == 200
    assert audio["file_size"] == len(response.content)
    path = tmp_path / f"{name}.{audio['file_name'].rsplit('.', 1)[-1]}"
    path.write_bytes(response.content)
    info = probe(path)
    samples, _ = decode_audio(path, sample_rate=info["sample_rate"], channels=1)
    return info, samples[0]


def assert_speech(tmp_path, audio: dict, content_type: str = "audio/wav", rate: int = RATE) -> np.ndarray:
    assert set(audio) == {"url", "content_type", "file_name", "file_size", "duration"}, audio
    assert audio["content_type"] == content_type
    info, samples = fetch_audio(tmp_path, audio)
    assert info["media_type"] == "audio" and info["sample_rate"] == rate and info["channels"] == 1
    assert audio["duration"] > 0
    if content_type == "audio/wav":  # PCM: the sample count is the duration, exactly
        assert samples.size == round(audio["duration"] * rate)
    else:
        assert abs(info["duration"] - audio["duration"]) < 0.1
    assert np.sqrt(np.mean(samples**2)) > 1e-3, "silent audio: the models did not really run"
    return samples


@needs_nemo
def test_playht_with_the_editors_input(fal, tmp_path):
    """What the editor's default voiceover sends (starter-kit.md §2.2)."""
    text = "Coffee beans falling into a cup."
    output = fal.subscribe("fal-ai/playht/tts/v3", arguments={
        "prompt": text, "input": text, "voice": "Dexter (English (US)/American)", **EDITOR_BASE})
    assert set(output) == {"audio"}
    assert_speech(tmp_path, output["audio"])


@needs_nemo
@pytest.mark.parametrize(("endpoint", "arguments", "key", "content_type", "rate"), [
    ("fal-ai/f5-tts", {"prompt": "Hello there.", "gen_text": "Hello there.", **F5_EXTRA, **EDITOR_BASE},
     "audio_url", "audio/wav", RATE),
    ("fal-ai/minimax/speech-02-hd", {"text": "Hello there.", "voice_setting": {"voice_id": "Deep_Voice_Man",
                                                                             "speed": 0.8, "pitch": -2}},
     "audio", "audio/mpeg", 32000),
    ("fal-ai/minimax/speech-02-hd", {"text": "Hello there.", "audio_setting": {"format": "pcm",
                                                                              "sample_rate": 16000}},
     "audio", "audio/wav", 16000),
])
def test_every_other_id(fal, tmp_path, endpoint, arguments, key, content_type, rate):
    output = fal.run(endpoint, arguments=arguments)
    assert set(output) == ({key, "duration_ms"} if endpoint.startswith("fal-ai/minimax") else {key})
    assert_speech(tmp_path, output[key], content_type, rate)
    if endpoint.startswith("fal-ai/minimax"):
        assert output["duration_ms"] == round(output[key]["duration"] * 1000)


@needs_nemo
@pytest.mark.parametrize("endpoint", ["fal-ai/playht/tts/v3", "fal-ai/playai/tts/dialog", "fal-ai/f5-tts",
                                      "fal-ai/minimax/speech-02-hd"])
def test_prompt_alone_is_the_text(fal, tmp_path, endpoint):
    """The editor's re-run sends only ``prompt`` (and no voices to a dialog): it is spoken as the
    endpoint's own text field would be. The tiny voices sound alike whatever the text, so the text
    shows in the work done: long sentences are spoken piece by piece, one progress step each."""
    main = {"fal-ai/playht/tts/v3": "input", "fal-ai/playai/tts/dialog": "input", "fal-ai/f5-tts": "gen_text",
            "fal-ai/minimax/speech-02-hd": "text"}[endpoint]
    long_sentence = "This sentence is long enough that two of them never fit in one piece of speech, " * 2
    text = f"Speaker 1: {long_sentence.strip()}. {long_sentence.strip()}. Speaker 2: Yes."

    def pieces(arguments: dict) -> list[str]:
        handle = fal.submit(endpoint, arguments={**arguments, **EDITOR_BASE})
        output = handle.get()
        audio = output.get("audio") or output["audio_url"]
        assert audio["duration"] > 0
        logs = fal.status(endpoint, handle.request_id, with_logs=True).logs
        return [entry["message"] for entry in logs if entry["message"].startswith("sentence ")]

    from_prompt = pieces({"prompt": text})
    assert len(from_prompt) >= 2, from_prompt  # a short fixed sentence would be one piece
    assert from_prompt == pieces({main: text})


EMPTY = "There is no text to speak: the field is empty"


@pytest.mark.parametrize(("endpoint", "arguments", "loc", "msg"), [
    ("fal-ai/playht/tts/v3", {"input": "   ", "voice": ""}, ["body", "input"], EMPTY),
    ("fal-ai/playht/tts/v3", {"input": ""}, ["body", "input"], EMPTY),
    ("fal-ai/playai/tts/dialog", {"input": ""}, ["body", "input"], EMPTY),
    ("fal-ai/playai/tts/dialog", {"input": "Speaker 1: Speaker 2: "}, ["body", "input"],
     "There is no text to speak: the turns hold only speaker prefixes"),
    ("fal-ai/f5-tts", {"gen_text": "", "prompt": ""}, ["body", "gen_text"], EMPTY),
    ("fal-ai/kokoro/american-english", {"prompt": ""}, ["body", "prompt"], EMPTY),
    ("fal-ai/minimax/speech-02-hd", {"text": "\n"}, ["body", "text"], EMPTY),
    ("fal-ai/minimax/speech-02-hd", {"text": "x", "voice_setting": {"speed": 3}}, ["body", "voice_setting", "speed"],
     "Expected `float` <= 2.0"),
    ("fal-ai/kokoro/american-english", {"prompt": "x", "speed": 0}, ["body", "speed"], "Expected `float` >= 0.25"),
])
@needs_nemo
def test_empty_text_or_bad_settings_are_a_422_at_submit(fal, endpoint, arguments, loc, msg):
    """Refused by submit itself, as fal's schema validation does: no job is queued to fail later."""
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments=arguments)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"] == [{"loc": loc, "msg": msg, "type": "value_error"}]


def turns_of(samples: np.ndarray, rate: int = RATE) -> list[np.ndarray]:
    """Split joined speech at its pauses (runs of exact zeros of at least 0.25 s)."""
    silent = np.concatenate([[False], samples == 0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    cuts = [(s, e) for s, e in zip(starts, ends, strict=True) if e - s >= 0.25 * rate]
    pieces, at = [], 0
    for start, end in cuts:
        pieces.append(samples[at:start])
        at = end
    pieces.append(samples[at:])
    return [p for p in pieces if p.size]


@needs_nemo
def test_dialog_gives_each_speaker_a_distinct_voice(fal, tmp_path):
    """The editor's dialog input: the same words from both speakers must come out differently, and
    from one voice twice identically (so the difference is the voice, not chance)."""
    line = "Good morning to you."
    text = f"Speaker 1: {line} Speaker 2: {line}"
    voices = [{"voice": "Jennifer (English (US)/American)", "turn_prefix": "Speaker 1: "},
              {"voice": "Furio (English (IT)/Italian)", "turn_prefix": "Speaker 2: "}]
    two = fal.subscribe("fal-ai/playai/tts/dialog", arguments={"prompt": text, "input": text, "voices": voices,
                                                               **EDITOR_BASE})
    same = [dict(voices[0]), {**voices[0], "turn_prefix": "Speaker 2: "}]
    one = fal.run("fal-ai/playai/tts/dialog", arguments={"input": text, "voices": same})
    first, second = turns_of(assert_speech(tmp_path, two["audio"]))
    again_first, again_second = turns_of(assert_speech(tmp_path, one["audio"]))
    assert np.array_equal(again_first, again_second)
    assert np.array_equal(first, again_first)  # speaker 1 is Jennifer in both requests
    assert first.size != second.size or np.sqrt(np.mean((first - second) ** 2)) > 0.05 * np.std(first), \
        "both speakers sound the same"


@needs_nemo
def test_long_text_is_spoken_sentence_by_sentence(fal, tmp_path):
    sentences = [f"This is sentence number {i} of the long text." for i in range(1, 13)]
    handle = fal.submit("fal-ai/playht/tts/v3", arguments={"input": " ".join(sentences), "voice": ""})
    output = handle.get()
    samples = assert_speech(tmp_path, output["audio"])
    final = fal.status("fal-ai/playht/tts/v3", handle.request_id, with_logs=True)
    steps = [entry["message"] for entry in final.logs if entry["message"].startswith("sentence ")]
    assert len(steps) >= 2 and steps[-1].endswith(f"/{len(steps)}"), steps
    assert samples.size / RATE == pytest.approx(output["audio"]["duration"], abs=1 / RATE)


@needs_nemo
def test_digits_are_spoken_without_nemo_text_processing(fal, tmp_path):
    """The tiny FastPitch has no NeMo normaliser and a character tokenizer that has no digits: only
    thorgen's fallback normaliser turns "1234" into letters the model can say."""
    output = fal.run("fal-ai/playht/tts/v3", arguments={"input": "1234", "voice": ""})
    spelled = fal.run("fal-ai/playht/tts/v3", arguments={"input": "one thousand two hundred thirty four",
                                                         "voice": ""})
    assert output["audio"]["duration"] == spelled["audio"]["duration"] > 0


ARCH64_CHECK = """
import logging, sys
for missing in ("pynini", "nemo_text_processing"):  # as on aarch64, where pip installs neither
    sys.modules[missing] = None
logging.basicConfig(level=logging.WARNING)
from thorgen.families.speech.nemo import load_pair
pair = load_pair("fastpitch-hifigan", sys.argv[1], "cpu")
print("RESULT", pair.nemo_normaliser, pair.speak("42").size, pair.speak("forty two").size)
"""


@needs_nemo
def test_a_checkpoint_naming_nemos_normaliser_loads_without_it(server, models_dir, tmp_path):
    """Released FastPitch checkpoints configure nemo_text_processing's Normalizer; on aarch64 it is not
    installed. The archive is the tiny one with that normaliser written into its config."""
    import subprocess
    import tarfile

    source = models_dir / "tiny" / "fastpitch-hifigan"
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "tiny_hifigan.nemo").symlink_to(source / "tiny_hifigan.nemo")
    with tarfile.open(source / "tiny_fastpitch.nemo") as original, \
            tarfile.open(folder / "tiny_fastpitch.nemo", "w") as rewritten:
        for member in original.getmembers():
            data = original.extractfile(member) if member.isfile() else None
            if member.name.endswith("model_config.yaml"):
                assert data is not None
                text = data.read() + (b"\ntext_normalizer:\n  _target_: nemo_text_processing.text_normalization."
                                      b"normalize.Normalizer\n  lang: en\n  input_case: cased\n")
                (tmp_path / "config.yaml").write_bytes(text)
                member.size = len(text)
                data = (tmp_path / "config.yaml").open("rb")
            rewritten.addfile(member, data)
    done = subprocess.run([sys.executable, "-c", ARCH64_CHECK, str(folder)], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and result, done.stderr[-3000:]
    _, uses_nemo, digits, words = result[0].split()
    assert uses_nemo == "False" and int(digits) == int(words) > 0
    assert "nemo_text_processing is not installed" in done.stderr


def test_fallback_normaliser():
    assert normalise("It's 42 times, $3.50 on the 1st & 22nd; 1,250 at 3.14 and 50% Dr. Who") == (
        "It's forty two times, three dollars fifty cents on the first and twenty second; one thousand two "
        "hundred fifty at three point one four and fifty percent doctor Who")
    assert normalise("I have 3, you have 4.") == "I have three, you have four."
    assert normalise("£1.01 in 2026") == "one pound one penny in two thousand twenty six"


def test_voice_presets_are_stable_and_gendered():
    from thorgen.families.speech import PRESETS, distinct_voices, voice_for

    assert voice_for("") == voice_for(None) == PRESETS["female"]
    assert voice_for("Dexter (English (US)/American)").preset.startswith("male")
    assert voice_for("Jennifer (English (US)/American)").preset.startswith("female")
    assert voice_for("Wise_Woman").preset.startswith("female")  # "woman" is not "man"
    assert voice_for("am_adam").preset.startswith("male") and voice_for("af_heart").preset.startswith("female")
    assert voice_for("Somebody New") == voice_for("Somebody New")
    a, b = distinct_voices(["Jennifer (English (US)/American)", "Jennifer (English (UK)/British)"])
    assert a != b


def test_without_nemo_the_loader_names_the_extra(monkeypatch):
    """A simulated import failure: sys.modules[name] = None is how Python marks a module absent."""
    from thorgen.errors import FalError
    from thorgen.families.speech.nemo import nemo_classes

    monkeypatch.setitem(sys.modules, "nemo", None)
    with pytest.raises(FalError) as caught:
        nemo_classes()
    assert caught.value.status == 424 and caught.value.error_type == "extra_not_installed"
    assert "pip install 'thorgen[tts]'" in caught.value.detail


def test_without_nemo_the_server_answers_a_clear_424(tmp_path, fal, models_dir):
    """A second server whose Python cannot import NeMo (sitecustomize marks it absent), over the same
    models folder: the speech weights are on disk, the extra is not."""
    from conftest import point_fal_client_at
    from server_process import ServerProcess

    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['nemo'] = None\n")
    env = {"PYTHONPATH": f"{blocker}:{':'.join(sys.path)}"}
    server = ServerProcess(tmp_path / "data", env=env, args=["--tiny", "--models-dir", str(models_dir)])
    server.start().wait_ready()
    try:
        point_fal_client_at(server.base_url)
        with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
            fal.submit("fal-ai/playht/tts/v3", arguments={"input": "hello", "voice": ""})
        assert caught.value.status_code == 424
        body = caught.value.response.json()
        assert body["error_type"] == "extra_not_installed" and "pip install 'thorgen[tts]'" in body["detail"]
        rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
        assert rows["fal-ai/f5-tts"]["available"] is False and "thorgen[tts]" in rows["fal-ai/f5-tts"]["reason"]
    finally:
        server.stop()


def test_pull_fetches_both_archives_into_one_folder(tmp_path, monkeypatch):
    """`thorgen models pull fastpitch-hifigan`: two Hub repos, only their .nemo files, one folder."""
    from thorgen import families as pull_module
    from thorgen.config import load_config

    calls = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda **kwargs: calls.append(kwargs))
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(tmp_path)})
    target = pull_module.pull(config, "fastpitch-hifigan")
    assert [call["repo_id"] for call in calls] == ["nvidia/tts_en_fastpitch", "nvidia/tts_hifigan"]
    assert all(call["local_dir"] == target and call["allow_patterns"] == ["*.nemo"] for call in calls)
