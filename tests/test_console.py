"""thorgen's web console at ``/`` (issue 16): its routes over HTTP, then the page in headless Chromium.

The browser half runs tests/js/console.mjs (playwright-core driving Debian's `chromium`, never a
downloaded browser) against a real `serve --tiny`, and talks with it over stdio: when the page is
waiting for a job from another client, this side submits one through fal's Python client and
answers with its request id. Screenshots land in the pytest tmp dir (printed; see test_screenshots).
Skips, saying why, where node or chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import fal_client
import httpx
import pytest
from conftest import point_fal_client_at
from server_process import ServerProcess

ROOT = Path(__file__).parent.parent
CONSOLE = ROOT / "src" / "thorgen" / "console"
JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
KEY = "console-test-key-0123456789abcdef"
HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # a browser's navigation
BROWSER_TIMEOUT_S = 240  # under pytest-timeout's 300 s, so a hang fails with the page's report

needs_browser = [
    pytest.mark.skipif(NODE is None, reason="node is needed to drive the browser (tests/js, playwright-core)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary: install Debian's `chromium` package "
                                                "(scripts/setup.sh --test does as root), or set CHROMIUM"),
]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("console-keyed") / "data",
                            env={"THORGEN_SERVER__API_KEY": KEY},
                            args=["--tiny", "--models-dir", str(models_dir)]).start()
    process.wait_ready()
    yield process
    process.stop()


# -- the routes, over HTTP ------------------------------------------------------------------------------

def test_a_browser_gets_the_page_and_clients_keep_the_json_index(server: ServerProcess):
    page = httpx.get(f"{server.base_url}/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/app.js">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for accept in (None, "*/*", "application/json"):
        index = httpx.get(f"{server.base_url}/", headers={"accept": accept} if accept else {})
        assert index.headers["content-type"].startswith("application/json"), accept
        assert index.json()["server"] == "thorgen" and index.json()["console"] == "/"


def test_every_console_file_is_served_and_nothing_else(server: ServerProcess):
    for path in CONSOLE.iterdir():
        if path.suffix in (".js", ".css"):
            answer = httpx.get(f"{server.base_url}/console/{path.name}")
            assert answer.status_code == 200 and answer.content == path.read_bytes(), path.name
            assert answer.headers["content-type"].startswith("text/javascript" if path.suffix == ".js" else "text/css")
    for name in ("__init__.py", "index.html", "..%2F__init__.py", "missing.js"):
        assert httpx.get(f"{server.base_url}/console/{name}").status_code == 404, name


def test_a_non_editable_install_ships_the_console():
    """pyproject's package-data must name every asset, or a wheel serves a page without its scripts."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["thorgen"]
    for path in CONSOLE.iterdir():
        if path.suffix in (".html", ".js", ".css", ".svg"):
            assert any(fnmatch(f"console/{path.name}", pattern) for pattern in globs), path.name


def test_the_shell_and_assets_are_open_and_the_data_is_not(keyed: ServerProcess):
    assert httpx.get(f"{keyed.base_url}/", headers=HTML).status_code == 200
    assert httpx.get(f"{keyed.base_url}/console/app.js").status_code == 200
    assert httpx.get(f"{keyed.base_url}/").status_code == 401  # the JSON index stays behind the key
    assert httpx.get(f"{keyed.base_url}/console/api/jobs").status_code == 401
    answer = httpx.get(f"{keyed.base_url}/console/api/jobs", headers={"authorization": f"Key {KEY}"})
    assert answer.status_code == 200 and answer.json()["jobs"] == []


