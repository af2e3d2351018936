"""ChangeFeed: wakes whoever waits on a job (SSE streams, sync runs, the in-process client).

Workers publish from their threads; waiters may be asyncio tasks on the server's loop or plain
threads. A waiter reads the job's version, reads the job, then waits for the version to move, so a
change that lands between the read and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict


class ChangeFeed:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: defaultdict[str, int] = defaultdict(int)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._touched: dict[str, float] = {}  # job id -> monotonic time of its last publish

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop

    def version(self, job_id: str) -> int:
        with self._cond:
            return self._versions.get(job_id, 0)

    def publish(self, job_id: str) -> None:
        with self._cond:
            self._versions[job_id] += 1
            self._touched[job_id] = time.monotonic()
            self._cond.notify_all()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake, job_id)
            except RuntimeError:  # loop shutting down
                pass

    def forget(self, job_id: str) -> None:
        with self._cond:
            self._versions.pop(job_id, None)
            self._touched.pop(job_id, None)

    def forget_quiet(self, older_than_s: float) -> int:
        """Drop the versions of jobs not published for ``older_than_s``: in cluster mode every other
        node's change is published here, most for jobs nobody on this node waits for. A waiter was
        woken when that last publish came; at worst it wakes once more for nothing."""
        cutoff = time.monotonic() - older_than_s
        with self._cond:
            quiet = [job_id for job_id, at in self._touched.items() if at < cutoff]
            for job_id in quiet:
                self._versions.pop(job_id, None)
                del self._touched[job_id]
        return len(quiet)

    def wait(self, job_id: str, seen: int, timeout: float) -> bool:
        """Block a thread until the job's version passes ``seen``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._versions.get(job_id, 0) != seen, timeout)

    async def wait_async(self, job_id: str, seen: int, timeout: float) -> bool:
        """Same for a coroutine on the attached loop."""
        if self.version(job_id) != seen:
            return True
        event = self._events.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return self.version(job_id) != seen

    def _wake(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()
