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
- with ``--local-badge``: a "Local · thorgen" badge beside the logo in the editor's header. A new
  component reads thorgen's ``/info`` through one more rewrite (``/api/thorgen/info``, same-origin) and
  shows the badge only when thorgen answers; ``src/components/header.tsx`` gets two lines (an import and
  the element), and its original is kept in ``.thorgen-kit/`` for ``--undo``. A header that no longer
  has the lines the patch anchors on is refused, untouched.
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
INFO_PATH = "/api/thorgen/info"  # rewritten to thorgen's /info, only with the badge
HEADER = Path("src/components/header.tsx")
BADGE = Path("src/components/thorgen-badge.tsx")
BACKUP_DIR = ".thorgen-kit"
_HEADER_IMPORT = 'import { Logo } from "./logo";\n'
_HEADER_LOGO = "<Logo />\n"
BADGE_COMPONENT = """"use client";
// Written by `thorgen kit setup --local-badge`; `thorgen kit setup --undo` removes it.
import { useEffect, useState } from "react";

export function ThorgenBadge() {
  const [local, setLocal] = useState(false);
  useEffect(() => {
    fetch("/api/thorgen/info")
      .then((response) => (response.ok ? response.json() : null))
      .then((info) => setLocal(info?.server === "thorgen"))
      .catch(() => setLocal(false));
  }, []);
  if (!local) return null;
  return (
    <span className="ml-2 rounded-full border border-border px-2 py-0.5 text-xs text-muted-foreground">
      Local · thorgen
    </span>
  );
}
"""


class KitSetupError(Exception):
    """The kit folder is not one this command can change safely; the message says what to do instead."""


@dataclass(frozen=True)
class SetupResult:
    thorgen_url: str
    written: list[str]
    next_steps: list[str]
    editor_url: str


def setup(kit_dir: Path, thorgen_url: str, dev_url: str = "http://localhost:3000", *,
          local_badge: bool = False) -> SetupResult:
    """Write the rewrites and .env.local; safe to run again (it then only updates thorgen's URL)."""
    kit_dir = kit_dir.resolve()
    thorgen_url = thorgen_url.rstrip("/")
    if not re.fullmatch(r"https?://[^\s/\"'`$\\]+", thorgen_url):
        raise KitSetupError(f"--url must be http(s)://host[:port] with no path; got {thorgen_url!r}")
    if not (kit_dir / "package.json").is_file():
        raise KitSetupError(f"{kit_dir} has no package.json: give the folder of the video-starter-kit checkout")
    manifest = _read_manifest(kit_dir)
    badge = local_badge or bool(manifest and manifest["badge"])
    if badge and not (manifest and manifest["badge"]):
        _check_header(kit_dir)
    if manifest is None:
        _check_mergeable(kit_dir)
        manifest = {"config_existed": (kit_dir / CONFIG).exists(), "env_existed": (kit_dir / ENV).exists(),
                    "badge": False}
        if manifest["config_existed"]:
            shutil.move(kit_dir / CONFIG, kit_dir / ORIGINAL_CONFIG)
        if manifest["env_existed"]:
            shutil.copy2(kit_dir / ENV, kit_dir / ORIGINAL_ENV)
    written = [CONFIG, ENV]
    if badge and not manifest["badge"]:
        _patch_header(kit_dir)
        manifest["badge"] = True
    if manifest["badge"]:
        written += [str(HEADER), str(BADGE)]
    (kit_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (kit_dir / CONFIG).write_text(_wrapper(thorgen_url, wraps_original=bool(manifest["config_existed"]),
                                           info=bool(manifest["badge"])))
    original_env = (kit_dir / ORIGINAL_ENV).read_text() if manifest["env_existed"] else ""
    (kit_dir / ENV).write_text(_env(original_env))
    return SetupResult(thorgen_url, written, ["npm install", "npm run dev"], dev_url + EDITOR_PATH)


def undo(kit_dir: Path) -> list[str]:
    """Put back what setup replaced; returns the files restored or removed."""
    kit_dir = kit_dir.resolve()
    manifest = _read_manifest(kit_dir)
    if manifest is None:
        raise KitSetupError(f"{kit_dir} was not set up by `thorgen kit setup` (no {MANIFEST}); nothing to undo")
    changed = [_put_back(kit_dir, ORIGINAL_CONFIG, CONFIG, manifest["config_existed"]),
               _put_back(kit_dir, ORIGINAL_ENV, ENV, manifest["env_existed"])]
    if manifest["badge"]:
        shutil.move(kit_dir / BACKUP_DIR / HEADER.name, kit_dir / HEADER)
        (kit_dir / BADGE).unlink(missing_ok=True)
        (kit_dir / BACKUP_DIR).rmdir()
        changed.append(f"restored {HEADER}, removed {BADGE}")
    (kit_dir / MANIFEST).unlink()
    return changed


def _put_back(kit_dir: Path, original: str, written: str, existed: bool) -> str:
    """Restore the kit's own file that setup set aside, or remove the one setup wrote from nothing."""
    if existed:
        shutil.move(kit_dir / original, kit_dir / written)
        return f"restored {written}"
    (kit_dir / written).unlink(missing_ok=True)
    return f"removed {written}"


def _read_manifest(kit_dir: Path) -> dict[str, bool] | None:
    path = kit_dir / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    return {key: bool(manifest.get(key)) for key in ("config_existed", "env_existed", "badge")}


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


def _check_header(kit_dir: Path) -> None:
    header = kit_dir / HEADER
    text = header.read_text() if header.is_file() else ""
    if text.count(_HEADER_IMPORT) != 1 or text.count(_HEADER_LOGO) != 1 or (kit_dir / BADGE).exists():
        raise KitSetupError(f"{header} is not the kit's header this patch knows (one `{_HEADER_IMPORT.strip()}` "
                            f"and one `{_HEADER_LOGO.strip()}`), or {BADGE} exists; run setup without "
                            "--local-badge")


def _patch_header(kit_dir: Path) -> None:
    header = kit_dir / HEADER
    (kit_dir / BACKUP_DIR).mkdir(exist_ok=True)
    shutil.copy2(header, kit_dir / BACKUP_DIR / HEADER.name)
    text = header.read_text()
    indent = text[:text.index(_HEADER_LOGO)].rsplit("\n", 1)[-1]
    text = text.replace(_HEADER_IMPORT, _HEADER_IMPORT + 'import { ThorgenBadge } from "./thorgen-badge";\n')
    text = text.replace(_HEADER_LOGO, f"{_HEADER_LOGO}{indent}<ThorgenBadge />\n")
    header.write_text(text)
    (kit_dir / BADGE).write_text(BADGE_COMPONENT)


def _wrapper(thorgen_url: str, *, wraps_original: bool, info: bool = False) -> str:
    source = (f'import original from "./{ORIGINAL_CONFIG}";\n' if wraps_original
              else "const original = {};\n")
    rewrites = "\n".join(f'  {{ source: "{path}", destination: `${{THORGEN}}{path}` }},' for path in REWRITTEN_PATHS)
    if info:  # the header badge's same-origin read of thorgen's /info
        rewrites += f'\n  {{ source: "{INFO_PATH}", destination: `${{THORGEN}}/info` }},'

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
