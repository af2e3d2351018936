"""fal webhooks: when a job that asked for one (``?fal_webhook=URL``) ends, POST its result there.

The URL is untrusted (any client, or a web page, can name it), so it goes through the outbound
policy (media/outbound.py) like a file input: checked at submit (a 422 on ``fal_webhook`` for a
URL that is not http(s) or whose host is, or resolves to, a private address) and again when the
POST connects, and at every redirect hop. A receiver on the LAN or on this machine is opened with
``limits.fetch_allowed_hosts``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from thorgen.errors import InputError
from thorgen.jobs.record import Job
from thorgen.media.outbound import OutboundPolicy, OutboundRefused

log = logging.getLogger("thorgen.jobs")

ATTEMPTS = 3


class Webhooks:
    def __init__(self, policy: OutboundPolicy, timeout_s: float, *, backoff_s: float = 0.5):
        self.policy = policy
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")

    def check(self, url: str) -> None:
        """At submit: refuse with a 422 on ``fal_webhook`` a URL the policy would refuse to post to.

        A name that does not resolve now (DNS down, a receiver not up yet) is let through: the
        policy is applied again when the POST connects."""
        try:
            self.policy.check_url(url)
        except OutboundRefused as exc:
            if exc.unresolved:
                return
            raise InputError("fal_webhook", f"Webhook URL refused: {exc}", "url_forbidden", where="query") from None

    def send(self, job: Job) -> None:
        """POST the finished job's result in the background (never blocks the caller)."""
        self._pool.submit(self.post, job)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def post(self, job: Job) -> bool:
        """fal's webhook body: request_id, status OK|ERROR, payload (output or error), error.

        Tried up to three times while the receiver fails (5xx or no answer); a refused address is
        not retried. Returns whether the receiver took it.
        """
        assert job.webhook_url is not None
        body: dict[str, Any] = {
            "request_id": job.id,
            "gateway_request_id": job.id,
            "status": "ERROR" if job.failed else "OK",
            "payload": job.output if not job.failed else {"detail": job.error},
            "error": job.error_message if job.failed else None,
        }
        with self.policy.client(self.timeout_s, follow_redirects=True) as client:
            for attempt in range(ATTEMPTS):
                try:
                    if client.post(job.webhook_url, json=body).status_code < 500:
                        return True
                except OutboundRefused as exc:
                    log.warning("webhook for %s not sent: %s", job.id, exc)
                    return False
                except httpx.HTTPError as exc:
                    log.warning("webhook for %s failed (attempt %d): %s", job.id, attempt + 1, exc)
                if attempt + 1 < ATTEMPTS:
                    time.sleep(self.backoff_s * 2**attempt)
        return False
