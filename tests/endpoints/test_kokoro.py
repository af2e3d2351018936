"""Kokoro voices through fal's Python client, against the session's server in tiny mode.

The tiny Kokoro is the kokoro package's own KModel (ALBERT, prosody predictor, text encoder, iSTFTNet
decoder) with random weights, written as hexgrad/Kokoro-82M lays its files out (config.json,
kokoro-v1_0.pth, voices/NAME.pt) and loaded through the same loader as the real weights. Text becomes
phonemes with espeak-ng offline. The speech is noise, so the checks are on the audio: rate, exact
duration, voices that differ, the same voice that repeats.
"""

from __future__ import annotations

import importlib.util
import sys

import fal_client
import httpx
import numpy as np
import pytest
from test_tts import EDITOR_BASE, assert_speech, fetch_audio
from wire_helpers import cancel_after_first_step

pytestmark = pytest.mark.skipif(importlib.util.find_spec("kokoro") is None,
                                reason="kokoro (the kokoro extra) is not installed here")
KOKORO = "fal-ai/kokoro/american-english"
RATE = 24000
TEXT = "Coffee beans falling."


def speak(fal, tmp_path, arguments: dict, endpoint: str = KOKORO, name: str = "out") -> tuple[dict, np.ndarray]:
    output = fal.run(endpoint, arguments=arguments)
    assert set(output) == {"audio"}
    assert_speech(tmp_path, output["audio"], rate=RATE)
    return output["audio"], fetch_audio(tmp_path, output["audio"], name)[1]


def test_editor_input_speaks_in_the_chosen_voice(fal, tmp_path):
    """The editor's body (its base fields, prompt, a Kokoro voice): Kokoro's 24 kHz audio; another voice
    gives other audio, the same voice twice the same."""
    heart, heart_samples = speak(fal, tmp_path, {"prompt": TEXT, "voice": "af_heart", **EDITOR_BASE})
    again, again_samples = speak(fal, tmp_path, {"prompt": TEXT, "voice": "af_heart", **EDITOR_BASE}, name="again")
    adam, adam_samples = speak(fal, tmp_path, {"prompt": TEXT, "voice": "am_adam", **EDITOR_BASE}, name="adam")
    assert np.array_equal(heart_samples, again_samples)
    assert heart["duration"] == again["duration"]
    n = min(heart_samples.size, adam_samples.size)
    assert not np.allclose(heart_samples[:n], adam_samples[:n], atol=1e-3), "two voices, the same audio"


def test_the_default_voice_is_af_heart(fal, tmp_path):
    handle = fal.submit(KOKORO, arguments={"prompt": TEXT})
    handle.get()
    logs = [e["message"] for e in fal.status(KOKORO, handle.request_id, with_logs=True).logs]
    assert any(message.startswith("voice af_heart (") for message in logs), logs


def test_speed_shortens_the_audio(fal, tmp_path):
    slow, _ = speak(fal, tmp_path, {"prompt": TEXT, "voice": "af_bella", "speed": 0.5}, name="slow")
    fast, _ = speak(fal, tmp_path, {"prompt": TEXT, "voice": "af_bella", "speed": 2.0}, name="fast")
    assert fast["duration"] < slow["duration"]


def test_mp3_out_with_its_duration(fal, tmp_path):
    output = fal.run(KOKORO, arguments={"prompt": TEXT, "output_format": "mp3"})
    assert_speech(tmp_path, output["audio"], "audio/mpeg", RATE)


@pytest.mark.parametrize(("endpoint", "voice"), [("fal-ai/kokoro/british-english", "bm_george"),
                                                 ("fal-ai/kokoro/spanish", None)])
def test_other_languages(fal, tmp_path, endpoint, voice):
    arguments = {"prompt": "Hola, buenos días." if "spanish" in endpoint else "Good morning."}
    speak(fal, tmp_path, {**arguments, **({"voice": voice} if voice else {})}, endpoint)


@pytest.mark.parametrize(("endpoint", "voice"), [(KOKORO, "Dexter"), (KOKORO, "bf_emma"),
                                                 ("fal-ai/kokoro/french", "af_heart")])
def test_an_unknown_voice_is_a_422_listing_the_voices(fal, endpoint, voice):
    from thorgen.families.kokoro import LANGUAGES

    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        fal.submit(endpoint, arguments={"prompt": TEXT, "voice": voice})
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"]
    assert detail[0]["loc"] == ["body", "voice"] and detail[0]["type"] == "enum", detail
    assert all(name in detail[0]["msg"] for name in LANGUAGES[endpoint.rsplit("/", 1)[1]].voices), detail


