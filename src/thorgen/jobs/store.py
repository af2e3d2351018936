"""JobStore: every job in one embedded SQLite database (WAL), so results outlive the process.

One connection guarded by a lock, shared by the event loop (status reads) and the lane workers
(state changes). Each statement is a primary-key read or a single-row write, so the lock is held
for microseconds; SQLite in WAL mode with synchronous=NORMAL survives a process kill.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from thorgen.jobs.record import Job, JobState, LogEntry, Priority

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL,
    input BLOB NOT NULL,
    lane TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    base_url TEXT NOT NULL,
    webhook_url TEXT,
    output BLOB,
    error BLOB,
    error_type TEXT,
    error_status INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS logs (
    job_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_job ON logs(job_id);
"""

_COLUMNS = (
    "seq, id, endpoint_id, input, lane, priority, state, base_url, webhook_url, output, error, "
    "error_type, error_status, cancel_requested, created_at, started_at, finished_at"
)

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: Job) -> Job:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO jobs (id, endpoint_id, input, lane, priority, state, base_url, "
                "webhook_url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.endpoint_id,
                    _encode(job.input),
                    job.lane,
                    job.priority.value,
                    job.state.value,
                    job.base_url,
                    job.webhook_url,
                    job.created_at,
                ),
            )
        job.seq = int(cursor.lastrowid or 0)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def in_state(self, state: JobState) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY seq", (state.value,)
            ).fetchall()
        return [_job(row) for row in rows]

    def mark_started(self, job_id: str) -> bool:
        """IN_QUEUE -> IN_PROGRESS; False if the job was cancelled or finished meanwhile."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, started_at = ? WHERE id = ? AND state = ?",
                (JobState.IN_PROGRESS.value, time.time(), job_id, JobState.IN_QUEUE.value),
            )
        return cursor.rowcount == 1

    def finish(
        self,
        job_id: str,
        *,
        output: dict[str, Any] | None = None,
        error: Any = None,
        error_type: str | None = None,
        error_status: int | None = None,
    ) -> bool:
        """Move a job to COMPLETED once; False if it already was."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, output = ?, error = ?, error_type = ?, error_status = ?, "
                "finished_at = ? WHERE id = ? AND state != ?",
                (
                    JobState.COMPLETED.value,
                    None if output is None else _encode(output),
                    None if error is None else _encode(error),
                    error_type,
                    error_status,
                    time.time(),
                    job_id,
                    JobState.COMPLETED.value,
                ),
            )
        return cursor.rowcount == 1

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def add_log(self, job_id: str, entry: LogEntry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (job_id, timestamp, level, message) VALUES (?, ?, ?, ?)",
                (job_id, entry.timestamp, entry.level, entry.message),
            )

    def logs(self, job_id: str) -> list[LogEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message, level, timestamp FROM logs WHERE job_id = ? ORDER BY rowid",
                (job_id,),
            ).fetchall()
        return [LogEntry(message=m, level=lv, timestamp=ts) for m, lv, ts in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest jobs, newest first, for the console's job list. Reads only the jobs table's
        small columns: a job's input is never selected or decoded here (it may be large, and the
        list does not show it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, endpoint_id, lane, priority, state, output, error, error_type, error_status, "
                "cancel_requested, created_at, started_at, finished_at FROM jobs ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"id": job_id, "endpoint_id": endpoint_id, "lane": lane, "priority": priority, "state": state,
             "output": None if output is None else _decode(output), "error": None if error is None else _decode(error),
             "error_type": error_type, "error_status": error_status, "cancel_requested": bool(cancel_requested),
             "created_at": created_at, "started_at": started_at, "finished_at": finished_at}
            for (job_id, endpoint_id, lane, priority, state, output, error, error_type, error_status,
                 cancel_requested, created_at, started_at, finished_at) in rows
        ]


def _job(row: tuple[Any, ...]) -> Job:
    (seq, job_id, endpoint_id, input_, lane, priority, state, base_url, webhook_url, output, error,
     error_type, error_status, cancel_requested, created_at, started_at, finished_at) = row
    return Job(
        id=job_id,
        endpoint_id=endpoint_id,
        input=_decode(input_),
        lane=lane,
        priority=Priority(priority),
        state=JobState(state),
        base_url=base_url,
        webhook_url=webhook_url,
        output=None if output is None else _decode(output),
        error=None if error is None else _decode(error),
        error_type=error_type,
        error_status=error_status,
        cancel_requested=bool(cancel_requested),
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        seq=seq,
    )
