"""The command line and the server's log as a new user meets them: flags where the README puts them,
tables that line up, clear messages instead of tracebacks, and a log in one format that says what
is ready when it is ready."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def thorgen_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # THORGEN_SERVER__PORT=1: no server answers there, so `models list` does not ask one.
    # PYTHONPATH passes on: a checkout run with its sources first tests those, not an installed copy.
    environ = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "THORGEN_SERVER__PORT": "1",
               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run([sys.executable, "-m", "thorgen", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=environ)


def columns_line_up(output: str, first_column: str) -> list[str]:
    """The table's rows, after checking each column starts where the header's title does."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(first_column))
    titles = re.findall(r"\S+(?: \S+)*", lines[header])
    starts = [lines[header].index(title) for title in titles]
    rows = [line for line in lines[header + 1:] if line and not line.startswith(("get ", "("))]
    for row in rows:
        for start in starts[1:]:
            assert row[start - 1] == " " and row[start] != " ", f"column at {start} is off in:\n{row}"
    return rows


# -- --config where the README says ------------------------------------------------------------------

def test_config_is_taken_after_the_command_too(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("[limits]\nfetch_timeout_s = 7.5\n[aliases]\n'fal-ai/mine' = 'fal-ai/ffmpeg-api/metadata'\n")
    for args in (("--config", str(config), "config"), ("config", "--config", str(config))):
        result = thorgen_cli(*args)
        assert result.returncode == 0, result.stderr
        assert '"fetch_timeout_s": 7.5' in result.stdout
    endpoints = thorgen_cli("endpoints", "--config", str(config))
    assert endpoints.returncode == 0, endpoints.stderr
    assert any(line.startswith("fal-ai/mine ") for line in endpoints.stdout.splitlines())
    models = thorgen_cli("models", "list", "--config", str(config))
    assert models.returncode == 0, models.stderr
    # serve reads it too: a bad value in it stops the start, naming the key
    config.write_text("[limits]\nfetch_timeout_s = -1\n")
    result = thorgen_cli("serve", "--config", str(config))
    assert result.returncode == 2 and "limits.fetch_timeout_s" in result.stderr, result.stderr


# -- thorgen run's messages --------------------------------------------------------------------------

def test_run_with_a_missing_input_file_says_so_without_a_traceback(tmp_path):
    result = thorgen_cli("run", "fal-ai/ffmpeg-api/metadata", "--input", "@missing.json", "--data-dir",
                         str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot read --input @missing.json" in result.stderr and "No such file" in result.stderr


def test_run_of_an_unknown_endpoint_points_at_the_command_that_lists_them(tmp_path):
    result = thorgen_cli("run", "fal-ai/no/such", "--input", "{}", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "fal-ai/no/such" in result.stderr and "`thorgen endpoints`" in result.stderr
    assert "/endpoints" not in result.stderr.replace("`thorgen endpoints`", "")


# -- tables ------------------------------------------------------------------------------------------

def test_endpoints_table_lines_up_and_says_each_reason_once(tmp_path):
    result = thorgen_cli("--config", str(_empty_models_config(tmp_path)), "endpoints")
    assert result.returncode == 0, result.stderr
    rows = columns_line_up(result.stdout, "endpoint")
    by_id = {row.split()[0]: row for row in rows}
    assert len(max(by_id, key=len)) > 45  # the editor's longest ids are longer than the old fixed width
    t2v = by_id["fal-ai/cosmos-predict-2.5/text-to-video"]
    # the real missing pieces: the weights and (without cosmos_guardrail installed here) the guardrail
    assert "thorgen models pull cosmos-predict25" in t2v and "pip install 'thorgen[guardrail]'" in t2v
    assert by_id["fal-ai/veo2"].endswith("unavailable (as fal-ai/cosmos-predict-2.5/text-to-video)")
    assert result.stdout.count("thorgen[guardrail]") == 3  # the three Cosmos endpoints, not each alias
    assert max(len(row) for row in rows) < 400


def test_models_list_lines_up_lists_the_guardrail_and_sizes_as_the_readme(tmp_path):
    result = thorgen_cli("models", "--models-dir", str(tmp_path), "list")
    assert result.returncode == 0, result.stderr
    rows = columns_line_up(result.stdout, "model")
    names = [row.split()[0] for row in rows]
    assert "cosmos-predict2-video2world" in names  # longer than the old 16-character column
    assert "cosmos-guardrail" in names
    assert "pip install 'thorgen[guardrail]', then thorgen models pull cosmos-guardrail" in result.stdout
    assert "thorgen models pull fastpitch-hifigan (about 0.5 GB)" in result.stdout
    readme = (REPO / "README.md").read_text()
    assert re.search(r"`fastpitch-hifigan` \|[^\n]*\| ≈ 0\.5 GB", readme)


def test_doctor_names_the_missing_guardrail_once(tmp_path):
    result = thorgen_cli("--config", str(_empty_models_config(tmp_path)), "doctor")
    lines = [line for line in result.stdout.splitlines() if "guardrail" in line.lower()]
    assert len(lines) == 1, result.stdout
    assert "required" in lines[0] and "pip install 'thorgen[guardrail]'" in lines[0]


def _empty_models_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nmodels_dir = "{tmp_path / "weights"}"\n')
    return config


# -- set-up ------------------------------------------------------------------------------------------

def test_no_extra_pins_torch_and_setup_keeps_the_torch_it_finds():
    """A Jetson's or a CUDA box's own torch must survive `pip install -e '.[test,tts]'`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extra, requirements in project["optional-dependencies"].items():
        pinned = [r for r in requirements if re.match(r"torch\b(?!\w|-|_)", r)]
        assert not pinned, f"the {extra} extra pins {pinned}: it would replace the torch a machine has"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    installs = [line for line in setup.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all('--constraint "$keep"' in line for line in installs)


# -- the server's log --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fresh_tiny_server(tmp_path_factory: pytest.TempPathFactory):
    """A tiny server's very first start: its tiny models do not exist yet."""
    root = tmp_path_factory.mktemp("first-start")
    server = ServerProcess(root / "data", args=["--tiny", "--models-dir", str(root / "models")]).start()
    server.wait_ready(timeout=600)
    yield server
    server.stop()


def test_first_tiny_start_says_what_is_ready_once_it_is(fresh_tiny_server):
    log = fresh_tiny_server.log().splitlines()
    preparing = next(i for i, line in enumerate(log) if "preparing tiny models" in line)
    wrote = [i for i, line in enumerate(log) if "wrote tiny" in line]
    ready = [i for i, line in enumerate(log) if re.search(r": \d+ endpoints ready: ", line)]
    assert len(ready) == 1 and preparing < min(wrote) and max(wrote) < ready[0]
    listed = httpx.get(f"{fresh_tiny_server.base_url}/endpoints").json()["endpoints"]
    count = int(re.search(r": (\d+) endpoints ready: ", log[ready[0]]).group(1))
    assert count == sum(row["available"] for row in listed) and count > 8


def test_log_has_one_format_no_bars_and_no_poll_lines(fresh_tiny_server):
    base = fresh_tiny_server.base_url
    for _ in range(3):
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ready").status_code == 200
    response = httpx.post(f"{base}/run/fal-ai/flux/schnell", timeout=120,
                          json={"prompt": "x", "image_size": {"width": 64, "height": 64}, "num_inference_steps": 1})
    assert response.status_code == 200, response.text
    assert httpx.get(f"{base}/info").status_code == 200
    log = fresh_tiny_server.log()
    assert '"POST /run/fal-ai/flux/schnell HTTP/1.1" 200' in log and '"GET /info HTTP/1.1" 200' in log
    assert "GET /health" not in log and "GET /ready" not in log
    raw = fresh_tiny_server.log_path.read_bytes()
    assert b"it/s]" not in raw and b"\r" not in raw and b"%|" not in raw  # tqdm's and the tokenizers' bars
    for line in log.splitlines():
        assert LOG_LINE.match(line), f"not in the log's format: {line!r}"


def test_start_log_says_a_missing_guardrail_is_required_and_missing(tmp_path):
    server = ServerProcess(tmp_path / "data", args=["--models-dir", str(tmp_path / "weights")]).start()
    try:
        server.wait_ready()
        note = httpx.get(f"{server.base_url}/info").json()["safety_checkers"]["cosmos"]
        log = server.log()
    finally:
        server.stop()
    assert note.startswith("required and MISSING") and "pip install 'thorgen[guardrail]'" in note
    assert "Cosmos safety guardrail: required and MISSING" in log
    assert "cosmos_guardrail checks every prompt" not in log
