"""The job-store contract: what the job service, housekeeping, /info and the console ask of a store.

Two implementations: ``SqliteJobStore`` (one machine, the default) and ``PostgresJobStore`` (several
nodes behind one queue). SQL lives only in those two modules.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from thorgen.errors import FalError
from thorgen.jobs.record import Job, JobState, LogEntry

# LISTEN/NOTIFY channels of the PostgreSQL store (cluster mode).
JOBS_CHANNEL = "thorgen_jobs"  # payload: a job id whose state, output or logs changed
QUEUE_CHANNEL = "thorgen_queue"  # payload: a lane that has a job to claim
CANCEL_CHANNEL = "thorgen_cancel"  # payload: a job id whose cancel was asked for


class StoreUnavailable(FalError):
    """The jobs database cannot be reached now (PostgreSQL down or restarting): a 503 for queue calls.

    Files and /health never touch the job store, so they keep answering; the pool reconnects by
    itself once the database is back, and job-state writes made meanwhile are retried.
    """

    def __init__(self, reason: str):
        super().__init__(f"The jobs database is unreachable right now ({reason}); try again shortly",
                         status=503, error_type="jobs_database_unavailable")


# A job-state write that failed for one of these is tried again (service._retrying, the finisher).
RETRYABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError, StoreUnavailable)


class JobStore(Protocol):
    def close(self) -> None: ...

    def add(self, job: Job) -> Job: ...

    def get(self, job_id: str, *, with_input: bool = False) -> Job | None: ...

    def in_state(self, state: JobState) -> list[Job]: ...

    def mark_started(self, job_id: str) -> bool: ...

    def finish(self, job_id: str, *, output: dict[str, Any] | None = None, error: Any = None,
               error_type: str | None = None, error_status: int | None = None) -> bool: ...

    def request_cancel(self, job_id: str) -> None: ...

    def add_log(self, job_id: str, entry: LogEntry) -> None: ...

    def logs(self, job_id: str) -> list[LogEntry]: ...

    def count_by_state(self) -> dict[str, int]: ...

    def completed_before(self, cutoff: float) -> list[tuple[str, str, float]]: ...

    def stored_documents(self) -> list[tuple[str, bytes, bytes | None]]: ...

    def delete_jobs(self, job_ids: list[str]) -> int: ...

    def database_bytes(self) -> int: ...

    def recent(self, limit: int) -> list[dict[str, Any]]: ...
