"""Models on the CPU leave one core to the event loop and the utility lane (tiny mode is on the CPU)."""

from __future__ import annotations

import os

import httpx


def test_tiny_mode_leaves_one_core_free_and_says_so(server):
    cores = len(os.sched_getaffinity(0))
    threads = httpx.get(f"{server.base_url}/info").json()["runtime"]["cpu_threads"]
    assert threads["models_on"] == "cpu" and threads["limited"] is True and threads["cores"] == cores
    # What torch reports back in the server process, not what was asked for.
    assert threads["intra_op"] == max(1, cores - 1)
    assert threads["inter_op"] == max(1, cores - 1)
    assert threads["gil_switch_interval_s"] < 0.005  # shorter than Python's default
    assert f"torch uses {max(1, cores - 1)} of {cores} cores" in server.log()
