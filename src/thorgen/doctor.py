"""`thorgen doctor`: why thorgen will or will not work on this machine, one verdict per line.

Verdicts: ok, warn (works, but not as well as it could), FAIL (something that blocks), info. The
command exits 1 when any line is FAIL, else 0. Nothing here changes the machine.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable

from thorgen.config import Config
from thorgen.families.base import Finding

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"
GIB = 1024**3
MIN_DATA_FREE = 5 * GIB
MIN_MODELS_FREE = 40 * GIB  # one Flux is ~34 GB; less than this cannot take a new model


__all__ = ["FAIL", "INFO", "OK", "WARN", "Finding", "exit_code", "render", "run_checks"]


def run_checks(config: Config) -> list[Finding]:
    findings: list[Finding] = [Finding("config", OK, "valid (see `thorgen config` for the values)")]
    checks: list[Callable[[Config], list[Finding]]] = [
        _python, _torch_and_memory, _codecs, _disk, _models, _families, _port,
    ]
    for check in checks:
        try:
            findings += check(config)
        except Exception as exc:  # a broken check is itself worth a line, not a traceback
            findings.append(Finding(check.__name__.strip("_"), FAIL, f"the check crashed: {exc!r}"))
    return findings


def _python(config: Config) -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    verdict = OK if sys.version_info >= (3, 11) else FAIL
    return [Finding("python", verdict, f"{version} at {sys.executable}")]


def _torch_and_memory(config: Config) -> list[Finding]:
    try:
        import torch
    except ImportError:
        return [Finding("torch", FAIL, "not installed: no model can run (scripts/setup.sh installs it)")]
    from thorgen.models.memory import compute_budget, device_info

    info = device_info()
    rows = []
    if info.kind == "cuda":
        rows.append(Finding("torch", OK, f"{torch.__version__}, CUDA {torch.version.cuda}"))
        memory = "unified (CPU and GPU share system memory)" if info.unified else "discrete GPU memory"
        rows.append(Finding("gpu", OK, f"{info.name}; {memory}"))
    else:
        build = "CUDA build" if torch.version.cuda else "CPU build"
        rows.append(Finding("torch", OK, f"{torch.__version__} ({build})"))
        rows.append(Finding("gpu", WARN, "torch sees no CUDA GPU: models run on the CPU, which is only "
                            "practical for `serve --tiny`"))
    runtime = config.runtime
    budget = compute_budget(runtime.budget_bytes, runtime.budget_fraction, info)
    rows.append(Finding("memory budget", OK, f"{budget.bytes / GIB:.1f} GiB = {budget.how}"))
    return rows


def _codecs(config: Config) -> list[Finding]:
    import av

    wanted = {"libx264": "H.264 video (MP4 exports, Cosmos clips)", "aac": "AAC audio in MP4",
              "libmp3lame": "MP3 audio"}
    rows = []
    for codec, use in wanted.items():
        try:
            av.codec.Codec(codec, "w")
            rows.append(Finding(f"codec {codec}", OK, f"PyAV {av.__version__} can encode {use}"))
        except Exception:
            rows.append(Finding(f"codec {codec}", FAIL, f"PyAV {av.__version__} cannot encode {use}"))
    return rows


def _disk(config: Config) -> list[Finding]:
    rows = []
    for label, path, least in (("disk: data", config.data_dir, MIN_DATA_FREE),
                               ("disk: models", config.models_root, MIN_MODELS_FREE)):
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        if free < GIB:
            verdict = FAIL
        elif free < least:
            verdict = WARN
        else:
            verdict = OK
        rows.append(Finding(label, verdict, f"{free / GIB:.1f} GiB free at {path}"
                            + ("" if verdict == OK else f" (want at least {least / GIB:.0f} GiB)")))
    return rows


def _models(config: Config) -> list[Finding]:
    from thorgen.models.installed import all_model_status

    rows = []
    for status in all_model_status(config):
        if status.installed:
            rows.append(Finding(f"model {status.name}", OK, f"installed at {status.path}"))
        else:
            rows.append(Finding(f"model {status.name}", WARN, f"not installed; get it with: {status.install_hint}"))
    if config.runtime.tiny:
        rows.append(Finding("tiny mode", WARN, "runtime.tiny is on: random-weight models, outputs are noise"))
    return rows


def _families(config: Config) -> list[Finding]:
    """Each family's own lines (its optional extra, its guardrail): see Family.doctor."""
    from thorgen.families import FAMILIES

    return [finding for family in FAMILIES if family.doctor is not None for finding in family.doctor(config)]


def _port(config: Config) -> list[Finding]:
    host, port = config.server.host, config.server.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return [Finding("port", OK, f"{host}:{port} is free")]
        except OSError as exc:
            taken = exc
    if _thorgen_answers(host, port):
        return [Finding("port", OK, f"{host}:{port} is taken by a running thorgen (it answers /health)")]
    return [Finding("port", FAIL, f"cannot listen on {host}:{port}: {taken.strerror}; free it or set "
                    "server.port / --port")]


def _thorgen_answers(host: str, port: int) -> bool:
    import httpx

    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        return httpx.get(f"http://{target}:{port}/info", timeout=2).json().get("server") == "thorgen"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = [f"{'check':{width}}  {'verdict':7}  detail", f"{'-' * width}  {'-' * 7}  {'-' * 40}"]
    lines += [f"{f.check:{width}}  {f.verdict:7}  {f.detail}" for f in findings]
    failed = [f.check for f in findings if f.verdict == FAIL]
    lines.append("")
    lines.append(f"verdict: blocked by {', '.join(failed)}" if failed else "verdict: thorgen can run here")
    return "\n".join(lines)


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.verdict == FAIL for f in findings) else 0
