"""`thorgen kit setup`: run as a command on generated stand-ins of the video-starter-kit's files.

The real kit cannot be downloaded in tests; its next.config.mjs (commit f72ddee) is an empty object
with a default export, which the first stand-in copies. The config setup writes is then loaded by Node
the way Next loads it (default export, called with a phase when it is a function) and its rewrites are
compared with what Next needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE = shutil.which("node")
THORGEN = "http://127.0.0.1:10123"
OURS = [{"source": "/api/fal", "destination": f"{THORGEN}/api/fal"},
        {"source": "/api/fal/:path*", "destination": f"{THORGEN}/api/fal/:path*"},
        {"source": "/api/uploadthing", "destination": f"{THORGEN}/api/uploadthing"}]
KIT_CONFIG = """/** @type {import('next').NextConfig} */
const nextConfig = {};

export default nextConfig;
"""
OTHER_CONFIG = """const nextConfig = {
  reactStrictMode: true,
  images: { remotePatterns: [{ protocol: "https", hostname: "fal.media" }] },
  async rewrites() {
    return [{ source: "/old", destination: "/new" }];
  },
};
export default nextConfig;
"""
PHASED_CONFIG = """export default (phase) => ({
  env: { PHASE: phase },
  rewrites: async () => ({ beforeFiles: [{ source: "/x", destination: "/y" }], fallback: [] }),
});
"""


def kit(tmp_path: Path, config: str | None, env: str | None = None, name: str = "next.config.mjs") -> Path:
    folder = tmp_path / "video-starter-kit"
    folder.mkdir()
    (folder / "package.json").write_text('{"name": "ai-video-starter-kit", "scripts": {"dev": "next dev"}}\n')
    if config is not None:
        (folder / name).write_text(config)
    if env is not None:
        (folder / ".env.local").write_text(env)
    return folder


def thorgen(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THORGEN_CONFIG": ""}
    return subprocess.run([sys.executable, "-m", "thorgen", "kit", "setup", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def loaded_config(folder: Path) -> dict:
    """The config as Next gets it: the default export, awaited, called with a phase if a function."""
    if NODE is None:
        pytest.skip("node is needed to load the written next.config.mjs")
    script = """
      import { pathToFileURL } from "node:url";
      const module = await import(pathToFileURL(process.argv[1]).href);
      const exported = module.default;
      const config = typeof exported === "function"
        ? await exported("phase-development-server", { defaultConfig: {} }) : exported;
      const rewrites = typeof config.rewrites === "function" ? await config.rewrites() : null;
      console.log(JSON.stringify({ ...config, rewrites }));
    """
    done = subprocess.run([NODE, "--input-type=module", "-e", script, str(folder / "next.config.mjs")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_kits_own_config_gets_the_rewrites_and_undo_restores_it(tmp_path: Path):
    folder = kit(tmp_path, KIT_CONFIG)
    before = snapshot(folder)
    done = thorgen(str(folder), "--url", THORGEN + "/")
    assert done.returncode == 0, done.stderr
    assert "npm install" in done.stdout and "npm run dev" in done.stdout
    assert "http://localhost:3000/app" in done.stdout
    assert loaded_config(folder) == {"rewrites": {"beforeFiles": OURS}}
    env = (folder / ".env.local").read_text()
    assert "FAL_KEY=thorgen-local" in env.splitlines() and "UPLOADTHING_TOKEN" not in env

    again = thorgen(str(folder), "--url", "http://127.0.0.1:9999")  # a second run only moves the URL
    assert again.returncode == 0, again.stderr
    assert loaded_config(folder)["rewrites"]["beforeFiles"][0]["destination"] == "http://127.0.0.1:9999/api/fal"

    undone = thorgen(str(folder), "--undo")
    assert undone.returncode == 0, undone.stderr
    assert snapshot(folder) == before


def test_no_config_at_all(tmp_path: Path):
    folder = kit(tmp_path, None)
    assert thorgen(str(folder), "--url", THORGEN).returncode == 0
    assert loaded_config(folder) == {"rewrites": {"beforeFiles": OURS}}
    assert thorgen(str(folder), "--undo").returncode == 0
    assert sorted(path.name for path in folder.iterdir()) == ["package.json"]


def test_other_config_is_kept_and_its_rewrites_run_after_ours(tmp_path: Path):
    folder = kit(tmp_path, OTHER_CONFIG, env='FAL_KEY=""\nKV_URL="kv"\n')
    before = snapshot(folder)
    assert thorgen(str(folder), "--url", THORGEN).returncode == 0
    config = loaded_config(folder)
    assert config["reactStrictMode"] is True and config["images"]["remotePatterns"][0]["hostname"] == "fal.media"
    assert config["rewrites"] == {"beforeFiles": OURS, "afterFiles": [{"source": "/old", "destination": "/new"}]}
    assert (folder / ".env.local").read_text().splitlines()[0] == 'KV_URL="kv"'  # empty FAL_KEY replaced
    assert "FAL_KEY=thorgen-local" in (folder / ".env.local").read_text()
    assert thorgen(str(folder), "--undo").returncode == 0
    assert snapshot(folder) == before


def test_a_function_config_with_phased_rewrites(tmp_path: Path):
    folder = kit(tmp_path, PHASED_CONFIG, env="FAL_KEY=real-key\n")
    assert thorgen(str(folder), "--url", THORGEN).returncode == 0
    config = loaded_config(folder)
    assert config["env"] == {"PHASE": "phase-development-server"}
    assert config["rewrites"] == {"beforeFiles": [*OURS, {"source": "/x", "destination": "/y"}], "fallback": []}
    assert (folder / ".env.local").read_text() == "FAL_KEY=real-key\n"  # a real key is left alone


@pytest.mark.parametrize(("name", "config", "says"), [
    ("next.config.js", "module.exports = { reactStrictMode: true };\n", "only a next.config.mjs"),
    ("next.config.mjs", 'export { config as unknown } from "./elsewhere.mjs";\n', "no `export default`"),
])
def test_a_config_that_cannot_be_merged_is_refused_untouched(tmp_path: Path, name: str, config: str, says: str):
    folder = kit(tmp_path, config, name=name)
    before = snapshot(folder)
    done = thorgen(str(folder), "--url", THORGEN)
    assert done.returncode == 1
    assert says in done.stderr and "/api/uploadthing" in done.stderr  # it says what to add by hand
    assert snapshot(folder) == before


def test_refusals_without_a_kit_or_a_setup(tmp_path: Path):
    done = thorgen(str(tmp_path), "--url", THORGEN)
    assert done.returncode == 1 and "no package.json" in done.stderr
    folder = kit(tmp_path, KIT_CONFIG)
    undone = thorgen(str(folder), "--undo")
    assert undone.returncode == 1 and "nothing to undo" in undone.stderr


HEADER = '''"use client";

import { Button } from "@/components/ui/button";
import { Logo } from "./logo";
import { SettingsIcon } from "lucide-react";

export default function Header() {
  return (
    <header className="px-4 py-2 flex justify-between items-center border-b border-border">
      <h1 className="text-lg font-medium">
        <Logo />
      </h1>
    </header>
  );
}
'''


def test_local_badge_patches_the_header_and_undo_takes_it_back(tmp_path: Path):
    folder = kit(tmp_path, KIT_CONFIG)
    (folder / "src" / "components").mkdir(parents=True)
    (folder / "src" / "components" / "header.tsx").write_text(HEADER)
    before = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    done = thorgen(str(folder), "--url", THORGEN, "--local-badge")
    assert done.returncode == 0, done.stderr
    header = (folder / "src" / "components" / "header.tsx").read_text()
    assert 'import { Logo } from "./logo";\nimport { ThorgenBadge } from "./thorgen-badge";\n' in header
    assert "        <Logo />\n        <ThorgenBadge />\n" in header
    badge = (folder / "src" / "components" / "thorgen-badge.tsx").read_text()
    assert 'fetch("/api/thorgen/info")' in badge and "Local · thorgen" in badge
    assert loaded_config(folder)["rewrites"]["beforeFiles"] == [
        *OURS, {"source": "/api/thorgen/info", "destination": f"{THORGEN}/info"}]
    assert thorgen(str(folder), "--url", THORGEN).returncode == 0  # a re-run keeps the badge, once
    assert (folder / "src" / "components" / "header.tsx").read_text() == header
    assert thorgen(str(folder), "--undo").returncode == 0
    after = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert after == before


def test_local_badge_refuses_a_header_it_does_not_know(tmp_path: Path):
    folder = kit(tmp_path, KIT_CONFIG)
    (folder / "src" / "components").mkdir(parents=True)
    (folder / "src" / "components" / "header.tsx").write_text("export default function Header() { return null; }\n")
    before = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    done = thorgen(str(folder), "--url", THORGEN, "--local-badge")
    assert done.returncode == 1 and "without --local-badge" in done.stderr
    assert {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
