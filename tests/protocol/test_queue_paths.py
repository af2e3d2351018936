"""Queue paths the clients rely on, made deterministic with a gate: a loopback file server whose
answers the test releases. A metadata job whose ``media_url`` points at the gate holds the server's
one utility worker until the test says so, so "running", "queued behind it" and "in which order"
are facts the test controls, never a matter of timing.

The gate is reached through ``limits.fetch_allowed_hosts`` (file inputs on loopback are otherwise
refused before connecting).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from mediagen import make_audio
from server_process import ServerProcess
from wire_helpers import wait_state

METADATA = "fal-ai/ffmpeg-api/metadata"
REQUESTS = "/queue/fal-ai/ffmpeg-api/requests"
WAIT_S = 60  # a deadline for things that happen at once; reaching it is a failure, not a pause


class Gate:
    """Serves one audio file at any path, each path only once the test has released it."""

    def __init__(self, body: bytes):
        self.body = body
        self.arrived: list[str] = []  # request paths, in the order they came
        self._released: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with gate._cond:
                    gate.arrived.append(self.path)
                    gate._cond.notify_all()
                if not gate._event(self.path).wait(WAIT_S * 2):
                    self.send_error(504)
                    return
                try:
                    self.send_response(200)
                    self.send_header("content-type", "audio/wav")
                    self.send_header("content-length", str(len(gate.body)))
                    self.end_headers()
                    self.wfile.write(gate.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server that asked was killed on purpose

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://{self.host}/{name}.wav"

    def _event(self, path: str) -> threading.Event:
        with self._cond:
            return self._released.setdefault(path, threading.Event())

    def release(self, name: str) -> None:
        self._event(f"/{name}.wav").set()

    def wait_arrival(self, name: str) -> None:
        """Until a job has asked for ``name`` (so it is running and holds its worker)."""
        with self._cond:
            assert self._cond.wait_for(lambda: f"/{name}.wav" in self.arrived, WAIT_S), \
                f"no job fetched {name} within {WAIT_S} s; arrived: {self.arrived}"

    def order(self, *names: str) -> list[str]:
        wanted = {f"/{name}.wav" for name in names}
        return [path[1:-4] for path in self.arrived if path in wanted]

    def close(self) -> None:
        with self._cond:
            for event in self._released.values():
                event.set()
        self.server.shutdown()


class Hook:
    """A webhook receiver that answers each POST with the next status of ``answers``."""

    def __init__(self) -> None:
        self.answers: list[int] = [200]
        self.received: list[tuple[float, dict]] = []
        self._cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with hook._cond:
                    hook.received.append((time.monotonic(), body))
                    answer = hook.answers[min(len(hook.received), len(hook.answers)) - 1]
                    hook._cond.notify_all()
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_port}"
        self.url = f"http://{self.host}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, answers: list[int]) -> None:
        with self._cond:
            self.answers, self.received = answers, []

    def wait_for(self, count: int) -> list[tuple[float, dict]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, WAIT_S), self.received
            return list(self.received)


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    opened = Hook()
    yield opened
    opened.server.shutdown()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    audio = make_audio(tmp_path_factory.mktemp("gate") / "tone.wav", seconds=0.5)
    opened = Gate(audio.read_bytes())
    yield opened
    opened.close()


def gated_config(path: Path, gate: Gate, hook: Hook, extra: str = "") -> Path:
    """One utility worker (one held job holds the lane); the gate and the webhook receiver allowed
    as loopback hosts thorgen may reach."""
    path.write_text(f'[lanes]\nutility_workers = 1\n[limits]\nfetch_allowed_hosts = ["{gate.host}", "{hook.host}"]\n'
                    f"fetch_timeout_s = {WAIT_S * 3}\nsync_run_timeout_s = 1\n{extra}")
    return path


@pytest.fixture(scope="module")
def gated(gate: Gate, hook: Hook, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("gated")
    process = ServerProcess(root / "data", config=gated_config(root / "config.toml", gate, hook)).start()
    yield process
    process.stop()


def submit(server: ServerProcess, gate: Gate, name: str, priority: str | None = None,
           endpoint: str = METADATA) -> dict:
    headers = {"x-fal-queue-priority": priority} if priority else {}
    response = httpx.post(f"{server.base_url}/queue/{endpoint}", json={"media_url": gate.url(name)},
                          headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def status(server: ServerProcess, request_id: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{REQUESTS}/{request_id}/status", params=params)


def test_result_before_it_is_finished_is_a_400_and_head_answers_status_and_result(gated, gate):
    held = submit(gated, gate, "result-early")
    gate.wait_arrival("result-early")
    early = httpx.get(held["response_url"])
    assert early.status_code == 400 and early.json()["error_type"] == "request_in_progress", early.text
    head_status = httpx.head(held["status_url"])
    assert head_status.status_code == 202 and head_status.content == b""
    assert head_status.headers["x-fal-request-id"] == held["request_id"]
    assert httpx.head(held["response_url"]).status_code == 400

    gate.release("result-early")
    wait_state(gated.base_url, held["request_id"], "COMPLETED")
    head_status = httpx.head(held["status_url"])
    head_result = httpx.head(held["response_url"])
    assert head_status.status_code == 200 and head_result.status_code == 200
    assert head_result.content == b"" and head_result.headers["content-type"].startswith("application/json")
    assert int(head_result.headers["content-length"]) == len(httpx.get(held["response_url"]).content)


def test_queue_positions_count_the_jobs_ahead(gated, gate):
    running = submit(gated, gate, "pos-running")
    gate.wait_arrival("pos-running")
    first, second = submit(gated, gate, "pos-first"), submit(gated, gate, "pos-second")
    assert (first["queue_position"], second["queue_position"]) == (0, 1)
    assert status(gated, second["request_id"]).json()["queue_position"] == 1
    assert status(gated, second["request_id"]).json()["status"] == "IN_QUEUE"
    assert status(gated, running["request_id"]).json()["queue_position"] == 0
    for name in ("pos-running", "pos-first", "pos-second"):
        gate.release(name)
    for job in (running, first, second):
        wait_state(gated.base_url, job["request_id"], "COMPLETED")
    assert gate.order("pos-first", "pos-second") == ["pos-first", "pos-second"]


def test_low_priority_waits_behind_normal_submitted_after_it(gated, gate):
    running = submit(gated, gate, "prio-running")
    gate.wait_arrival("prio-running")
    low = submit(gated, gate, "prio-low", priority="low")
    normal = submit(gated, gate, "prio-normal", priority="normal")
    assert status(gated, normal["request_id"]).json()["queue_position"] == 0
    assert status(gated, low["request_id"]).json()["queue_position"] == 1
    for name in ("prio-low", "prio-normal", "prio-running"):
        gate.release(name)
    for job in (running, low, normal):
        assert "error" not in wait_state(gated.base_url, job["request_id"], "COMPLETED")
    assert gate.order("prio-low", "prio-normal") == ["prio-normal", "prio-low"]


def test_cancel_of_a_job_that_never_started(gated, gate):
    running = submit(gated, gate, "never-running")
    gate.wait_arrival("never-running")
    queued = submit(gated, gate, "never-queued")
    cancel = httpx.put(f"{gated.base_url}{REQUESTS}/{queued['request_id']}/cancel")
    assert cancel.status_code == 202 and cancel.json()["status"] == "CANCELLATION_REQUESTED"
    # Ended at once, while the lane is still held: it was taken out of the queue, not stopped later.
    body = status(gated, queued["request_id"], logs="1").json()
    assert body["status"] == "COMPLETED" and body["error_type"] == "request_cancelled", body
    assert not any(entry["message"].startswith("running ") for entry in body["logs"]), body["logs"]
    result = httpx.get(queued["response_url"])
    assert result.status_code == 400 and result.json()["error_type"] == "request_cancelled"
    gate.release("never-running")
    wait_state(gated.base_url, running["request_id"], "COMPLETED")
    assert "/never-queued.wav" not in gate.arrived  # it never ran, so never fetched its input


def test_sync_run_timeout_answers_504_and_cancels_the_job(gated, gate):
    """sync_run_timeout_s is 1 here; the run waits behind a held job, so it cannot finish in time."""
    running = submit(gated, gate, "timeout-running")
    gate.wait_arrival("timeout-running")
    response = httpx.post(f"{gated.base_url}/run/{METADATA}", json={"media_url": gate.url("timeout-run")},
                          timeout=WAIT_S)
    assert response.status_code == 504, response.text
    assert response.json()["error_type"] == "request_timeout" and "cancelled" in response.json()["detail"]
    # The 504 names no request id, so the cancel shows in what runs next: a job queued after the
    # timed-out one runs, and the timed-out one, ahead of it in the queue, never did.
    after = submit(gated, gate, "timeout-after")
    for name in ("timeout-run", "timeout-after", "timeout-running"):
        gate.release(name)
    for job in (running, after):
        assert "error" not in wait_state(gated.base_url, job["request_id"], "COMPLETED")
    assert "/timeout-run.wav" not in gate.arrived, gate.arrived


def test_inference_time_is_the_time_the_job_ran(gated, gate):
    """Bounded both ways: at least the time the test held the running job, at most submit to done."""
    submitted_at = time.monotonic()
    job = submit(gated, gate, "timed")
    gate.wait_arrival("timed")
    arrived_at = time.monotonic()  # the job had started before its fetch reached the gate
    assert status(gated, job["request_id"]).json()["status"] == "IN_PROGRESS"
    released_at = time.monotonic()
    gate.release("timed")
    body = wait_state(gated.base_url, job["request_id"], "COMPLETED")
    done_at = time.monotonic()
    assert released_at - arrived_at <= body["metrics"]["inference_time"] <= done_at - submitted_at, \
        (body["metrics"], released_at - arrived_at, done_at - submitted_at)


def test_webhook_error_body_retries_after_5xx_with_back_off(gated, hook, tmp_path):
    hook.reset([500, 503, 200])
    not_media = tmp_path / "notes.txt"
    not_media.write_bytes(b"this is not audio")
    initiate = httpx.post(f"{gated.base_url}/rest/storage/upload/initiate",
                          json={"content_type": "text/plain", "file_name": "notes.txt"}).json()
    assert httpx.put(initiate["upload_url"], content=not_media.read_bytes()).status_code == 200
    job = httpx.post(f"{gated.base_url}/queue/{METADATA}", params={"fal_webhook": hook.url},
                     json={"media_url": initiate["file_url"]}).json()
    posts = hook.wait_for(3)
    result = httpx.get(job["response_url"])
    assert result.status_code >= 400
    bodies = [body for _, body in posts]
    assert bodies[0] == bodies[1] == bodies[2]  # the same body each time
    body = bodies[0]
    assert body["request_id"] == job["request_id"] and body["status"] == "ERROR"
    assert body["payload"] == {"detail": result.json()["detail"]}
    assert isinstance(body["error"], str) and body["error"]
    # Back-off: each retry waits longer than the one before (0.5 s, then 1 s). Lower bounds of a
    # sleep only: a slow machine makes the gaps longer, never shorter.
    gaps = [posts[1][0] - posts[0][0], posts[2][0] - posts[1][0]]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps


def test_sigterm_with_a_job_running_exits_and_the_restart_ends_that_job(gate, hook, tmp_path):
    """SIGTERM stops the server within its grace period even though a job is stuck running; the
    next start on the same data folder reports that job as interrupted and runs new ones."""
    config = gated_config(tmp_path / "config.toml", gate, hook)
    first = ServerProcess(tmp_path / "data", config=config).start()
    try:
        job = submit(first, gate, "sigterm-running")
        gate.wait_arrival("sigterm-running")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        try:
            code = first.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"thorgen did not exit within {WAIT_S} s of SIGTERM:\n{first.log()}")
        # uvicorn re-raises the signal once its shutdown is done, so the exit is by SIGTERM, after
        # the shutdown hooks (the job service's stop) ran.
        assert code in (0, -signal.SIGTERM), first.log()
        assert "Application shutdown complete" in first.log()
    finally:
        first.stop()
        gate.release("sigterm-running")
    second = ServerProcess(tmp_path / "data", port=first.port, config=config).start()
    try:
        body = status(second, job["request_id"]).json()
        assert body["status"] == "COMPLETED" and body["error_type"] == "interrupted", body
        after = submit(second, gate, "sigterm-after")
        gate.release("sigterm-after")
        assert "error" not in wait_state(second.base_url, after["request_id"], "COMPLETED")
    finally:
        second.stop()


def test_a_queued_job_whose_endpoint_is_no_longer_served_fails_clearly(gate, hook, tmp_path):
    """Queued through an alias, then the server restarts with the alias gone from config.toml."""
    aliased = '[aliases]\n"acme/inspect" = "fal-ai/ffmpeg-api/metadata"\n'
    with_alias = gated_config(tmp_path / "with.toml", gate, hook, aliased)
    first = ServerProcess(tmp_path / "data", config=with_alias).start()
    try:
        running = submit(first, gate, "gone-running")
        gate.wait_arrival("gone-running")
        queued = submit(first, gate, "gone-queued", endpoint="acme/inspect")
        assert status(first, queued["request_id"]).json()["status"] == "IN_QUEUE"
    finally:
        first.kill()
        gate.release("gone-running")
    without = gated_config(tmp_path / "without.toml", gate, hook)
    second = ServerProcess(tmp_path / "data", port=first.port, config=without).start()
    try:
        body = wait_state(second.base_url, queued["request_id"], "COMPLETED")
        assert body["error_type"] == "endpoint_not_found", body
        assert "acme/inspect" in body["error"] and "no longer served" in body["error"]
        result = httpx.get(f"{second.base_url}{REQUESTS}/{queued['request_id']}")
        assert result.status_code == 404 and "no longer served" in result.json()["detail"]
        assert wait_state(second.base_url, running["request_id"], "COMPLETED")["error_type"] == "interrupted"
        assert "/gone-queued.wav" not in gate.arrived
    finally:
        second.stop()
