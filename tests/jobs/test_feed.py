"""ChangeFeed: the versions of jobs nobody waits for are dropped after a quiet spell (cluster mode
publishes every other node's change on every node)."""

from __future__ import annotations

from thorgen.jobs.feed import ChangeFeed


def test_quiet_versions_are_dropped_and_a_later_publish_still_wakes():
    feed = ChangeFeed()
    feed.publish("old")
    assert feed.forget_quiet(3600) == 0  # published just now: kept
    assert feed.forget_quiet(-1) == 1  # everything is "quiet" for a negative spell
    assert feed.version("old") == 0
    seen = feed.version("old")
    feed.publish("old")
    assert feed.wait("old", seen, timeout=0)  # the change after the drop is not missed