def test_the_jobs_api_lists_any_clients_jobs_without_their_inputs(server: ServerProcess):
    point_fal_client_at(server.base_url)
    client = fal_client.SyncClient(key="local-test-key", default_timeout=60)
    handle = client.submit("fal-ai/flux/schnell", arguments={"prompt": "a secret prompt", "num_inference_steps": 1})
    handle.get()
    jobs = httpx.get(f"{server.base_url}/console/api/jobs", params={"limit": 5}).json()["jobs"]
    job = next(row for row in jobs if row["id"] == handle.request_id)
    assert job["endpoint_id"] == "fal-ai/flux/schnell" and job["state"] == "COMPLETED" and job["error"] is None
    assert job["output"]["images"][0]["url"].startswith(server.base_url + "/files/")
    assert "input" not in job  # the list never reads inputs (the output may echo the prompt: flux does)
    assert len(jobs) <= 5 and [row["created_at"] for row in jobs] == sorted((r["created_at"] for r in jobs),
                                                                              reverse=True)


# -- the page, in headless Chromium ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture(scope="module")
def browser(server: ServerProcess, keyed: ServerProcess, shots: Path) -> dict[str, dict[str, Any]]:
    """Runs the whole page conversation once; each test below checks one of its steps."""
    for mark in needs_browser:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    if not (JS_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        pytest.fail(f"tests/js has no node_modules/playwright-core: run `npm ci` in {JS_DIR}")
    point_fal_client_at(server.base_url)
    client = fal_client.SyncClient(key="local-test-key", default_timeout=60)
    process = subprocess.Popen([NODE or "node", "console.mjs", server.base_url, keyed.base_url, KEY, str(shots)],
                               cwd=JS_DIR, env={**os.environ, "CHROMIUM": CHROMIUM or ""}, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(BROWSER_TIMEOUT_S, process.kill)  # a hung browser fails the steps, not the run
    watchdog.start()
    steps: dict[str, dict[str, Any]] = {}
    handles: dict[str, Any] = {}
    lines: list[str] = []
    try:
        assert process.stdout is not None and process.stdin is not None
        for line in process.stdout:
            lines.append(line)
            record = json.loads(line)
            if record["step"] == "waiting":
                if record["waiting"] == "python_job":
                    handle = client.submit("fal-ai/flux/schnell", arguments={"prompt": "from python"})
                else:  # "cancel": long enough that it cannot finish before the click (1000 steps)
                    handle = client.submit("fal-ai/stable-audio",
                                           arguments={"prompt": "long", "seconds_total": 1, "steps": 1000})
                handles[record["waiting"]] = handle
                process.stdin.write(json.dumps({"request_id": handle.request_id}) + "\n")
                process.stdin.flush()
            else:
                steps[record["step"]] = record
        process.wait(10)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
    report = "".join(lines)[-8000:] + (process.stderr.read()[-3000:] if process.stderr else "")
    steps["_report"] = {"text": report}
    steps["_handles"] = handles
    return steps


def step(steps: dict[str, Any], name: str) -> dict[str, Any]:
    record = steps.get(name)
    assert record is not None, steps["_report"]["text"]
    assert record["ok"], json.dumps(record, indent=1)[-6000:]
    return record


def test_the_page_loads_with_no_console_errors(browser):
    loaded = step(browser, "loaded")
    assert loaded["keyPromptHidden"]
    complaints = [m for m in loaded["messages"] if m["type"] in ("error", "warning", "pageerror")]
    assert complaints == [], loaded["messages"]
    # Later steps fetch a 422 and a cancelled job's 400 on purpose; nothing else may complain.
    messages = step(browser, "console_messages")["open"]
    unexpected = [m for m in messages if m["type"] in ("error", "pageerror")
                  and not m["text"].startswith("Failed to load resource: the server responded with a status of 4")]
    assert unexpected == [], messages


def test_the_models_and_memory_match_info(browser, server: ServerProcess):
    loaded = step(browser, "loaded")
    info = httpx.get(f"{server.base_url}/info").json()
    assert [row["name"] for row in loaded["models"]] == [model["name"] for model in info["models"]]
    for row, model in zip(loaded["models"], info["models"], strict=True):
        assert ("installed" in row["installed"]) == model["installed"]
    assert loaded["memory"]["budget"] == info["runtime"]["budget_bytes"]  # fixed at start
    assert loaded["memory"]["held"] <= info["runtime"]["peak_held_bytes"]  # held then, at most the peak since
    assert info["runtime"]["budget"] in loaded["budgetHow"]
    assert loaded["badge"].startswith(f"Local · thorgen · v{info['version']}") and "torch" in loaded["badge"]
    listed = [row["id"] for row in httpx.get(f"{server.base_url}/endpoints").json()["endpoints"]]
    assert loaded["endpoints"] == listed


def test_a_flux_schnell_form_shows_progress_and_the_image(browser):
    flux = step(browser, "flux")
    assert flux["image"]["naturalWidth"] > 0 and flux["image"]["naturalHeight"] > 0
    assert flux["progressShown"] and flux["bar"]["value"] == flux["bar"]["max"]
    assert flux["statuses"][0].startswith("queued") and flux["statuses"][-1] == "done", flux["statuses"]
    # The status with logs=1 carries every step line, the last one too, so a step is always shown.
    assert any(re.fullmatch(r"denoising step \d+/4", status) for status in flux["statuses"]), flux["statuses"]


def test_a_422_is_shown_next_to_its_field(browser):
    bad = step(browser, "bad_field")
    assert bad["sameField"] == "image_size" and bad["invalid"] == "true"
    assert "Unknown image_size preset 'bogus'" in bad["message"]


def test_a_file_field_uploads_through_thorgens_storage(browser, server: ServerProcess):
    uploaded = step(browser, "upload")
    assert uploaded["url"].startswith(f"{server.base_url}/files/")
    assert uploaded["output"]["media"]["media_type"] == "audio"
    assert uploaded["output"]["media"]["duration"] == pytest.approx(0.5, abs=0.05)
    assert uploaded["player"] == uploaded["output"]["media"]["url"]


def test_a_job_from_fals_python_client_appears_within_3_s(browser):
    seen = step(browser, "python_job")
    assert seen["request_id"] == browser["_handles"]["python_job"].request_id
    assert "fal-ai/flux/schnell" in seen["text"]


def test_cancel_from_the_page_cancels(browser):
    cancelled = step(browser, "cancel")
    handle = browser["_handles"]["cancel"]
    assert cancelled["request_id"] == handle.request_id
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        handle.get()
    assert caught.value.status_code == 400


def test_screenshots(browser, shots: Path):
    written = step(browser, "screenshots")["written"]
    assert sorted(Path(path).name for path in written) == sorted(
        f"console-{size}-{scheme}.png" for size in ("desktop", "narrow") for scheme in ("light", "dark"))
    assert all(Path(path).stat().st_size > 10_000 for path in written)
    print(f"console screenshots in {shots}")


def test_with_a_key_only_the_prompt_shows_until_it_is_given(browser, keyed: ServerProcess):
    prompt = step(browser, "keyed_prompt")
    assert prompt["promptVisible"] and prompt["mainHidden"] and prompt["models"] == 0
    answered = [r for r in prompt["responses"] if "status" in r]
    # Nothing but the shell and its assets was served; every data request was refused.
    assert all(r["status"] == 401 for r in answered if "/console/" not in r["url"] and r["url"] != f"{keyed.base_url}/")
    assert any(r["url"] == f"{keyed.base_url}/info" and r["status"] == 401 for r in answered)
    works = step(browser, "keyed_works")
    assert works["mainVisible"] and works["promptHidden"] and works["models"] > 0
    assert works["stored"] == {"session": 1, "local": 0}  # sessionStorage, gone with the tab
    sent = [r for r in works["responses"] if "sent_key" in r]
    assert sent and all(r["sent_key"] for r in sent)
    assert all(r["status"] == 200 for r in works["responses"] if "status" in r and "/info" in r["url"])
