"""`thorgen models list | pull | tiny`, and the model tables in the configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from huggingface_hub.errors import GatedRepoError

from thorgen import families as pull_module
from thorgen.config import ConfigError, load_config


def thorgen_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "THORGEN_SERVER__PORT": "1",
               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "thorgen", *args], capture_output=True, text=True,
                          timeout=180, env=environ)


def test_list_without_weights_says_how_to_get_each_model(tmp_path):
    result = thorgen_cli("models", "--models-dir", str(tmp_path), "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    dev = next(line for line in lines if line.startswith("flux-dev "))
    assert " NO " in dev and "gated: needs HF_TOKEN" in dev and "Non-Commercial" in dev
    assert "get flux-dev with: thorgen models pull flux-dev (about 34 GB)" in result.stdout
    assert "get flux-schnell with: thorgen models pull flux-schnell" in result.stdout


def test_tiny_writes_loadable_folders_and_list_shows_them(tmp_path):
    result = thorgen_cli("models", "--models-dir", str(tmp_path), "tiny")
    assert result.returncode == 0, result.stderr
    assert "flux-dev" in result.stdout and "thorgen serve --tiny" in result.stdout
    for name in ("flux-dev", "flux-schnell"):
        folder = tmp_path / "tiny" / name
        assert (folder / "model_index.json").is_file()
        assert list((folder / "transformer").glob("*.safetensors"))
    listed = thorgen_cli("models", "--models-dir", str(tmp_path), "list", env={"THORGEN_RUNTIME__TINY": "1"})
    dev = next(line for line in listed.stdout.splitlines() if line.startswith("flux-dev "))
    assert " yes " in dev and "GiB" in dev
    again = thorgen_cli("models", "--models-dir", str(tmp_path), "tiny")
    assert "all were there" in again.stdout


def test_pull_offline_fails_with_a_clear_message(tmp_path):
    result = thorgen_cli("models", "--models-dir", str(tmp_path), "pull", "flux-schnell")
    assert result.returncode == 1
    assert "cannot reach the Hugging Face Hub" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    unknown = thorgen_cli("models", "--models-dir", str(tmp_path), "pull", "nope")
    assert unknown.returncode == 1 and "thorgen models list" in unknown.stderr


def test_pull_of_a_gated_model_without_a_token_explains_the_licence_step(tmp_path, monkeypatch):
    import httpx

    def refuse(**kwargs):  # stands in for the Hub's 401 on a gated repo
        response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co/x"))
        raise GatedRepoError("gated", response=response)

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(tmp_path)})
    with pytest.raises(pull_module.PullError) as caught:
        pull_module.pull(config, "flux-dev")
    message = str(caught.value)
    assert "gated" in message and "HF_TOKEN is not set" in message
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in message and "accept its licence" in message
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    with pytest.raises(pull_module.PullError) as caught:
        pull_module.pull(config, "flux-dev")
    assert "not been granted access" in str(caught.value) and "hf_secret_value" not in str(caught.value)


def test_pull_asks_only_for_the_diffusers_layout(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda **kwargs: seen.update(kwargs))
    config = load_config(None, environ={"THORGEN_STORAGE__MODELS_DIR": str(tmp_path)})
    target = pull_module.pull(config, "flux-schnell")
    assert target == tmp_path.resolve() / "flux-schnell" and seen["local_dir"] == target
    assert seen["repo_id"] == "black-forest-labs/FLUX.1-schnell"
    assert "model_index.json" in seen["allow_patterns"] and "*/*.safetensors" in seen["allow_patterns"]
    assert "*.safetensors" not in seen["allow_patterns"]  # not the single-file checkpoint at the root


def test_known_models_are_defaults_that_a_table_changes_key_by_key(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text('[models.flux-dev]\ndtype = "float16"\npinned = true\n'
                           '[models.mine]\nfamily = "flux"\npath = "mine"\npipeline = "FluxPipeline"\n')
    config = load_config(config_file, environ={"THORGEN_MODELS__FLUX_SCHNELL__PRELOAD": "true"})
    dev = config.models["flux-dev"]
    assert (dev.dtype, dev.pinned, dev.source) == ("float16", True, "black-forest-labs/FLUX.1-dev")
    assert config.models["flux-schnell"].preload is True and "mine" in config.models
    tiny = load_config(config_file, environ={"THORGEN_RUNTIME__TINY": "true"})
    assert (tiny.model("flux-dev").dtype, tiny.model("flux-dev").device) == ("float32", "cpu")
    assert tiny.model_path("flux-dev").parent.name == "tiny"


@pytest.mark.parametrize(("text", "needle"), [
    ('[runtime]\nbudget_fraction = 1.5\n', "runtime.budget_fraction"),
    ('[endpoint_models]\n"fal-ai/flux/dev" = "nope"\n', "endpoint_models.fal-ai/flux/dev"),
    ('[models.flux-dev]\ndtype = "int4"\n', "models.flux-dev.dtype"),
])
def test_bad_model_settings_name_the_key(tmp_path, text, needle):
    config_file = tmp_path / "config.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, environ={})
    assert needle in str(caught.value)
