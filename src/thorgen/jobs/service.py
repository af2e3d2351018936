"""JobService: submit, run, cancel and recover jobs. The one owner of job state.

A job's life: ``submit`` validates the input against its endpoint (422 now rather than later),
stores the record and puts it on its lane; a lane worker calls ``_execute``, which runs the
endpoint in that worker thread and stores the output or the error; waiters are woken through the
ChangeFeed and a webhook fires if one was asked for. On start, ``recover`` re-queues what was
waiting and ends what was running when the process died.

No job is ever stranded: a state change (start, finish) that fails to write (a full disk, a locked
database) is tried again with back-off; a job that still cannot start ends COMPLETED with the
reason, and a finish that still cannot be written goes to the finisher thread, which keeps trying
until the disk takes a write again. Every job that ends with an error gets a line in the server log.
"""

from __future__ import annotations

import fcntl
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import msgspec

from thorgen.errors import Cancelled, FalError, disk_full
from thorgen.jobs.cluster import ClaimingLane, cluster_for
from thorgen.jobs.context import JobContext
from thorgen.jobs.feed import ChangeFeed
from thorgen.jobs.lanes import Lane
from thorgen.jobs.record import Job, JobState, LogEntry, Priority
from thorgen.jobs.stores import open_store
from thorgen.jobs.stores.base import RETRYABLE, StoreUnavailable
from thorgen.jobs.webhooks import Webhooks
from thorgen.media.outbound import OutboundPolicy
from thorgen.media.resolve import UrlResolver
from thorgen.media.store import MediaStore
from thorgen.metrics import Metrics
from thorgen.models.info import model_info
from thorgen.models.memory import is_out_of_memory
from thorgen.models.runtime import ModelRuntime

if TYPE_CHECKING:
    from thorgen.config import Config
    from thorgen.families.base import Endpoint
    from thorgen.families.registry import Registry

log = logging.getLogger("thorgen.jobs")

T = TypeVar("T")

# Pauses between tries of a job-state write that failed: about 6 s in all, then a job that cannot
# start ends with the reason and a finish that cannot be written goes to the finisher.
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
FINISHER_MAX_DELAY_S = 5.0  # the finisher's back-off stops growing here


@dataclass
class _PendingFinish:
    """A finish whose write failed: the finisher thread writes it once the disk allows. ``job`` is
    the job's id alone when even reading it failed; the finisher reads it then."""

    job: Job | str
    outcome: str
    output: dict[str, Any] | None
    error: Any
    error_type: str | None
    status: int | None

    @property
    def job_id(self) -> str:
        return self.job.id if isinstance(self.job, Job) else self.job


class CancelOutcome(StrEnum):
    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


