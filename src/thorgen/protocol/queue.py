"""fal's queue API (submit, status, status stream, result, cancel) and the sync run API.

Only submit and run carry the full endpoint id; status, stream, result and cancel arrive with
owner/alias only, so every lookup is by request id.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Any, TypeVar

import msgspec
from anyio import to_thread
from litestar import Request, Response
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from thorgen.errors import FalError, InputError
from thorgen.jobs import outcomes
from thorgen.jobs.record import Job, JobState, Priority
from thorgen.jobs.service import CancelOutcome, JobService
from thorgen.protocol.call import FalCall
from thorgen.protocol.responses import decode_json, error_response, json_response

_T = TypeVar("_T")

_REQUEST_PATH = re.compile(r"^(?P<app>.+?)/requests/(?P<id>[^/]+)(?P<tail>/status/stream|/status|/cancel)?$")
# thorgen issues request ids as str(uuid4()). Anything else cannot name a job, and must never be
# looked up or echoed into a header (a non-Latin-1, NUL or CR/LF id would break the response).
_REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_TRUE = {"1", "true", "yes"}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def off_loop(function: Callable[..., _T], *args: Any) -> _T:
    """Run a call that touches the job store in a worker thread, never on the event loop.

    A store read or write can wait on SQLite's lock (a lane committing a result, a checkpoint, a slow
    disk) or decode a large row; on the loop that stalls every other request and stream. anyio's
    default limiter bounds the threads (40), so a flood of polls queues instead of multiplying.
    """
    return await to_thread.run_sync(partial(function, *args))


class QueueApi:
    def __init__(self, service: JobService):
        self.service = service
        self.keepalive_s = service.config.limits.sse_keepalive_s
        self.run_timeout_s = service.config.limits.sync_run_timeout_s

    async def handle(self, call: FalCall, request: Request[Any, Any, Any], body: bytes) -> Response[Any]:
        method = request.method
        match = _REQUEST_PATH.match(call.path)
        if match is None:
            if method != "POST":
                raise FalError(f"Use POST to submit to {call.path!r}", status=405, error_type="method_not_allowed")
            webhook = _webhook(call.query.get("fal_webhook"))
            if webhook is not None:  # may resolve a host name: off the event loop
                await off_loop(self.service.webhooks.check, webhook)
            return await off_loop(self.submit, call, request, body, webhook)
        request_id, tail = match.group("id"), match.group("tail") or ""
        if tail == "/cancel":
            if method not in ("PUT", "POST"):
                raise FalError("Use PUT to cancel", status=405, error_type="method_not_allowed")
            return await off_loop(self.cancel, _checked_request_id(request_id))
        if method not in ("GET", "HEAD"):
            raise FalError(f"Use GET on {call.path!r}", status=405, error_type="method_not_allowed")
        request_id = _checked_request_id(request_id)
        if tail == "/status/stream":
            return await off_loop(self.stream_status, call, request_id)
        if tail == "/status":
            return await off_loop(self.status, call, request_id)
        return await off_loop(self.result, request_id)

    # -- submit ------------------------------------------------------------------------------

    def submit(self, call: FalCall, request: Request[Any, Any, Any], body: bytes,
               webhook: str | None = None) -> Response[bytes]:
        job = self.service.submit(
            call.path,
            decode_json(body),
            priority=_priority(request.headers.get("x-fal-queue-priority")),
            base_url=call.base_url,
            webhook_url=webhook,
        )
        body_out = {
            "status": JobState.IN_QUEUE.value,
            "request_id": job.id,
            **_urls(call, job),
            "queue_position": self.service.queue_position(job),
        }
        return json_response(body_out, 200, job.id)

    # -- status ------------------------------------------------------------------------------

    def status(self, call: FalCall, request_id: str) -> Response[bytes]:
        job = self._job(request_id)
        body = self.status_body(call, job, call.query.get("logs", "0").lower() in _TRUE)
        return json_response(body, 200 if job.state is JobState.COMPLETED else 202, job.id)

    def status_body(self, call: FalCall, job: Job, with_logs: bool) -> dict[str, Any]:
        # fal-client (Python) indexes queue_position and logs without defaults: always send both.
        body: dict[str, Any] = {
            "status": job.state.value,
            "request_id": job.id,
            **_urls(call, job),
            "queue_position": self.service.queue_position(job),
            "logs": [entry.to_fal() for entry in self.service.logs(job.id)] if with_logs else None,
        }
        if job.state is JobState.COMPLETED:
            body["metrics"] = {"inference_time": job.inference_time}
            if job.failed:
                body["error"] = job.error_message
                body["error_type"] = job.error_type
        return body

    def stream_status(self, call: FalCall, request_id: str) -> ServerSentEvent:
        """SSE whatever the Accept header says; keep-alive comments; closed right after COMPLETED."""
        job = self._job(request_id)
        with_logs = call.query.get("logs", "0").lower() in _TRUE
        feed = self.service.feed

        async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
            last = b""
            while True:
                seen = feed.version(job.id)
                current, encoded = await off_loop(self._status_event, call, job.id, with_logs)
                if encoded != last:
                    last = encoded
                    yield ServerSentEventMessage(data=encoded.decode())
                if current.state is JobState.COMPLETED:
                    return
                if not await feed.wait_async(job.id, seen, self.keepalive_s):
                    yield ServerSentEventMessage(data=None, comment="keep-alive")

        return ServerSentEvent(events(), status_code=200, headers={**_SSE_HEADERS, "x-fal-request-id": job.id})

    def _status_event(self, call: FalCall, job_id: str, with_logs: bool) -> tuple[Job, bytes]:
        """One wake-up of a status stream: the job re-read and its status encoded, in one thread hop."""
        job = self._job(job_id)
        return job, msgspec.json.encode(self.status_body(call, job, with_logs))

    # -- result and cancel -------------------------------------------------------------------

    def result(self, request_id: str) -> Response[bytes]:
        return self.output_response(outcomes.finished(self._job(request_id)))

    @staticmethod
    def output_response(job: Job) -> Response[bytes]:
        error = outcomes.failure(job)
        if error is not None:
            return error_response(error, job.id)
        return json_response(job.output, 200, job.id)

    def cancel(self, request_id: str) -> Response[bytes]:
        outcome = self.service.cancel(request_id)
        status = {CancelOutcome.REQUESTED: 202, CancelOutcome.ALREADY_COMPLETED: 400,
                  CancelOutcome.NOT_FOUND: 404}[outcome]
        return json_response({"status": outcome.value}, status, request_id)

    # -- sync run ----------------------------------------------------------------------------

    async def run(self, call: FalCall, request: Request[Any, Any, Any], body: bytes) -> Response[Any]:
        """fal.run: the same job as a submit (stored, on its lane), answered when it ends."""
        endpoint_id, streaming = call.path, False
        if self.service.registry.find(endpoint_id) is None and endpoint_id.endswith("/stream"):
            endpoint_id, streaming = endpoint_id[: -len("/stream")], True
        raw = decode_json(body)  # routes.dispatch lets only POST reach a run
        job = await off_loop(partial(self.service.submit, endpoint_id, raw, base_url=call.base_url,
                                     priority=_priority(request.headers.get("x-fal-queue-priority"))))
        if streaming:
            return self._run_stream(job.id)
        finished = await self._wait(job.id)
        if finished.state is not JobState.COMPLETED:
            await off_loop(self.service.cancel, job.id)
            raise FalError(f"Request did not finish within {self.run_timeout_s:.0f} s; it was cancelled",
                           status=504, error_type="request_timeout")
        return self.output_response(finished)

    def _run_stream(self, job_id: str) -> ServerSentEvent:
        async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
            job = await self._wait(job_id)
            if job.failed:
                error = {"detail": job.error, "error_type": job.error_type}
                yield ServerSentEventMessage(data=msgspec.json.encode(error).decode(), event="error")
            else:
                yield ServerSentEventMessage(data=msgspec.json.encode(job.output).decode())

        return ServerSentEvent(events(), status_code=200, headers={**_SSE_HEADERS, "x-fal-request-id": job_id})

    async def _wait(self, job_id: str) -> Job:
        deadline = time.monotonic() + self.run_timeout_s
        while True:
            seen = self.service.feed.version(job_id)
            job = await off_loop(self._job, job_id)
            if job.state is JobState.COMPLETED or time.monotonic() > deadline:
                return job
            await self.service.feed.wait_async(job_id, seen, min(self.keepalive_s, deadline - time.monotonic()))

    def _job(self, request_id: str) -> Job:
        return outcomes.found(self.service.get(request_id), request_id)


def app_id(endpoint_id: str) -> str:
    """owner/alias of an endpoint id (namespaced ids keep their namespace)."""
    parts = endpoint_id.split("/")
    keep = 3 if parts[0] in ("workflows", "comfy") else 2
    return "/".join(parts[:keep])


def _urls(call: FalCall, job: Job) -> dict[str, str]:
    base = f"{app_id(job.endpoint_id)}/requests/{job.id}"
    return {
        "response_url": call.queue_url(base),
        "status_url": call.queue_url(f"{base}/status"),
        "cancel_url": call.queue_url(f"{base}/cancel"),
    }


def _checked_request_id(request_id: str) -> str:
    """The id when it has the shape of one thorgen issued; otherwise 404. The id is named only inside
    the JSON body (escaped, cut to 64 characters), never in a header."""
    if _REQUEST_ID.match(request_id) is None:
        raise FalError(f"Request {request_id[:64]!r} not found: that is not a request id thorgen issued",
                       status=404, error_type="request_not_found")
    return request_id


def _priority(value: str | None) -> Priority:
    if value is None or value == "":
        return Priority.NORMAL
    try:
        return Priority(value.strip().lower())
    except ValueError:
        raise InputError("x-fal-queue-priority", "Must be 'normal' or 'low'", "enum", where="header") from None


def _webhook(value: str | None) -> str | None:
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("fal_webhook", "Webhook must be an http(s) URL", "url_scheme", where="query")
    return value
