"""`thorgen kit setup KIT_DIR`: point a checkout of fal's video-starter-kit at this thorgen, and undo it.

What it writes (and ``--undo`` takes back, from the manifest it leaves in KIT_DIR):

- ``next.config.mjs``: Next's ``beforeFiles`` rewrites of ``/api/fal``, ``/api/fal/:path*`` and
  ``/api/uploadthing`` to thorgen, so the kit's fal proxy route and UploadThing route are never run and
  its browser code talks, same-origin, to thorgen. The kit's own config is kept whole: it is moved to
  ``next.config.thorgen-original.mjs`` and the new file imports it and adds the rewrites to whatever it
  returns (an object or a function; rewrites as an array or as phases). Only an ESM config with a default
  export can be wrapped that way; anything else (``next.config.js``/``.cjs``/``.ts``, several configs, no
  default export) is refused with a message that says what to add by hand.
- ``.env.local``: ``FAL_KEY`` (a placeholder: the rewrite bypasses the proxy route that would read it).
  No ``UPLOADTHING_TOKEN``: only the kit's ``/api/uploadthing`` route handler reads it, and the rewrite
  means it never runs. An existing ``.env.local`` is kept, set aside, and restored by ``--undo``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

CONFIG = "next.config.mjs"
ORIGINAL_CONFIG = "next.config.thorgen-original.mjs"
ENV = ".env.local"
ORIGINAL_ENV = ".env.local.thorgen-original"
MANIFEST = ".thorgen-kit.json"
MARKER = "// Written by `thorgen kit setup`"
OTHER_CONFIGS = ("next.config.js", "next.config.cjs", "next.config.ts", "next.config.mts")
EDITOR_PATH = "/app"
_DEFAULT_EXPORT = re.compile(r"^\s*export\s+default\b|^\s*export\s*\{[^}]*\bas\s+default\b", re.MULTILINE)
REWRITTEN_PATHS = ("/api/fal", "/api/fal/:path*", "/api/uploadthing")


class KitSetupError(Exception):
    """The kit folder is not one this command can change safely; the message says what to do instead."""


@dataclass(frozen=True)
class SetupResult:
    thorgen_url: str
    written: list[str]
    next_steps: list[str]
    editor_url: str


def setup(kit_dir: Path, thorgen_url: str, dev_url: str = "http://localhost:3000") -> SetupResult:
    """Write the rewrites and .env.local; safe to run again (it then only updates thorgen's URL)."""
    kit_dir = kit_dir.resolve()
    thorgen_url = thorgen_url.rstrip("/")
    if not re.fullmatch(r"https?://[^\s/\"'`$\\]+", thorgen_url):
        raise KitSetupError(f"--url must be http(s)://host[:port] with no path; got {thorgen_url!r}")
    if not (kit_dir / "package.json").is_file():
        raise KitSetupError(f"{kit_dir} has no package.json: give the folder of the video-starter-kit checkout")
    manifest = _read_manifest(kit_dir)
    if manifest is None:
        _check_mergeable(kit_dir)
        manifest = {"config_existed": (kit_dir / CONFIG).exists(), "env_existed": (kit_dir / ENV).exists()}
        if manifest["config_existed"]:
            shutil.move(kit_dir / CONFIG, kit_dir / ORIGINAL_CONFIG)
        if manifest["env_existed"]:
            shutil.copy2(kit_dir / ENV, kit_dir / ORIGINAL_ENV)
        (kit_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (kit_dir / CONFIG).write_text(_wrapper(thorgen_url, wraps_original=bool(manifest["config_existed"])))
    original_env = (kit_dir / ORIGINAL_ENV).read_text() if manifest["env_existed"] else ""
    (kit_dir / ENV).write_text(_env(original_env))
    return SetupResult(thorgen_url, [CONFIG, ENV], ["npm install", "npm run dev"], dev_url + EDITOR_PATH)


def undo(kit_dir: Path) -> list[str]:
    """Put back what setup replaced; returns the files restored or removed."""
    kit_dir = kit_dir.resolve()
    manifest = _read_manifest(kit_dir)
    if manifest is None:
        raise KitSetupError(f"{kit_dir} was not set up by `thorgen kit setup` (no {MANIFEST}); nothing to undo")
    changed = []
    if manifest["config_existed"]:
        shutil.move(kit_dir / ORIGINAL_CONFIG, kit_dir / CONFIG)
        changed.append(f"restored {CONFIG}")
    else:
        (kit_dir / CONFIG).unlink(missing_ok=True)
        changed.append(f"removed {CONFIG}")
    if manifest["env_existed"]:
        shutil.move(kit_dir / ORIGINAL_ENV, kit_dir / ENV)
        changed.append(f"restored {ENV}")
    else:
        (kit_dir / ENV).unlink(missing_ok=True)
        changed.append(f"removed {ENV}")
    (kit_dir / MANIFEST).unlink()
    return changed


def _read_manifest(kit_dir: Path) -> dict[str, bool] | None:
    path = kit_dir / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    return {"config_existed": bool(manifest.get("config_existed")), "env_existed": bool(manifest.get("env_existed"))}


def _check_mergeable(kit_dir: Path) -> None:
    others = [name for name in OTHER_CONFIGS if (kit_dir / name).exists()]
    how = ("add to its rewrites, in beforeFiles: "
           + ", ".join(f"{{source: {path!r}, destination: '<thorgen>{path}'}}" for path in REWRITTEN_PATHS))
    if others:
        raise KitSetupError(f"{kit_dir} has {', '.join(others)}; only a next.config.mjs can be merged "
                            f"automatically. Edit that config by hand instead: {how}")
    config = kit_dir / CONFIG
    if config.exists():
        text = config.read_text()
        if MARKER in text:
            raise KitSetupError(f"{config} was written by `thorgen kit setup` but {MANIFEST} is missing; "
                                f"restore the kit's own config (git checkout {CONFIG}) and run setup again")
        if not _DEFAULT_EXPORT.search(text):
            raise KitSetupError(f"{config} has no `export default`, so its config cannot be wrapped; "
                                f"edit it by hand instead: {how}")
    if (kit_dir / ORIGINAL_CONFIG).exists() or (kit_dir / ORIGINAL_ENV).exists():
        raise KitSetupError(f"{kit_dir} holds {ORIGINAL_CONFIG} or {ORIGINAL_ENV} from an earlier setup but no "
                            f"{MANIFEST}; put them back by hand before running setup again")


def _wrapper(thorgen_url: str, *, wraps_original: bool) -> str:
    source = (f'import original from "./{ORIGINAL_CONFIG}";\n' if wraps_original
              else "const original = {};\n")
    rewrites = "\n".join(f'  {{ source: "{path}", destination: `${{THORGEN}}{path}` }},' for path in REWRITTEN_PATHS)
    return f"""{MARKER}: the kit's fal and UploadThing calls go to thorgen.
// `thorgen kit setup --undo` puts the kit's own config back ({ORIGINAL_CONFIG} holds it meanwhile).
{source}
const THORGEN = "{thorgen_url}";

// beforeFiles: these win over the kit's own /api/fal and /api/uploadthing route files.
const thorgenRewrites = [
{rewrites}
];

function withThorgen(rewrites) {{
  if (rewrites === undefined) return {{ beforeFiles: thorgenRewrites }};
  if (Array.isArray(rewrites)) return {{ beforeFiles: thorgenRewrites, afterFiles: rewrites }};
  return {{ ...rewrites, beforeFiles: [...thorgenRewrites, ...(rewrites.beforeFiles ?? [])] }};
}}

export default async function config(phase, context) {{
  const base = typeof original === "function" ? await original(phase, context) : original;
  return {{
    ...base,
    async rewrites() {{
      return withThorgen(typeof base.rewrites === "function" ? await base.rewrites() : undefined);
    }},
  }};
}}
"""


def _env(original: str) -> str:
    """The kit's .env.local: its own lines, with FAL_KEY set to a placeholder unless it has a real one."""
    lines = original.splitlines()
    has_key = any(re.match(r"\s*FAL_KEY\s*=\s*\S", line) and not re.match(r'\s*FAL_KEY\s*=\s*""', line)
                  for line in lines)
    kept = lines if has_key else [line for line in lines if not re.match(r"\s*FAL_KEY\s*=", line)]
    added = [] if has_key else [
        "# Written by `thorgen kit setup`: /api/fal is rewritten to thorgen, so no fal key is needed;",
        "# the kit's fal proxy (bypassed) only wants a non-empty value.",
        "FAL_KEY=thorgen-local",
    ]
    return "\n".join([*kept, *added]) + "\n"