def test_step_logs_and_cancel(fal):
    text = " ".join(f"Sentence number {n} is here." for n in range(40))
    steps = cancel_after_first_step(fal, KOKORO, {"prompt": text}, "sentence")
    assert steps and len(steps) < 40, steps


def test_endpoints_and_info_show_kokoro(server, fal):
    """/endpoints names the model; /info lists it installed and, once a job ran, loaded with its
    measured size (the KModel's parameters: ~59 M float32 in the tiny one)."""
    rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
    assert rows[KOKORO]["model"] == "kokoro" and rows[KOKORO]["available"] is True
    fal.run(KOKORO, arguments={"prompt": TEXT})
    info = httpx.get(f"{server.base_url}/info").json()
    models = {m["name"]: m for m in info["models"]}
    assert models["kokoro"]["installed"] is True and models["ltx-video"]["installed"] is True
    loaded = {m["name"]: m for m in info["runtime"]["loaded"]}
    assert loaded["kokoro"]["bytes"] > 200_000_000, loaded


@pytest.mark.skipif(importlib.util.find_spec("nemo") is None, reason="the FastPitch stand-in needs NeMo")
def test_without_the_extra_fastpitch_answers_and_endpoints_say_so(tmp_path, fal, models_dir):
    """A second server whose Python cannot import kokoro (sitecustomize marks it absent): the kokoro ids
    stay available, /endpoints names fastpitch-hifigan as their model, and FastPitch (22050 Hz) speaks."""
    from conftest import point_fal_client_at
    from server_process import ServerProcess

    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['kokoro'] = None\n")
    env = {"PYTHONPATH": f"{blocker}:{':'.join(sys.path)}"}
    server = ServerProcess(tmp_path / "data", env=env, args=["--tiny", "--models-dir", str(models_dir)])
    server.start().wait_ready()
    try:
        rows = {row["id"]: row for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]}
        assert rows[KOKORO]["model"] == "fastpitch-hifigan" and rows[KOKORO]["available"] is True, rows[KOKORO]
        point_fal_client_at(server.base_url)
        output = fal.run(KOKORO, arguments={"prompt": TEXT, "voice": "am_adam"})
        assert_speech(tmp_path, output["audio"], rate=22050)
    finally:
        server.stop()


def test_doctor_says_who_answers(monkeypatch):
    """`thorgen doctor`: Kokoro with espeak-ng when installed; without the package, the stand-in."""
    from thorgen.families.kokoro import doctor

    (found,) = doctor(None)
    assert (found.check, found.verdict) == ("extra: Kokoro", "ok") and "espeak-ng" in found.detail
    monkeypatch.setitem(sys.modules, "kokoro", None)  # how Python marks a module absent
    (missing,) = doctor(None)
    assert missing.verdict == "info" and "fastpitch-hifigan" in missing.detail and "thorgen[kokoro]" in missing.detail


def test_pull_fetches_hexgrads_files(tmp_path, monkeypatch):
    """`thorgen models pull kokoro`: hexgrad/Kokoro-82M's config, v1.0 weights and voice packs, nothing else
    (the repo also holds samples and the ONNX export); then `models verify` reads that layout."""
    from thorgen import families
    from thorgen.config import load_config

    calls = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda **kwargs: calls.append(kwargs))
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(tmp_path)})
    target = families.pull(config, "kokoro")
    assert [call["repo_id"] for call in calls] == ["hexgrad/Kokoro-82M"] and calls[0]["local_dir"] == target
    assert calls[0]["allow_patterns"] == ["config.json", "kokoro-v1_0.pth", "voices/*.pt"]


def test_verify_reads_the_kokoro_layout(models_dir, server):
    """The tiny Kokoro the session's server wrote is whole; a truncated voice pack is named."""
    import shutil

    from thorgen.models.verify import verify_model_folder

    folder = models_dir / "tiny" / "kokoro"
    assert verify_model_folder(folder) == []
    broken = models_dir / "kokoro-broken"
    shutil.copytree(folder, broken)
    voice = broken / "voices" / "af_heart.pt"
    voice.write_bytes(voice.read_bytes()[:1000])
    assert verify_model_folder(broken) == [f"{voice}: not a readable torch file (a zip archive); a truncated "
                                           "download?"]
