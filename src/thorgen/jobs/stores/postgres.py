"""PostgresJobStore: the job store of a cluster, every node sharing one PostgreSQL database.

Why PostgreSQL and psycopg 3: row locks with ``FOR UPDATE SKIP LOCKED`` hand each queued job to
exactly one node without a coordinator, LISTEN/NOTIFY wakes the other nodes' status streams and idle
lanes without polling the table, and psycopg 3 is the maintained driver with a real connection pool
(psycopg_pool) that checks a connection before lending it, so a restarted server is reconnected to
by itself.

A job's life across nodes: ``add`` stores it IN_QUEUE with no node; a node's lane ``claim``s it
(``node_id`` set, still IN_QUEUE); that node's worker ``mark_started``s it (IN_PROGRESS) and later
``finish``es it. A cancel of a job nobody has claimed takes it (``take_queued``); otherwise the
claiming node learns of it (NOTIFY on ``thorgen_cancel``) and stops at the job's next step.
Every state change and log line sends ``NOTIFY thorgen_jobs, '<id>'`` in its own transaction.

Every database failure (server down, restarting, unreachable) is raised as ``StoreUnavailable``,
a 503 for queue calls and a retried write for the workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from thorgen.jobs.record import Job, JobState, LogEntry, Priority
from thorgen.jobs.stores.base import CANCEL_CHANNEL, JOBS_CHANNEL, QUEUE_CHANNEL, StoreUnavailable

log = logging.getLogger("thorgen.jobs.postgres")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS thorgen_jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL,
    lane TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    base_url TEXT NOT NULL,
    webhook_url TEXT,
    output BYTEA,
    error BYTEA,
    error_type TEXT,
    error_status INTEGER,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    node_id TEXT,
    -- the database's clock, not the submitting node's: the claim's fairness bound compares with it
    enqueued TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS thorgen_jobs_unclaimed ON thorgen_jobs (lane, seq)
    WHERE state = 'IN_QUEUE' AND node_id IS NULL;
CREATE INDEX IF NOT EXISTS thorgen_jobs_node ON thorgen_jobs (node_id) WHERE state != 'COMPLETED';
CREATE INDEX IF NOT EXISTS thorgen_jobs_state ON thorgen_jobs (state);
CREATE TABLE IF NOT EXISTS thorgen_job_inputs (
    job_id TEXT PRIMARY KEY,
    input BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS thorgen_logs (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS thorgen_logs_job ON thorgen_logs (job_id, id);
CREATE TABLE IF NOT EXISTS thorgen_nodes (
    id TEXT PRIMARY KEY,
    public_url TEXT NOT NULL,
    endpoints JSONB NOT NULL,   -- [[endpoint id, lane], ...] the node can serve now
    loaded JSONB NOT NULL,      -- model names loaded now
    lanes JSONB NOT NULL,       -- {lane: {"workers": n, "busy": n}}
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    beat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
_SCHEMA_LOCK = 7_346_021  # an advisory lock id: two nodes starting at once create the schema one by one

_COLUMNS = ("seq, id, endpoint_id, {input}, lane, priority, state, base_url, webhook_url, output, error, "
            "error_type, error_status, cancel_requested, created_at, started_at, finished_at, node_id")
_WITH_INPUT = _COLUMNS.format(input="(SELECT input FROM thorgen_job_inputs WHERE job_id = j.id)")
_WITHOUT_INPUT = _COLUMNS.format(input="NULL::bytea")

_encode = msgspec.json.encode
_decode = msgspec.json.decode

Notify = Callable[[str, str], None]  # (channel, payload)


class PostgresJobStore:
    def __init__(self, url: str, node_id: str, *, connect_timeout_s: float = 3.0, wait_s: float = 5.0,
                 pool_size: int = 8):
        self.url = url
        self.node_id = node_id  # this process's node: it claims, starts and takes jobs under this name
        self._timeout = connect_timeout_s
        # How long a call waits for a pooled connection before its 503: longer than one connect, so a
        # call just after the server is back waits for the reconnect instead of failing beside it.
        self._wait = wait_s
        self._pool = ConnectionPool(
            # Two kept open: the lanes' claim loop holds one often, and a request should find another.
            url, min_size=2, max_size=pool_size, open=False, name="thorgen-jobs",
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_s))},
            # A connection the server dropped (a restart) is found out before it is lent, not by a query.
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,  # the pool keeps trying for ever; callers get 503 meanwhile
        )
        self._pool.open(wait=False)
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        try:
            with self._pool.connection(timeout=self._wait) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(_reason(exc)) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # A connection the server dropped: weed out any other dropped ones still idle in the pool
            # now, so the caller's retry (or the next request) gets a live one.
            try:
                self._pool.check()
            except Exception as check_failed:  # the server is still away: the pool reconnects later
                log.debug("jobs database: checking the pool failed: %s", _reason(check_failed))
            raise StoreUnavailable(_reason(exc)) from exc

    def close(self) -> None:
        self._pool.close()

    # -- the contract (stores/base.py) --------------------------------------------------------

    def add(self, job: Job) -> Job:
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO thorgen_jobs (id, endpoint_id, lane, priority, state, base_url, webhook_url, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
                (job.id, job.endpoint_id, job.lane, job.priority.value, job.state.value, job.base_url,
                 job.webhook_url, job.created_at)).fetchone()
            conn.execute("INSERT INTO thorgen_job_inputs (job_id, input) VALUES (%s, %s)", (job.id, _encode(job.input)))
            conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, job.lane))
        assert row is not None
        job.seq = int(row[0])
        return job

    def get(self, job_id: str, *, with_input: bool = False) -> Job | None:
        columns = _WITH_INPUT if with_input else _WITHOUT_INPUT
        with self._connection() as conn:
            row = conn.execute(f"SELECT {columns} FROM thorgen_jobs j WHERE id = %s", (job_id,)).fetchone()
        return _job(row) if row else None

    def in_state(self, state: JobState) -> list[Job]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_WITHOUT_INPUT} FROM thorgen_jobs j WHERE state = %s ORDER BY seq",
                                (state.value,)).fetchall()
        return [_job(row) for row in rows]

    def mark_started(self, job_id: str) -> bool:
        """IN_QUEUE -> IN_PROGRESS, only while this node holds the claim: a node that stalled past its
        timeout finds its claim released (and maybe taken by another node) and does not start the job."""
        return self._change(
            job_id, "UPDATE thorgen_jobs SET state = %s, started_at = %s WHERE id = %s AND state = %s "
            "AND node_id = %s",
            (JobState.IN_PROGRESS.value, time.time(), job_id, JobState.IN_QUEUE.value, self.node_id))

    def finish(self, job_id: str, *, output: dict[str, Any] | None = None, error: Any = None,
               error_type: str | None = None, error_status: int | None = None) -> bool:
        return self._change(
            job_id, "UPDATE thorgen_jobs SET state = %s, output = %s, error = %s, error_type = %s, "
            "error_status = %s, finished_at = %s WHERE id = %s AND state != %s",
            (JobState.COMPLETED.value, None if output is None else _encode(output),
             None if error is None else _encode(error), error_type, error_status, time.time(), job_id,
             JobState.COMPLETED.value))

    def request_cancel(self, job_id: str) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("UPDATE thorgen_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
            conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, job_id))

    def add_log(self, job_id: str, entry: LogEntry) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("INSERT INTO thorgen_logs (job_id, timestamp, level, message) VALUES (%s, %s, %s, %s)",
                         (job_id, entry.timestamp, entry.level, entry.message))
            conn.execute("SELECT pg_notify(%s, %s)", (JOBS_CHANNEL, job_id))

    def logs(self, job_id: str) -> list[LogEntry]:
        with self._connection() as conn:
            rows = conn.execute("SELECT message, level, timestamp FROM thorgen_logs WHERE job_id = %s ORDER BY id",
                                (job_id,)).fetchall()
        return [LogEntry(message=m, level=lv, timestamp=ts) for m, lv, ts in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._connection() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM thorgen_jobs GROUP BY state").fetchall()
        return {state: int(count) for state, count in rows}

    def completed_before(self, cutoff: float) -> list[tuple[str, str, float]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, endpoint_id, finished_at FROM thorgen_jobs WHERE state = %s AND finished_at < %s "
                "ORDER BY seq", (JobState.COMPLETED.value, cutoff)).fetchall()
        return [(job_id, endpoint_id, finished_at) for job_id, endpoint_id, finished_at in rows]

    def stored_documents(self) -> list[tuple[str, bytes, bytes | None]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT j.id, i.input, j.output FROM thorgen_jobs j JOIN thorgen_job_inputs i ON i.job_id = j.id"
            ).fetchall()
        return [(job_id, bytes(input_), None if output is None else bytes(output)) for job_id, input_, output in rows]

    def delete_jobs(self, job_ids: list[str]) -> int:
        with self._connection() as conn, conn.transaction():
            rows = conn.execute("DELETE FROM thorgen_jobs WHERE id = ANY(%s) AND state = %s RETURNING id",
                                (job_ids, JobState.COMPLETED.value)).fetchall()
            removed = [row[0] for row in rows]
            conn.execute("DELETE FROM thorgen_job_inputs WHERE job_id = ANY(%s)", (removed,))
            conn.execute("DELETE FROM thorgen_logs WHERE job_id = ANY(%s)", (removed,))
        return len(removed)

    def database_bytes(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, endpoint_id, lane, priority, state, output, error, error_type, error_status, "
                "cancel_requested, created_at, started_at, finished_at, node_id FROM thorgen_jobs "
                "ORDER BY seq DESC LIMIT %s", (limit,)).fetchall()
        return [
            {"id": job_id, "endpoint_id": endpoint_id, "lane": lane, "priority": priority, "state": state,
             "output": None if output is None else _decode(output), "error": None if error is None else _decode(error),
             "error_type": error_type, "error_status": error_status, "cancel_requested": bool(cancel_requested),
             "created_at": created_at, "started_at": started_at, "finished_at": finished_at, "node_id": node_id}
            for (job_id, endpoint_id, lane, priority, state, output, error, error_type, error_status,
                 cancel_requested, created_at, started_at, finished_at, node_id) in rows
        ]

    # -- the cluster's own calls (jobs/cluster.py) --------------------------------------------

    def claim(self, lane: str, endpoints: list[str], hot: list[str],
              prefer_hot_s: float) -> tuple[str, bool] | None:
        """Give this node the next queued job of ``lane`` it can serve: (id, cancel asked) or None.

        Order: ``normal`` before ``low``; then jobs for an endpoint in ``hot`` (its model is loaded
        here) before the others, but only while those others have waited less than ``prefer_hot_s``:
        after that they rank with the hot ones by age, so a cold job waits at most ``prefer_hot_s``
        plus the jobs ahead of it in plain FIFO. SKIP LOCKED: two nodes claiming at once each take a
        different row; the outer WHERE re-checks the row once locked, so a claimed row is never taken twice.
        """
        with self._connection() as conn:
            row = conn.execute(
                "UPDATE thorgen_jobs SET node_id = %(node)s WHERE seq = ("
                " SELECT seq FROM thorgen_jobs WHERE state = 'IN_QUEUE' AND node_id IS NULL AND lane = %(lane)s"
                "  AND endpoint_id = ANY(%(endpoints)s)"
                " ORDER BY priority = 'low',"
                "  NOT (endpoint_id = ANY(%(hot)s) OR enqueued < now() - make_interval(secs => %(prefer)s)),"
                "  seq"
                " LIMIT 1 FOR UPDATE SKIP LOCKED"
                ") AND state = 'IN_QUEUE' AND node_id IS NULL RETURNING id, cancel_requested",
                {"node": self.node_id, "lane": lane, "endpoints": endpoints, "hot": hot, "prefer": prefer_hot_s},
            ).fetchone()
        return (row[0], bool(row[1])) if row else None

    def take_queued(self, job_id: str) -> bool:
        """Take a job nobody has claimed out of the queue (a cancel); False if a node has it."""
        with self._connection() as conn:
            cursor = conn.execute(
                "UPDATE thorgen_jobs SET node_id = %s WHERE id = %s AND state = 'IN_QUEUE' AND node_id IS NULL",
                (self.node_id, job_id))
        return cursor.rowcount == 1

    def queue_position(self, job_id: str) -> int | None:
        """How many unclaimed jobs of its lane rank before this one (0 = next), or None if not waiting."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM thorgen_jobs o WHERE o.state = 'IN_QUEUE' AND o.node_id IS NULL"
                " AND o.lane = j.lane AND (o.priority = 'low', o.seq) < (j.priority = 'low', j.seq))"
                " FROM thorgen_jobs j WHERE j.id = %s AND j.state = 'IN_QUEUE' AND j.node_id IS NULL",
                (job_id,)).fetchone()
        return int(row[0]) if row else None

    def queued_by_lane(self) -> dict[str, int]:
        """Queued jobs (claimed or not) per lane, over the whole cluster."""
        with self._connection() as conn:
            rows = conn.execute("SELECT lane, COUNT(*) FROM thorgen_jobs WHERE state = 'IN_QUEUE' GROUP BY lane"
                                ).fetchall()
        return {lane: int(count) for lane, count in rows}

    def cancels_for(self, node_id: str) -> list[str]:
        """Jobs this node holds whose cancel was asked for (a missed NOTIFY is caught up at each beat)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT id FROM thorgen_jobs WHERE node_id = %s AND state != 'COMPLETED' "
                                "AND cancel_requested", (node_id,)).fetchall()
        return [row[0] for row in rows]

    def own_jobs(self, node_id: str) -> list[Job]:
        """This node's unfinished jobs (claimed or running), for its recovery after a restart."""
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_WITHOUT_INPUT} FROM thorgen_jobs j WHERE node_id = %s "
                                "AND state != 'COMPLETED' ORDER BY seq", (node_id,)).fetchall()
        return [_job(row) for row in rows]

    def release_claims(self, node_id: str, keep: list[str] | None = None) -> int:
        """Put back the jobs a node claimed but never started (it died or restarted in between, or its
        start could not be written), except those in ``keep`` (its workers hold them now)."""
        with self._connection() as conn, conn.transaction():
            rows = conn.execute("UPDATE thorgen_jobs SET node_id = NULL WHERE node_id = %s AND state = 'IN_QUEUE' "
                                "AND NOT cancel_requested AND NOT id = ANY(%s) RETURNING lane",
                                (node_id, keep or [])).fetchall()
            for lane in {row[0] for row in rows}:
                conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, lane))
        return len(rows)

    def heartbeat(self, node_id: str, public_url: str, endpoints: list[tuple[str, str]], loaded: list[str],
                  lanes: dict[str, Any]) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO thorgen_nodes (id, public_url, endpoints, loaded, lanes) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET public_url = EXCLUDED.public_url, endpoints = EXCLUDED.endpoints, "
                "loaded = EXCLUDED.loaded, lanes = EXCLUDED.lanes, beat_at = now()",
                (node_id, public_url, _encode(endpoints).decode(), _encode(loaded).decode(),
                 _encode(lanes).decode()))

    def nodes(self) -> list[dict[str, Any]]:
        """Every registered node with its last beat's age in seconds (by the database's clock)."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, public_url, endpoints, loaded, lanes, EXTRACT(EPOCH FROM now() - beat_at) "
                "FROM thorgen_nodes ORDER BY id").fetchall()
        return [{"id": node_id, "public_url": url, "endpoints": endpoints, "loaded": loaded, "lanes": lanes,
                 "beat_age_s": float(age)} for node_id, url, endpoints, loaded, lanes, age in rows]

    def forget_node(self, node_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM thorgen_nodes WHERE id = %s", (node_id,))

    def listen(self, channels: tuple[str, ...], handle: Notify, stopping: threading.Event,
               connected: Callable[[], None] = lambda: None) -> None:
        """Deliver NOTIFYs on ``channels`` to ``handle`` until ``stopping`` is set; reconnects by itself.

        A dedicated connection (LISTEN holds it). ``connected`` runs after each (re)connection: what
        was notified while the link was down is lost, so the caller catches up then.
        """
        delay = 0.2
        while not stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))) as conn:
                    for channel in channels:
                        conn.execute(f'LISTEN "{channel}"')
                    delay = 0.2
                    connected()
                    while not stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            handle(note.channel, note.payload)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("jobs database: the LISTEN connection dropped (%s); reconnecting", _reason(exc))
                stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    # -- helpers -------------------------------------------------------------------------------

    def _change(self, job_id: str, sql: str, params: tuple[Any, ...]) -> bool:
        """One job-row UPDATE and its NOTIFY in one transaction; True if a row changed."""
        with self._connection() as conn, conn.transaction():
            cursor = conn.execute(sql, params)
            if cursor.rowcount == 1:
                conn.execute("SELECT pg_notify(%s, %s)", (JOBS_CHANNEL, job_id))
        return cursor.rowcount == 1


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _job(row: tuple[Any, ...]) -> Job:
    (seq, job_id, endpoint_id, input_, lane, priority, state, base_url, webhook_url, output, error,
     error_type, error_status, cancel_requested, created_at, started_at, finished_at, node_id) = row
    return Job(
        id=job_id, endpoint_id=endpoint_id, input=None if input_ is None else _decode(input_), lane=lane,
        priority=Priority(priority), state=JobState(state), base_url=base_url, webhook_url=webhook_url,
        output=None if output is None else _decode(output), error=None if error is None else _decode(error),
        error_type=error_type, error_status=error_status, cancel_requested=bool(cancel_requested),
        created_at=created_at, started_at=started_at, finished_at=finished_at, seq=seq, node_id=node_id,
    )
