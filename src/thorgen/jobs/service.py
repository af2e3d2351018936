"""JobService: submit, run, cancel and recover jobs. The one owner of job state.

A job's life: ``submit`` validates the input against its endpoint (422 now rather than later),
stores the record and puts it on its lane; a lane worker calls ``_execute``, which runs the
endpoint in that worker thread and stores the output or the error; waiters are woken through the
ChangeFeed and a webhook fires if one was asked for. On start, ``recover`` re-queues what was
waiting and ends what was running when the process died.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
import uuid
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import IO, Any

import msgspec

from thorgen.config import Config
from thorgen.endpoints.base import Endpoint
from thorgen.endpoints.registry import Registry
from thorgen.errors import Cancelled, FalError, disk_full
from thorgen.jobs.context import JobContext
from thorgen.jobs.feed import ChangeFeed
from thorgen.jobs.lanes import Lane
from thorgen.jobs.record import Job, JobState, LogEntry, Priority
from thorgen.jobs.store import JobStore
from thorgen.jobs.webhooks import Webhooks
from thorgen.media.outbound import OutboundPolicy
from thorgen.media.resolve import UrlResolver
from thorgen.media.store import MediaStore
from thorgen.metrics import Metrics
from thorgen.models.info import model_info
from thorgen.models.memory import is_out_of_memory
from thorgen.models.runtime import ModelRuntime

log = logging.getLogger("thorgen.jobs")


class CancelOutcome(StrEnum):
    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


class JobService:
    def __init__(self, config: Config, registry: Registry, metrics: Metrics | None = None):
        self.config = config
        self.registry = registry
        self.metrics = metrics or Metrics()
        data_dir = config.data_dir
        self.store = JobStore(data_dir / "jobs.sqlite3")
        self.media = MediaStore(data_dir / "files")
        self.scratch_root = data_dir / "tmp"
        outbound = OutboundPolicy(config.limits.fetch_allowed_hosts)  # one policy for fetches and webhooks
        self.resolver = UrlResolver(self.media, config, outbound)
        self.webhooks = Webhooks(outbound, config.limits.webhook_timeout_s)
        self.feed = ChangeFeed()
        self.runtime = ModelRuntime(config)
        self.metrics.watch_models(self.runtime)
        self.lanes = {
            "gpu": Lane("gpu", 1, self._execute),
            "utility": Lane("utility", config.lanes.utility_workers, self._execute),
        }
        self._cancelling: set[str] = set()
        self._lock_file: IO[str] | None = None
        for name, lane in self.lanes.items():
            self.metrics.queue_depth.labels(name).set_function(partial(getattr, lane, "depth"))
            self.metrics.running.labels(name).set_function(partial(getattr, lane, "busy"))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._lock_data_dir()
        self.recover()
        for lane in self.lanes.values():
            lane.start()
        self.runtime.start()

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.stop()
        self.webhooks.stop()
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _lock_data_dir(self) -> None:
        """One process per data folder: a second one would end the first one's running jobs."""
        path = self.config.data_dir / "thorgen.lock"
        self._lock_file = path.open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise RuntimeError(
                f"{self.config.data_dir} is in use by another thorgen process; give this one its own "
                "data folder (--data-dir or THORGEN_STORAGE__DATA_DIR)"
            ) from None

    def recover(self) -> None:
        """After a restart: a job that was running is over (its worker died); queued ones run."""
        for job in self.store.in_state(JobState.IN_PROGRESS):
            self._finish(
                job,
                error="The server restarted while this request was running; submit it again",
                error_type="interrupted",
                status=500,
                outcome="interrupted",
            )
        for job in self.store.in_state(JobState.IN_QUEUE):
            if job.cancel_requested:
                self._finish(job, error=Cancelled().detail, error_type="request_cancelled", status=400,
                             outcome="cancelled")
            else:
                self.lanes[job.lane].put(job.id, job.priority, job.seq)
        _remove_tree_contents(self.scratch_root)
        self.media.remove_partials()

    # -- client side -------------------------------------------------------------------------

    def submit(
        self,
        endpoint_id: str,
        raw_input: Any,
        *,
        priority: Priority = Priority.NORMAL,
        base_url: str = "",
        webhook_url: str | None = None,
    ) -> Job:
        endpoint = self.registry.require(endpoint_id)
        model = self.registry.model_for(endpoint)
        endpoint.check_input(raw_input, model_info(self.config, model))  # a 422 now, not in the result
        if model is not None:
            self.runtime.check(model)  # a model that can never fit is refused now, not after a wait
        job = Job(
            id=str(uuid.uuid4()),
            endpoint_id=endpoint_id.strip("/"),
            input=raw_input,
            lane=endpoint.lane,
            priority=priority,
            base_url=base_url or self.default_base_url(),
            webhook_url=webhook_url,
        )
        self.store.add(job)
        self.lanes[job.lane].put(job.id, job.priority, job.seq)
        return job

    def default_base_url(self) -> str:
        server = self.config.server
        return server.public_url.rstrip("/") or f"http://{server.host}:{server.port}"

    def get(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def logs(self, job_id: str) -> list[LogEntry]:
        return self.store.logs(job_id)

    def queue_position(self, job: Job) -> int:
        if job.state is not JobState.IN_QUEUE:
            return 0
        position = self.lanes[job.lane].position(job.id)
        return position if position is not None else 0

    def cancel(self, job_id: str) -> CancelOutcome:
        job = self.store.get(job_id)
        if job is None:
            return CancelOutcome.NOT_FOUND
        if job.state is JobState.COMPLETED:
            return CancelOutcome.ALREADY_COMPLETED
        self.store.request_cancel(job_id)
        self._cancelling.add(job_id)
        if self.lanes[job.lane].remove(job_id):
            self._finish(job, error=Cancelled().detail, error_type="request_cancelled", status=400,
                         outcome="cancelled")
        # else a worker holds it: JobContext.check_cancelled() stops it at its next step.
        return CancelOutcome.REQUESTED

    def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancelling

    def append_log(self, job_id: str, entry: LogEntry) -> None:
        self.store.add_log(job_id, entry)
        self.feed.publish(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block a thread until the job is COMPLETED (or the timeout passes); for in-process use."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.feed.version(job_id)
            job = self.store.get(job_id)
            if job is None or job.state is JobState.COMPLETED:
                return job
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return job
            self.feed.wait(job_id, seen, min(left, 1.0))

    # -- worker side -------------------------------------------------------------------------

    def _execute(self, job_id: str) -> None:
        if not self.store.mark_started(job_id):
            return  # cancelled or finished while it waited
        job = self.store.get(job_id)
        assert job is not None
        self.feed.publish(job_id)
        endpoint = self.registry.find(job.endpoint_id)
        context = JobContext(job, self, self.registry.model_for(endpoint) if endpoint else None)
        try:
            if endpoint is None:
                raise FalError(f"Endpoint '{job.endpoint_id}' is no longer served", status=404,
                               error_type="endpoint_not_found")
            context.log(f"running {job.endpoint_id} on the {job.lane} lane")
            output = self._run(endpoint, context)
            context.commit_outputs()  # files whole and on disk before the job says COMPLETED
            self._finish(job, output=msgspec.to_builtins(output), outcome="ok")
        except Cancelled as exc:
            self._finish(job, error=exc.detail, error_type=exc.error_type, status=exc.status,
                         outcome="cancelled")
        except FalError as exc:
            self._finish(job, error=exc.detail, error_type=exc.error_type, status=exc.status,
                         outcome="error")
        except Exception as exc:
            full = disk_full(exc)
            if full is not None:
                log.error("job %s (%s): %s", job.id, job.endpoint_id, full.detail)
                self._finish(job, error=full.detail, error_type=full.error_type, status=full.status,
                             outcome="error")
            else:
                log.exception("job %s (%s) failed", job.id, job.endpoint_id)
                self._finish(job, error=f"{type(exc).__name__}: {exc}", error_type="internal_error",
                             status=500, outcome="error")
        finally:
            context.cleanup()

    def _run(self, endpoint: Endpoint, context: JobContext) -> msgspec.Struct:
        """Run an endpoint; on running out of memory, unload every other model and try once more."""
        for attempt in (1, 2):
            try:
                return endpoint.run(context, endpoint.decode_input(context.job.input))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                failure = f"{type(exc).__name__}: {str(exc)[:300]}"
            # Outside the except block the failed attempt's frames, and the tensors they held, are gone.
            if attempt == 1:
                freed = self.runtime.after_out_of_memory(keep=context.model)
                context.log(f"out of memory ({failure}); unloaded the other models ({freed / 1024**3:.2f} GiB) "
                            "and trying once more", "WARNING")
        self.runtime.after_out_of_memory(keep=None)
        raise FalError(
            f"Out of memory running {endpoint.id}, even after unloading every other model ({failure}). "
            "Ask for less (a smaller size, fewer images or frames) or lower runtime.budget_fraction "
            "so more memory is left for the work itself.", status=507, error_type="out_of_memory")

    def _finish(
        self,
        job: Job,
        *,
        outcome: str,
        output: dict[str, Any] | None = None,
        error: Any = None,
        error_type: str | None = None,
        status: int | None = None,
    ) -> None:
        if not self.store.finish(job.id, output=output, error=error, error_type=error_type,
                                 error_status=status):
            return
        if error is not None:
            message = error if isinstance(error, str) else msgspec.json.encode(error).decode()
            self.store.add_log(job.id, LogEntry(message, "ERROR", time.time()))
        self._cancelling.discard(job.id)
        self.metrics.jobs.labels(job.endpoint_id, outcome).inc()
        finished = self.store.get(job.id)
        if finished and finished.inference_time is not None:
            self.metrics.duration.labels(job.endpoint_id).observe(finished.inference_time)
        self.feed.publish(job.id)
        self.feed.forget(job.id)  # waiters re-read the job after every wake-up and see COMPLETED
        if finished and finished.webhook_url:
            self.webhooks.send(finished)


def _remove_tree_contents(root: Path) -> None:
    if root.is_dir():
        for child in root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
