"""config.toml decoded once into typed Structs; env and flags override; bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from thorgen.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_decodes():
    config = load_config(REPO / "config.toml", environ={})
    assert config.cosmos.guardrail and config.guardrail_on and config.cosmos.resolution == "720p"
    assert config.server.port == 10000 and config.server.host == "127.0.0.1"
    assert config.lanes.utility_workers >= 1


def test_env_and_flags_override_in_order(tmp_path):
    config = load_config(
        REPO / "config.toml",
        environ={"THORGEN_SERVER__PORT": "10001", "THORGEN_SERVER__CORS_ORIGINS": "http://a, http://b",
                 "THORGEN_LIMITS__FETCH_TIMEOUT_S": "2.5"},
        overrides={"server.port": 10002, "storage.data_dir": str(tmp_path)},
    )
    assert config.server.port == 10002
    assert config.server.cors_origins == ["http://a", "http://b"]
    assert config.limits.fetch_timeout_s == 2.5
    assert config.data_dir == tmp_path


@pytest.mark.parametrize("text,environ,needle", [
    ("[server]\nport = 'high'\n", {}, "server.port"),
    ("[server]\nprot = 1\n", {}, "prot"),
    ("[limits]\nfetch_timeout_s = -1\n", {}, "limits.fetch_timeout_s"),
    ("[server\n", {}, "not valid TOML"),
    ("", {"THORGEN_LANES__UTILITY_WORKERS": "many"}, "THORGEN_LANES__UTILITY_WORKERS"),
    ("[server]\napi_key = 'x'\n", {}, "THORGEN_SERVER__API_KEY"),
    ("[aliases]\n'fal-ai/x' = 'fal-ai/nothing'\n", {}, None),
    ("", {"THORGEN_COSMOS__RESOLUTION": "1080p"}, "cosmos.resolution"),
    ("[cosmos]\nfirst_frame_model = 'nope'\n", {}, "cosmos.first_frame_model"),
    # Range constraints on the fields themselves (msgspec Meta), named by key like any other error.
    ("[server]\nport = 70000\n", {}, "server.port"),
    ("", {"THORGEN_RUNTIME__BUDGET_FRACTION": "0"}, "runtime.budget_fraction"),
    ("[lanes]\nutility_workers = 0\n", {}, "lanes.utility_workers"),
    ("[runtime]\nbudget_bytes = -5\n", {}, "runtime.budget_bytes"),
    ("[storage]\nupload_ttl_s = 0\n", {}, "storage.upload_ttl_s"),
])
def test_bad_config_names_the_key(tmp_path, text, environ, needle):
    path = tmp_path / "config.toml"
    path.write_text(text)
    if needle is None:  # decodes; the registry refuses the alias target at start (see cli test)
        load_config(path, environ=environ)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    assert needle in str(caught.value)


def test_folders_in_a_config_file_are_relative_to_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "config.toml"
    path.write_text('[storage]\ndata_dir = "data"\nmodels_dir = "../weights"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, environ={})
    assert config.data_dir == folder / "data"
    assert config.models_root == tmp_path / "weights"
    # from the environment or a flag, a relative folder is the shell's: the working directory
    from_env = load_config(path, environ={"THORGEN_STORAGE__DATA_DIR": "env-data"},
                           overrides={"storage.models_dir": "flag-models"})
    assert from_env.data_dir == elsewhere / "env-data" and from_env.models_root == elsewhere / "flag-models"
    absolute = tmp_path / "abs"
    path.write_text(f'[storage]\ndata_dir = "{absolute}"\n')
    assert load_config(path, environ={}).data_dir == absolute


def test_jobs_database_is_a_postgresql_url_and_its_password_is_masked():
    from thorgen.config import redacted

    config = load_config(None, environ={"THORGEN_JOBS__DATABASE": "postgresql://thorgen:s3cret@db.lan:5432/thorgen"})
    assert config.jobs.database.endswith("@db.lan:5432/thorgen")
    assert redacted(config)["jobs"]["database"] == "postgresql://thorgen:***@db.lan:5432/thorgen"
    with pytest.raises(ConfigError, match="jobs.database"):
        load_config(None, environ={"THORGEN_JOBS__DATABASE": "mysql://x@y/z"})
