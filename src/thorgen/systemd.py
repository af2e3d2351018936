"""`thorgen service install | uninstall`: run thorgen at boot as a hardened systemd service.

The unit runs `thorgen serve` from this installation as a dedicated user, reads settings and secrets
(API key, HF token) from an environment file, restarts on failure, starts after the network and the
NVIDIA driver, and may write only to the data and models folders.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from thorgen.config import Config

UNIT_NAME = "thorgen.service"
DEVICE_GROUPS = ("video", "render")  # own /dev/nvidia* and /dev/nvhost* on JetPack, where they exist
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ENV_FILE = Path("/etc/thorgen/thorgen.env")

ENV_TEMPLATE = """\
# Settings and secrets for the thorgen service (read by systemd; mode 600, owned by root).
# Any config key can be set as THORGEN_SECTION__KEY, e.g.:
# THORGEN_SERVER__HOST=0.0.0.0
# THORGEN_SERVER__PUBLIC_URL=http://thor.local:10000
# THORGEN_SERVER__API_KEY=change-me
# Only `thorgen models pull` needs a Hugging Face token; the service itself never downloads.
# HF_TOKEN=hf_...
"""


@dataclass(frozen=True)
class ServicePlan:
    user: str
    working_dir: Path
    config_path: Path | None
    executable: Path
    data_dir: Path
    models_dir: Path
    env_file: Path
    groups: tuple[str, ...]


def plan(config: Config, config_path: Path | None, user: str, env_file: Path) -> ServicePlan:
    executable = Path(sys.executable).parent / "thorgen"
    return ServicePlan(
        user=user,
        working_dir=(config_path.parent if config_path else Path.cwd()).resolve(),
        config_path=config_path.resolve() if config_path else None,
        executable=executable if executable.exists() else Path(shutil.which("thorgen") or executable),
        data_dir=config.data_dir,
        models_dir=config.models_root,
        env_file=env_file,
        groups=tuple(g for g in DEVICE_GROUPS if _group_exists(g)),
    )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def render_unit(p: ServicePlan) -> str:
    config_flag = f" --config {p.config_path}" if p.config_path else ""
    groups = (f"# The GPU's device nodes belong to these groups on JetPack.\nSupplementaryGroups={' '.join(p.groups)}\n"
              if p.groups else "")
    from thorgen.families import FAMILIES

    families = ", ".join(family.title for family in FAMILIES if family.title)
    return f"""\
[Unit]
Description=thorgen: local fal.ai-compatible media server ({families})
# After the network (clients reach port 10000) and the NVIDIA driver's persistence daemon, when the
# system has one; After= on a unit that does not exist is ignored.
Wants=network-online.target
After=network-online.target nvidia-persistenced.service

[Service]
Type=exec
User={p.user}
Group={p.user}
{groups}WorkingDirectory={p.working_dir}
EnvironmentFile=-{p.env_file}
# Weights come only from `thorgen models pull`, run by hand; the service never reaches a hub.
Environment=HF_HUB_OFFLINE=1
ExecStart={p.executable}{config_flag} serve --data-dir {p.data_dir} --models-dir {p.models_dir}
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={p.data_dir} {p.models_dir}
PrivateTmp=yes
ProtectControlGroups=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def install(p: ServicePlan, unit_dir: Path, *, system: bool = True) -> list[str]:
    """Write the unit and (with ``system``) create the user, the env file and enable the service."""
    done = []
    if system:
        _ensure_user(p.user, p.data_dir, p.groups)
        done.append(f"user {p.user}")
        for folder in (p.data_dir, p.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, p.user, p.user)
    if not p.env_file.exists():
        p.env_file.parent.mkdir(parents=True, exist_ok=True)
        p.env_file.write_text(ENV_TEMPLATE)
        p.env_file.chmod(0o600)
        done.append(f"environment file {p.env_file}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / UNIT_NAME).write_text(render_unit(p))
    done.append(f"unit {unit_dir / UNIT_NAME}")
    if system:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", UNIT_NAME], check=True)
        done.append("enabled at boot")
    return done


def uninstall(unit_dir: Path, *, system: bool = True) -> list[str]:
    """Stop, disable and remove the unit. The user, data, models and env file are left in place."""
    done = []
    unit = unit_dir / UNIT_NAME
    if system and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", UNIT_NAME], check=False)
    if unit.exists():
        unit.unlink()
        done.append(f"removed {unit}")
    if system and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return done


def _ensure_user(user: str, home: Path, groups: tuple[str, ...]) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise PermissionError(f"creating the user {user!r} needs root: run with sudo, or --dry-run")
    extra = ["--groups", ",".join(groups)] if groups else []
    subprocess.run(["useradd", "--system", "--home-dir", str(home), "--no-create-home",
                    "--shell", "/usr/sbin/nologin", *extra, user], check=True)