class JobService:
    def __init__(self, config: Config, registry: Registry, metrics: Metrics | None = None,
                 runtime: ModelRuntime | None = None):
        self.config = config
        self.registry = registry
        self.metrics = metrics or Metrics()
        data_dir = config.data_dir
        # The embedded SQLite database, or with jobs.database a PostgreSQL one shared by a cluster.
        self.store = open_store(config)
        self.media = MediaStore(data_dir / "files")
        self.scratch_root = data_dir / "tmp"
        outbound = OutboundPolicy(config.limits.fetch_allowed_hosts)  # one policy for fetches and webhooks
        self.resolver = UrlResolver(self.media, config, outbound)
        self.webhooks = Webhooks(outbound, config.limits.webhook_timeout_s)
        self.feed = ChangeFeed()
        # The families' load hooks and tiny builders reach the runtime through the registry.
        self.runtime = runtime or ModelRuntime(config, registry.load_hooks(), registry.tiny_builder,
                                               registry.warm_ups())
        self.metrics.watch_models(self.runtime)
        self.cluster = cluster_for(self, self.store)  # None on one machine
        self.lanes: dict[str, Lane | ClaimingLane] = {
            "gpu": Lane("gpu", 1, self._execute),
            "utility": Lane("utility", config.lanes.utility_workers, self._execute),
        } if self.cluster is None else {
            "gpu": self.cluster.lane("gpu", 1),
            "utility": self.cluster.lane("utility", config.lanes.utility_workers),
        }
        self._cancelling: set[str] = set()
        self._lock_file: IO[str] | None = None
        self.retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
        self._stopping = threading.Event()
        self._pending: queue.Queue[_PendingFinish] = queue.Queue()
        self._finisher: threading.Thread | None = None
        for name, lane in self.lanes.items():
            self.metrics.queue_depth.labels(name).set_function(partial(getattr, lane, "depth"))
            self.metrics.running.labels(name).set_function(partial(getattr, lane, "busy"))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._lock_data_dir()
        self._stopping.clear()
        self._finisher = threading.Thread(target=self._finish_pending, name="job-finisher", daemon=True)
        self._finisher.start()
        # Before any lane runs a job: model jobs wait for this warm-up (_wait_for_models).
        self.runtime.start()
        self.recover()
        if self.cluster is not None:
            self.cluster.start()
        for lane in self.lanes.values():
            lane.start()

    def stop(self) -> None:
        self._stopping.set()  # ends retry pauses at once; what is unwritten, recover() settles next start
        for lane in self.lanes.values():
            lane.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self._finisher is not None:
            self._finisher.join(5.0)
            self._finisher = None
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
        if self.cluster is not None:  # only this node's own jobs; the queue is shared
            self.cluster.recover()
            _remove_tree_contents(self.scratch_root)
            self.media.remove_partials()
            return
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
        # Cluster mode: an endpoint this node cannot serve (not here, model missing or too large) but a
        # live peer can is queued for that peer; a peer without the endpoint at all validates the
        # input when it runs the job (a 422 then comes in the result).
        elsewhere = self.cluster.lane_elsewhere(endpoint_id) if self.cluster is not None else None
        try:
            endpoint: Endpoint | None = self._require(endpoint_id)
        except FalError:
            if elsewhere is None:
                raise
            endpoint = None
        lane = elsewhere or ""
        if endpoint is not None:
            lane = endpoint.lane
            model = self.registry.model_for(endpoint)
            endpoint.check_input(raw_input, model_info(self.config, model))  # a 422 now, not in the result
            if model is not None and elsewhere is None:
                self.runtime.check(model)  # a model that can never fit is refused now, not after a wait
        job = Job(
            id=str(uuid.uuid4()),
            endpoint_id=endpoint_id.strip("/"),
            input=raw_input,
            lane=lane,
            priority=priority,
            base_url=base_url or self.default_base_url(),
            webhook_url=webhook_url,
        )
        try:
            self.store.add(job)
        except RETRYABLE as exc:
            full = disk_full(exc, self.config.data_dir)
            if full is None:
                raise
            raise full from exc
        self.lanes[job.lane].put(job.id, job.priority, job.seq)
        return job

    def _require(self, endpoint_id: str) -> Endpoint:
        """The endpoint, ready to take a job; one whose tiny model warm-up is writing now counts.

        Right after ``serve --tiny`` starts, the tiny models are still being written: their jobs are
        accepted and wait for the warm-up (the lease waits for it); only a model that is not there
        and not being prepared is a 424.
        """
        try:
            return self.registry.require(endpoint_id)
        except FalError as exc:
            endpoint = self.registry.find(endpoint_id)
            model = self.registry.model_for(endpoint) if endpoint is not None else None
            if endpoint is None or model is None or exc.error_type != "model_not_installed":
                raise
            if not self.runtime.preparing(model):
                raise
            return endpoint

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

    def note_cancel(self, job_id: str) -> None:
        """A cancel asked on another node, of a job this node holds: it stops at its next step."""
        self._cancelling.add(job_id)

    def end_cancelled(self, job: Job) -> None:
        self._finish(job, error=Cancelled().detail, error_type="request_cancelled", status=400, outcome="cancelled")

    def end_interrupted(self, job: Job, message: str) -> None:
        self._finish(job, error=message, error_type="interrupted", status=500, outcome="interrupted")

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
        if not self._wait_for_models(job_id):
            return
        try:
            started = self._retrying("start", job_id, lambda: self.store.mark_started(job_id))
        except RETRYABLE as exc:
            self._cannot_start(job_id, exc)
            return
        if not started:
            return  # cancelled or finished while it waited
        try:
            job = self._retrying("input", job_id, lambda: self.store.get(job_id, with_input=True))
        except RETRYABLE as exc:
            self._input_unreadable(job_id, exc)
            return
        if job is None:
            return  # removed (pruned) between its start and now: nothing is left to run or end
        if self.cluster is not None:  # outputs are stored here, so their URLs name this node
            job.base_url = self.cluster.public_url
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
            full = disk_full(exc, self.config.data_dir)
            if full is not None:
                self._finish(job, error=full.detail, error_type=full.error_type, status=full.status,
                             outcome="error")
            else:
                log.exception("job %s (%s) failed", job.id, job.endpoint_id)
                self._finish(job, error=f"{type(exc).__name__}: {exc}", error_type="internal_error",
                             status=500, outcome="error")
        finally:
            context.cleanup()

    def _wait_for_models(self, job_id: str) -> bool:
        """A job that needs a model waits, still queued, until the model runtime has warmed up.

        The warm-up thread imports diffusers and, in tiny mode, writes the tiny models; a job that
        imported diffusers beside it would find a half-imported module ("diffusers has no class
        'FluxPipeline'"). This covers every way in: serve before /ready, jobs recovered after a
        restart, thorgen.Client and `thorgen run`. Jobs with no model (the utility lane) never wait.
        False if the job was cancelled meanwhile (it is ended here).
        """
        if self.runtime.ready.is_set():
            return True
        job = self.store.get(job_id)
        endpoint = self.registry.find(job.endpoint_id) if job is not None else None
        if job is None or endpoint is None or self.registry.model_for(endpoint) is None:
            return True
        try:
            self.append_log(job_id, LogEntry("waiting for the model runtime to warm up", "INFO", time.time()))
        except RETRYABLE:
            pass  # only a progress note; the job's own writes are retried

        def stop_if_cancelled() -> None:
            if job_id in self._cancelling:
                raise Cancelled()

        try:
            self.runtime.wait_until_warm(stop_if_cancelled)
        except Cancelled as exc:
            self._finish(job, error=exc.detail, error_type=exc.error_type, status=exc.status, outcome="cancelled")
            return False
        return True

    def _cannot_start(self, job_id: str, exc: Exception) -> None:
        """Marking a job started kept failing: end it with the reason rather than leave it queued."""
        if isinstance(exc, StoreUnavailable):  # cluster mode: the claim goes back to the queue at the next beat
            return
        job = self.store.get(job_id)
        if job is None or job.state is not JobState.IN_QUEUE:
            return
        failure = disk_full(exc, self.config.data_dir)
        if failure is None:
            failure = FalError(f"The jobs database refused to start this job: {exc}", status=500,
                               error_type="internal_error")
        self._finish(job, error=f"{failure.detail} (the job could not start)", error_type=failure.error_type,
                     status=failure.status, outcome="error")

    def _input_unreadable(self, job_id: str, exc: Exception) -> None:
        """The job has started but its input will not read back: end it with the reason (the finisher
        keeps trying to record that) rather than leave it IN_PROGRESS until the next restart."""
        failure = disk_full(exc, self.config.data_dir)
        if failure is None:
            failure = FalError(f"The jobs database could not give this job its input: {exc}", status=500,
                               error_type="internal_error")
        log.error("job %s: its input could not be read (%s); it ends with an error", job_id, exc)
        self._pending.put(_PendingFinish(job_id, "error", None, f"{failure.detail} (the job could not run)",
                                         failure.error_type, failure.status))

    def _run(self, endpoint: Endpoint, context: JobContext) -> msgspec.Struct:
        """Run an endpoint; on running out of memory, unload every other model and try once more."""
        for attempt in (1, 2):
            try:
                # Decoded again here, though submit already checked it: the job record keeps the raw
                # JSON, which is what survives a restart (a Struct does not), so the worker rebuilds the
                # typed input from it (a 422 here only if the input type changed since the submit).
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
        pending = _PendingFinish(job, outcome, output, error, error_type, status)
        try:
            self._retrying("finish", job.id, lambda: self._write_finish(pending))
        except RETRYABLE as exc:
            log.error("job %s (%s): its %s could not be recorded (%s); the finisher keeps trying",
                      job.id, job.endpoint_id, outcome, exc)
            self._pending.put(pending)
        except Exception:  # e.g. an output that will not encode: end the job all the same
            log.exception("job %s (%s): recording its %s failed; it ends with an internal error",
                          job.id, job.endpoint_id, outcome)
            self._pending.put(_PendingFinish(job, "error", None, "The job's result could not be recorded",
                                             "internal_error", 500))

    def _write_finish(self, pending: _PendingFinish) -> None:
        """Commit the COMPLETED row, then tell everyone: the log, metrics, waiters, the webhook."""
        job = pending.job if isinstance(pending.job, Job) else self.store.get(pending.job)
        if job is None:
            return  # removed meanwhile: nothing to end
        if not self.store.finish(job.id, output=pending.output, error=pending.error,
                                 error_type=pending.error_type, error_status=pending.status):
            return
        if pending.error is not None:
            message = pending.error if isinstance(pending.error, str) else msgspec.json.encode(pending.error).decode()
            # One line per failed job in the server log: endpoint, id, error type, message.
            level = logging.INFO if pending.outcome == "cancelled" else (
                logging.WARNING if (pending.status or 500) < 500 else logging.ERROR)
            log.log(level, "job %s (%s) failed: %s %s: %s", job.id, job.endpoint_id, pending.status,
                    pending.error_type, message)
            try:
                self.store.add_log(job.id, LogEntry(message, "ERROR", time.time()))
            except RETRYABLE as exc:  # the job's state is recorded; its log line is a nicety
                log.warning("job %s: the error could not be added to its logs: %s", job.id, exc)
        self._cancelling.discard(job.id)
        self.metrics.jobs.labels(job.endpoint_id, pending.outcome).inc()
        finished = self.store.get(job.id)
        if finished and finished.inference_time is not None:
            self.metrics.duration.labels(job.endpoint_id).observe(finished.inference_time)
        self.feed.publish(job.id)
        self.feed.forget(job.id)  # waiters re-read the job after every wake-up and see COMPLETED
        if finished and finished.webhook_url:
            self.webhooks.send(finished)

    def _retrying(self, what: str, job_id: str, write: Callable[[], T]) -> T:
        """Run a job-state write; on an OperationalError try again after each pause in retry_delays_s."""
        for delay in (*self.retry_delays_s, None):
            try:
                return write()
            except RETRYABLE as exc:
                if delay is None or self._stopping.is_set():
                    raise
                log.warning("job %s: writing its %s failed (%s); trying again in %.2f s", job_id, what, exc, delay)
                self._stopping.wait(delay)
        raise AssertionError("unreachable")

    def _finish_pending(self) -> None:
        """The finisher: writes finishes that failed, oldest first, backing off while the disk is full."""
        first_delay = self.retry_delays_s[-1] if self.retry_delays_s else 1.0
        while not self._stopping.is_set():
            try:
                pending = self._pending.get(timeout=1.0)  # wakes each second to notice stop()
            except queue.Empty:
                continue
            delay = first_delay
            while not self._stopping.is_set():
                try:
                    self._write_finish(pending)
                    log.info("job %s: its %s is recorded now", pending.job_id, pending.outcome)
                    break
                except RETRYABLE as exc:
                    log.warning("job %s: its %s still cannot be recorded (%s); next try in %.1f s",
                                pending.job_id, pending.outcome, exc, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, FINISHER_MAX_DELAY_S)
                except Exception:
                    log.exception("job %s: recording its %s failed; it ends with an internal error",
                                  pending.job_id, pending.outcome)
                    pending = _PendingFinish(pending.job, "error", None, "The job's result could not be recorded",
                                             "internal_error", 500)


def _remove_tree_contents(root: Path) -> None:
    if root.is_dir():
        for child in root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
