"""The job record as stored and as the protocol layer reads it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    # fal's three states. There is no FAILED: a failed job is COMPLETED with an error.
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class Priority(StrEnum):
    NORMAL = "normal"
    LOW = "low"


@dataclass
class LogEntry:
    message: str
    level: str
    timestamp: float

    def to_fal(self) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.timestamp))
        millis = int((self.timestamp % 1) * 1000)
        return {
            "message": self.message,
            "level": self.level,
            "source": "USER",
            "timestamp": f"{stamp}.{millis:03d}Z",
        }


@dataclass
class Job:
    id: str
    endpoint_id: str  # the full id as submitted, sub-path included
    input: Any  # the request body; None when read for status or result (only the worker needs it)
    lane: str
    priority: Priority = Priority.NORMAL
    state: JobState = JobState.IN_QUEUE
    base_url: str = ""  # where the submitting client reached thorgen; file URLs are built on it
    webhook_url: str | None = None
    output: dict[str, Any] | None = None
    error: Any = None  # the ``detail`` of a failed job: a string, or a list of field errors
    error_type: str | None = None
    error_status: int | None = None  # HTTP status the result URL answers for a failed job
    cancel_requested: bool = False
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    seq: int = 0  # insertion order, for FIFO within a priority
    node_id: str | None = None  # cluster mode: the node that claimed the job (None on one machine)

    @property
    def failed(self) -> bool:
        return self.state is JobState.COMPLETED and self.error_status is not None

    @property
    def error_message(self) -> str | None:
        if self.error is None:
            return None
        if isinstance(self.error, list):
            parts = []
            for item in self.error:
                where = ".".join(str(p) for p in item.get("loc", [])[1:]) or "body"
                parts.append(f"{where}: {item.get('msg')}")
            return "; ".join(parts)
        return str(self.error)

    @property
    def inference_time(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 4)
