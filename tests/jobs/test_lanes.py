"""Lane ordering: normal before low, FIFO within a priority, and removal before start."""

from __future__ import annotations

import threading

from thorgen.jobs.lanes import Lane
from thorgen.jobs.record import Priority


def test_normal_runs_before_low_then_fifo():
    ran: list[str] = []
    gate = threading.Event()
    done = threading.Event()

    started = threading.Event()

    def execute(job_id: str) -> None:
        if job_id == "blocker":
            started.set()
            gate.wait(5)
        ran.append(job_id)
        if len(ran) == 5:
            done.set()

    lane = Lane("gpu", 1, execute)
    lane.start()
    lane.put("blocker", Priority.NORMAL, 0)
    assert started.wait(5)  # the worker has the blocker; the rest queue behind it
    lane.put("low-1", Priority.LOW, 1)
    lane.put("normal-1", Priority.NORMAL, 2)
    lane.put("low-2", Priority.LOW, 3)
    lane.put("normal-2", Priority.NORMAL, 4)
    assert lane.position("normal-1") == 0 and lane.position("low-2") == 3
    gate.set()
    assert done.wait(5)
    lane.stop()
    assert ran == ["blocker", "normal-1", "normal-2", "low-1", "low-2"]


def test_remove_takes_a_waiting_job_out():
    lane = Lane("utility", 1, lambda job_id: None)
    lane.put("a", Priority.NORMAL, 0)
    assert lane.remove("a") is True
    assert lane.remove("a") is False
    assert lane.depth == 0
