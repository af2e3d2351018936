"""An in-process client with fal_client's shape: submit / status / result / subscribe / run / cancel.

Jobs go through the same registry, lanes and store as the server's, without HTTP. A data folder
belongs to one process at a time: point a script at its own ``data_dir`` while a server runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thorgen.config import Config, default_config_path, load_config
from thorgen.errors import FalError
from thorgen.families.registry import Registry
from thorgen.jobs import outcomes
from thorgen.jobs.record import Job, JobState, Priority
from thorgen.jobs.service import CancelOutcome, JobService


@dataclass
class Queued:
    position: int


@dataclass
class InProgress:
    logs: list[dict[str, Any]] | None = None


@dataclass
class Completed:
    logs: list[dict[str, Any]] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


Status = Queued | InProgress | Completed


@dataclass
class RequestHandle:
    request_id: str
    client: Client

    def status(self, *, with_logs: bool = False) -> Status:
        return self.client.status("", self.request_id, with_logs=with_logs)

    def get(self) -> dict[str, Any]:
        return self.client._wait_result(self.request_id)

    def cancel(self) -> None:
        self.client.cancel("", self.request_id)


class Client:
    def __init__(self, config: Config | None = None):
        self.config = config or load_config(default_config_path())
        self.service = JobService(self.config, Registry(self.config))
        self.service.start()

    def close(self) -> None:
        self.service.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, application: str, arguments: dict[str, Any], *, priority: str = "normal",
               webhook_url: str | None = None) -> RequestHandle:
        job = self.service.submit(application, arguments, priority=Priority(priority), webhook_url=webhook_url)
        return RequestHandle(job.id, self)

    def status(self, application: str, request_id: str, *, with_logs: bool = False) -> Status:
        job = self._job(request_id)
        logs = [entry.to_fal() for entry in self.service.logs(job.id)] if with_logs else None
        if job.state is JobState.IN_QUEUE:
            return Queued(self.service.queue_position(job))
        if job.state is JobState.IN_PROGRESS:
            return InProgress(logs)
        return Completed(logs, {"inference_time": job.inference_time})

    def result(self, application: str, request_id: str) -> dict[str, Any]:
        return outcomes.output(outcomes.finished(self._job(request_id)))

    def cancel(self, application: str, request_id: str) -> None:
        outcome = self.service.cancel(request_id)
        if outcome is CancelOutcome.NOT_FOUND:
            raise FalError(f"Request '{request_id}' not found", status=404, error_type="request_not_found")
        if outcome is CancelOutcome.ALREADY_COMPLETED:
            raise FalError("Request already completed", status=400, error_type="already_completed")

    def subscribe(self, application: str, arguments: dict[str, Any], *, with_logs: bool = False,
                  on_enqueue: Callable[[str], None] | None = None,
                  on_queue_update: Callable[[Status], None] | None = None) -> dict[str, Any]:
        handle = self.submit(application, arguments)
        if on_enqueue:
            on_enqueue(handle.request_id)
        while True:
            status = self.status(application, handle.request_id, with_logs=with_logs)
            if on_queue_update:
                on_queue_update(status)
            if isinstance(status, Completed):
                return self.result(application, handle.request_id)
            self.service.wait(handle.request_id, timeout=0.5)

    def run(self, application: str, arguments: dict[str, Any]) -> dict[str, Any]:
        handle = self.submit(application, arguments)
        return self._wait_result(handle.request_id)

    def _wait_result(self, request_id: str) -> dict[str, Any]:
        self.service.wait(request_id)  # blocks until COMPLETED
        return outcomes.output(self._job(request_id))

    def _job(self, request_id: str) -> Job:
        return outcomes.found(self.service.get(request_id), request_id)
