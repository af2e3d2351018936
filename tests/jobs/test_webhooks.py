"""Webhooks go out under the outbound-address policy: refused at submit, at post time and per redirect."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from thorgen.jobs.record import Job, JobState
from thorgen.jobs.webhooks import Webhooks
from thorgen.media.outbound import OutboundPolicy

METADATA = "fal-ai/ffmpeg-api/metadata"


class Receiver:
    """A webhook receiver on loopback; ``redirect_to`` makes it answer 307 to that URL instead."""

    def __init__(self, redirect_to: str | None = None):
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                if redirect_to:
                    self.send_response(307)
                    self.send_header("location", redirect_to)
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def _job(url: str) -> Job:
    return Job(id="job-1", endpoint_id=METADATA, input={}, lane="utility", state=JobState.COMPLETED,
               webhook_url=url, output={"ok": True})


def _webhooks(allowed: list[str]) -> Webhooks:
    return Webhooks(OutboundPolicy(allowed), timeout_s=5, backoff_s=0)


def test_loopback_receiver_is_not_posted_to_unless_opened(receiver):
    assert _webhooks([]).post(_job(receiver.url)) is False
    assert receiver.bodies == []
    assert _webhooks([f"127.0.0.1:{receiver.port}"]).post(_job(receiver.url)) is True
    assert receiver.bodies[0]["request_id"] == "job-1" and receiver.bodies[0]["status"] == "OK"


def test_a_redirect_from_an_allowed_receiver_to_loopback_is_not_followed(receiver):
    bouncer = Receiver(redirect_to=receiver.url)
    try:
        delivered = _webhooks([f"127.0.0.1:{bouncer.port}"]).post(_job(bouncer.url))
    finally:
        bouncer.close()
    assert delivered is False
    assert len(bouncer.bodies) == 1  # the allowed hop was posted to once: a refusal is not retried
    assert receiver.bodies == []  # the private hop never was


def test_a_name_that_rebinds_to_loopback_at_post_time_is_not_posted_to(receiver):
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    webhooks = Webhooks(OutboundPolicy([], resolve=lambda host, port: next(answers)), timeout_s=5, backoff_s=0)
    url = f"http://hooks.example:{receiver.port}/hook"
    webhooks.check(url)  # at submit it resolved to a public address
    assert webhooks.post(_job(url)) is False
    assert receiver.bodies == []


def test_a_name_that_does_not_resolve_yet_is_decided_at_post_time():
    def no_dns(host: str, port: int) -> list[str]:
        raise OSError("no DNS")

    webhooks = Webhooks(OutboundPolicy([], resolve=no_dns), timeout_s=5, backoff_s=0)
    webhooks.check("https://hooks.example/done")  # not refused at submit
    assert webhooks.post(_job("https://hooks.example/done")) is False  # and not posted anywhere


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hook", "http://localhost:{port}/hook",
                                 "http://[::1]:{port}/hook", "http://[::ffff:127.0.0.1]:{port}/hook",
                                 "http://169.254.169.254/latest/meta-data"])
def test_submit_refuses_a_private_webhook_with_422(server, receiver, url):
    response = httpx.post(f"{server.base_url}/queue/{METADATA}",
                          params={"fal_webhook": url.format(port=receiver.port)},
                          json={"media_url": "data:,x"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "fal_webhook"] and "fetch_allowed_hosts" in detail["msg"]
    assert receiver.bodies == []  # no job was made, so nothing can be posted
