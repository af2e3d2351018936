"""`thorgen models verify NAME`: the tiny models pass; each way a download goes wrong is named exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_models_cli import thorgen_cli

from thorgen.config import load_config


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    result = thorgen_cli("models", "--models-dir", str(root), "tiny")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture()
def flux_copy(tiny_models: Path, tmp_path: Path) -> Path:
    """A models folder holding a copy of the tiny flux-dev, for breaking."""
    shutil.copytree(tiny_models / "tiny" / "flux-dev", tmp_path / "tiny" / "flux-dev")
    return tmp_path


def verify(models_dir: Path, name: str = "flux-dev"):
    return thorgen_cli("models", "--models-dir", str(models_dir), "verify", "--tiny", name)


def test_every_tiny_model_is_complete(tiny_models):
    names = sorted(load_config(None).models)
    checked = [name for name in names if (tiny_models / "tiny" / name).exists()]
    assert {"flux-dev", "cosmos-predict25", "stable-audio-open", "llm", "fastpitch-hifigan"} <= set(checked)
    for name in checked:
        result = verify(tiny_models, name)
        assert result.returncode == 0, result.stdout
        assert result.stdout.strip().endswith(f"{name}: complete ({tiny_models / 'tiny' / name})")


def test_a_truncated_safetensors_file(flux_copy):
    weights = flux_copy / "tiny" / "flux-dev" / "transformer" / "diffusion_pytorch_model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:
        handle.truncate(size - 100)
    result = verify(flux_copy)
    assert result.returncode == 1
    assert (f"{weights}: truncated: {size - 100} bytes, its header says {size} (100 bytes missing)"
            in result.stdout.splitlines())
    assert "flux-dev: 1 problem(s)" in result.stdout


def test_a_file_cut_inside_its_header(flux_copy):
    weights = flux_copy / "tiny" / "flux-dev" / "vae" / "diffusion_pytorch_model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(20)
    result = verify(flux_copy)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith(str(weights)))
    assert line.startswith(f"{weights}: truncated: 20 bytes, but its header alone is ")


def test_a_missing_component_folder(flux_copy):
    shutil.rmtree(flux_copy / "tiny" / "flux-dev" / "text_encoder_2")
    result = verify(flux_copy)
    assert result.returncode == 1
    assert (f"{flux_copy / 'tiny' / 'flux-dev' / 'text_encoder_2'}: missing: model_index.json names component "
            "'text_encoder_2' (transformers.T5EncoderModel), and its folder is not there") in result.stdout


def test_a_missing_tokenizer_file(flux_copy):
    tokenizer = flux_copy / "tiny" / "flux-dev" / "tokenizer_2"
    (tokenizer / "tokenizer_config.json").unlink()
    result = verify(flux_copy)
    assert result.returncode == 1
    assert f"{tokenizer / 'tokenizer_config.json'}: missing (every tokenizer needs it)" in result.stdout.splitlines()


def test_half_a_bpe_vocabulary(flux_copy):
    tokenizer = flux_copy / "tiny" / "flux-dev" / "tokenizer"
    (tokenizer / "tokenizer.json").unlink()
    (tokenizer / "vocab.json").write_text("{}")
    result = verify(flux_copy)
    assert result.returncode == 1
    assert (f"{tokenizer / 'merges.txt'}: missing: a BPE tokenizer needs it beside vocab.json (or a tokenizer.json)"
            in result.stdout.splitlines())


def test_an_unreadable_config_and_a_model_not_installed(flux_copy, tmp_path):
    config = flux_copy / "tiny" / "flux-dev" / "transformer" / "config.json"
    config.write_text('{"_class_name": "FluxTransformer2DModel",')
    result = verify(flux_copy)
    assert result.returncode == 1
    assert any(line.startswith(f"{config}: not readable JSON") for line in result.stdout.splitlines())
    absent = verify(flux_copy, "flux-schnell")
    assert absent.returncode == 1
    assert f"{flux_copy / 'tiny' / 'flux-schnell'}: not installed" in absent.stdout
    unknown = verify(flux_copy, "no-such-model")
    assert unknown.returncode == 1 and "no [models.no-such-model] is configured" in unknown.stderr
