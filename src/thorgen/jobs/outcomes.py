"""What a job's record means to whoever asked for it: not found, still running, failed, or its output.

One home for these answers, used by fal's HTTP queue routes (protocol/queue.py) and by the
in-process ``thorgen.Client`` alike, so both say the same thing with the same status and type.
"""

from __future__ import annotations

from typing import Any

from thorgen.errors import FalError
from thorgen.jobs.record import Job, JobState


def found(job: Job | None, request_id: str) -> Job:
    """The job, or a 404 naming the id (cut to 64 characters: it came from the caller)."""
    if job is None:
        raise FalError(f"Request '{request_id[:64]}' not found", status=404, error_type="request_not_found")
    return job


def finished(job: Job) -> Job:
    """The job once it has ended (with an output or an error); a 400 while it is queued or running."""
    if job.state is not JobState.COMPLETED:
        raise FalError("Request is still in progress", status=400, error_type="request_in_progress")
    return job


def failure(job: Job) -> FalError | None:
    """A failed job's error as fal sends it; None for a job that succeeded."""
    if not job.failed:
        return None
    return FalError(job.error, status=job.error_status or 500, error_type=job.error_type or "internal_error")


def output(job: Job) -> dict[str, Any]:
    """A finished job's output, or its error raised."""
    error = failure(job)
    if error is not None:
        raise error
    assert job.output is not None
    return job.output
