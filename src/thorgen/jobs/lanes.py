"""Lanes: a priority queue of job ids and the worker threads that drain it.

The GPU lane has one worker (one pipeline call at a time); the utility lane has several, so ffmpeg
work never waits behind a long GPU job. Within a lane: ``normal`` before ``low``, then FIFO.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable

from thorgen.jobs.record import Priority

log = logging.getLogger("thorgen.lanes")

_RANK = {Priority.NORMAL: 0, Priority.LOW: 1}


class Workers:
    """Worker threads that run jobs one at a time each: what every kind of lane shares. A subclass
    says where the next job comes from (its ``_work`` loop) and calls ``_run`` with it."""

    def __init__(self, name: str, workers: int, execute: Callable[[str], None]):
        self.name = name
        self.workers = workers
        self.busy = 0
        self._execute = execute
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"lane-{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _work(self) -> None:
        raise NotImplementedError

    def _run(self, job_id: str) -> None:
        """Run one job the caller has counted in ``busy``; uncount it however it ends."""
        try:
            self._execute(job_id)
        except Exception:  # the service records job failures; this guards the worker itself
            log.exception("lane %s: worker error on job %s", self.name, job_id)
        finally:
            self._done(job_id)
            with self._cond:
                self.busy -= 1

    def _done(self, job_id: str) -> None:
        """After a job, before it leaves ``busy``: what the lane must let go of (nothing here)."""


class Lane(Workers):
    """This process's own queue: a heap of job ids drained by the workers."""

    def __init__(self, name: str, workers: int, execute: Callable[[str], None]):
        super().__init__(name, workers, execute)
        self._heap: list[tuple[int, int, str]] = []

    def put(self, job_id: str, priority: Priority, seq: int) -> None:
        with self._cond:
            heapq.heappush(self._heap, (_RANK[priority], seq, job_id))
            self._cond.notify()

    def remove(self, job_id: str) -> bool:
        """Take a job out before it starts. False if a worker already has it."""
        with self._cond:
            for index, entry in enumerate(self._heap):
                if entry[2] == job_id:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                    return True
        return False

    def position(self, job_id: str) -> int | None:
        """How many jobs run before this one (0 = next), or None if it is not waiting here."""
        with self._cond:
            for position, entry in enumerate(sorted(self._heap)):
                if entry[2] == job_id:
                    return position
        return None

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._heap)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                _, _, job_id = heapq.heappop(self._heap)
                self.busy += 1
            self._run(job_id)
