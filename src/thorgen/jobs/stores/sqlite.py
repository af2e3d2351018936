"""SqliteJobStore: every job in one embedded SQLite database (WAL), so results outlive the process.

One connection guarded by a lock, shared by the event loop (status reads) and the lane workers
(state changes). Each statement is a primary-key read or a single-row write, so the lock is held
for microseconds. Status and result reads never read the job's input (it can be tens of MB); only
the worker that runs the job asks for it (``with_input=True``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
-- Inputs live apart from the job row: a column after a 30 MB input would make SQLite walk the
-- input's overflow pages on every status read. (jobs.input stays, empty, for older databases.)
CREATE TABLE IF NOT EXISTS job_inputs (
    job_id TEXT PRIMARY KEY,
    input BLOB NOT NULL
);
"""

_COLUMNS = (
    "seq, id, endpoint_id, {input}, lane, priority, state, base_url, webhook_url, output, error, "
    "error_type, error_status, cancel_requested, created_at, started_at, finished_at"
)
# A job stored before job_inputs existed has its input in jobs.input.
_WITH_INPUT = _COLUMNS.format(
    input="COALESCE((SELECT input FROM job_inputs WHERE job_id = jobs.id), jobs.input)")
_WITHOUT_INPUT = _COLUMNS.format(input="NULL")  # the row's shape stays the same; Job.input is None

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class SqliteJobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The sync level, chosen per write. In WAL mode NORMAL survives a killed process but may lose
        # the last commits on a power cut; FULL syncs the WAL to the disk at each commit (about 5 ms
        # here against 0.05 ms). A job's state changes (accepted, started, COMPLETED, cancel asked)
        # must outlive a power cut, so they commit with FULL (_state_change); progress log lines are
        # many, matter less, and commit with NORMAL — and the next FULL commit syncs them too.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _state_change(self) -> Iterator[sqlite3.Connection]:
        """The lock, with the connection at synchronous=FULL for the one commit made inside."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                yield self._db
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: Job) -> Job:
        with self._state_change() as db:
            db.execute("BEGIN")
            try:
                cursor = db.execute(
                    "INSERT INTO jobs (id, endpoint_id, input, lane, priority, state, base_url, "
                    "webhook_url, created_at) VALUES (?, ?, x'', ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.endpoint_id,
                        job.lane,
                        job.priority.value,
                        job.state.value,
                        job.base_url,
                        job.webhook_url,
                        job.created_at,
                    ),
                )
                db.execute("INSERT INTO job_inputs (job_id, input) VALUES (?, ?)", (job.id, _encode(job.input)))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself after some errors (SQLITE_FULL)
                    db.execute("ROLLBACK")
                raise
        job.seq = int(cursor.lastrowid or 0)
        return job

    def get(self, job_id: str, *, with_input: bool = False) -> Job | None:
        """A job as status and result need it; its input (None unless asked for) is for the worker."""
        columns = _WITH_INPUT if with_input else _WITHOUT_INPUT
        with self._lock:
            row = self._db.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def in_state(self, state: JobState) -> list[Job]:
        """Jobs in a state, oldest first, without their inputs."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_WITHOUT_INPUT} FROM jobs WHERE state = ? ORDER BY seq", (state.value,)
            ).fetchall()
        return [_job(row) for row in rows]

    def mark_started(self, job_id: str) -> bool:
        """IN_QUEUE -> IN_PROGRESS; False if the job was cancelled or finished meanwhile."""
        with self._state_change():
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
        with self._state_change():
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
        with self._state_change():
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

    # -- housekeeping (thorgen files prune, /info) --------------------------------------------

    def completed_before(self, cutoff: float) -> list[tuple[str, str, float]]:
        """(id, endpoint id, finished_at) of every job COMPLETED before ``cutoff``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, endpoint_id, finished_at FROM jobs WHERE state = ? AND finished_at < ? ORDER BY seq",
                (JobState.COMPLETED.value, cutoff),
            ).fetchall()
        return [(job_id, endpoint_id, finished_at) for job_id, endpoint_id, finished_at in rows]

    def stored_documents(self) -> list[tuple[str, bytes, bytes | None]]:
        """(id, input JSON, output JSON) of every job, undecoded: for finding the files jobs name."""
        with self._lock:
            return self._db.execute(
                "SELECT id, COALESCE((SELECT input FROM job_inputs WHERE job_id = jobs.id), jobs.input), output "
                "FROM jobs").fetchall()

    def delete_jobs(self, job_ids: list[str]) -> int:
        """Remove jobs and their logs in one transaction; only COMPLETED jobs are ever removed."""
        removed = 0
        with self._state_change() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for job_id in job_ids:
                    cursor = db.execute("DELETE FROM jobs WHERE id = ? AND state = ?",
                                        (job_id, JobState.COMPLETED.value))
                    if cursor.rowcount:
                        db.execute("DELETE FROM job_inputs WHERE job_id = ?", (job_id,))
                        db.execute("DELETE FROM logs WHERE job_id = ?", (job_id,))
                        removed += 1
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return removed

    def database_bytes(self) -> int:
        """The database's size on disk, its write-ahead log included."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except FileNotFoundError:
                pass
        return total

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
        input=None if input_ is None else _decode(input_),
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
