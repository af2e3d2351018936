"""Cluster mode: this node's part in several thorgen nodes behind one PostgreSQL queue.

- ``ClaimingLane``: a lane with Lane's interface whose workers claim the next job they can serve
  from the shared table (stores/postgres.py ``claim``) instead of popping a local heap.
- ``Cluster``: the heartbeat thread (registers this node: id, public URL, the endpoints it can serve
  now, its loaded models and lanes; ends the jobs of nodes that stopped beating; trusts the peers'
  file URLs) and the LISTEN thread (another node's change wakes this node's status streams, a queued
  job wakes its idle lane, a cancel reaches the node running the job).

A lost node's jobs: a job it had claimed but not started goes back to the queue; a job it was
running ends COMPLETED with an ``interrupted: node … lost`` error and is not re-run: it may have
been half-way through (files written, a webhook target called), and thorgen's single-machine
restart ends such a job the same way. The client submits it again if it wants to.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from thorgen.jobs.lanes import Workers
from thorgen.jobs.record import Job, Priority
from thorgen.jobs.stores.base import CANCEL_CHANNEL, JOBS_CHANNEL, QUEUE_CHANNEL, JobStore, StoreUnavailable

if TYPE_CHECKING:  # psycopg is imported only when a PostgreSQL database is configured
    from thorgen.jobs.service import JobService
    from thorgen.jobs.stores.postgres import PostgresJobStore

log = logging.getLogger("thorgen.cluster")

FEED_QUIET_S = 600.0  # other nodes' jobs' change counters are dropped after this long without news
POLL_S = 5.0  # an idle lane claims again after this even without a NOTIFY (one lost in a reconnect)


def default_node_id(port: int) -> str:
    return f"{socket.gethostname()}:{port}"


def cluster_for(service: JobService, store: JobStore) -> Cluster | None:
    """This node's cluster part when the store is the shared PostgreSQL one; None on one machine."""
    if not service.config.jobs.database:
        return None
    from thorgen.jobs.stores.postgres import PostgresJobStore

    assert isinstance(store, PostgresJobStore)
    return Cluster(service, store)


class ClaimingLane(Workers):
    """A lane whose workers claim their next job from the cluster's shared queue."""

    def __init__(self, name: str, workers: int, execute: Callable[[str], None], cluster: Cluster):
        super().__init__(name, workers, execute)
        self._cluster = cluster
        self._wakes = 0

    def put(self, job_id: str, priority: Priority, seq: int) -> None:
        self.wake()  # the job is in the table already; whichever node claims it first runs it

    def wake(self) -> None:
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()

    def remove(self, job_id: str) -> bool:
        return self._cluster.store.take_queued(job_id)

    def position(self, job_id: str) -> int | None:
        return self._cluster.store.queue_position(job_id)

    @property
    def depth(self) -> int:
        """The cluster's queued jobs of this lane as of the last heartbeat: /metrics reads it on the
        event loop, which must never wait on the database."""
        return self._cluster.queued.get(self.name, 0)

    def _idle(self, seen: int) -> None:
        """Wait for a wake-up after ``seen`` (a NOTIFY, a local submit), or POLL_S at most."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._wakes != seen, POLL_S)

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                seen = self._wakes
            try:
                claimed = self._cluster.claim(self.name)
            except StoreUnavailable:
                claimed = None
            except Exception:
                log.exception("lane %s: claiming a job failed", self.name)
                claimed = None
            if claimed is None:
                self._idle(seen)
                continue
            with self._cond:
                self.busy += 1
            self._run(claimed)

    def _done(self, job_id: str) -> None:
        self._cluster.release(job_id)


class Cluster:
    def __init__(self, service: JobService, store: PostgresJobStore):
        self.service = service
        self.store = store
        self.node_id = store.node_id
        self.settings = service.config.jobs
        self.public_url = service.default_base_url()
        self.lanes: dict[str, ClaimingLane] = {}
        self._held: set[str] = set()  # jobs this node claimed and has not finished with
        self._held_lock = threading.Lock()
        self._servable: dict[str, list[str]] = {}  # lane -> endpoint ids (aliases too) it can serve now
        self._hot: list[str] = []  # endpoint ids whose model is loaded here now
        self._elsewhere: dict[str, str] = {}  # endpoint id -> lane, served by a live peer
        self._nodes: list[dict[str, Any]] = []
        self.queued: dict[str, int] = {}  # lane -> queued jobs in the cluster, at the last heartbeat
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reachable = True
        # When this node's beats began to get through (monotonic), after a start or an outage. While
        # the database was unreachable nobody could beat, so every node looks overdue right after it
        # returns: a node judges others lost only once it has itself beaten for a whole timeout.
        self._beating_since: float | None = None
        service.metrics.registry.register(_ClusterCollector(self))

    def lane(self, name: str, workers: int) -> ClaimingLane:
        self.lanes[name] = ClaimingLane(name, workers, self.service._execute, self)
        return self.lanes[name]

    # -- lifecycle -----------------------------------------------------------------------------

    def recover(self) -> None:
        """After this node restarted: its running jobs are over, its unstarted claims go back."""
        for job in self.store.own_jobs(self.node_id):
            if job.started_at is not None:
                self._end(job, "The server restarted while this request was running; submit it again")
            elif job.cancel_requested:
                self.service.end_cancelled(job)
        self.store.release_claims(self.node_id)
        self.refresh()

    def start(self) -> None:
        self._stopping.clear()
        for target, name in ((self._beat_loop, "cluster-heartbeat"), (self._listen, "cluster-listen")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        # The node's row stays: another node (or this one, restarted under the same id) settles what
        # was still running once the beat is overdue.
        self._stopping.set()
        for thread in self._threads:
            thread.join(5.0)
        self._threads.clear()

    # -- claiming ------------------------------------------------------------------------------

    def claim(self, lane: str) -> str | None:
        endpoints = self._servable.get(lane, [])
        if not endpoints:
            return None
        claimed = self.store.claim(lane, endpoints, self._hot, self.settings.prefer_loaded_s)
        if claimed is None:
            return None
        job_id, cancel_asked = claimed
        with self._held_lock:
            self._held.add(job_id)
        if cancel_asked:  # asked between submit and claim: stop at the first step
            self.service.note_cancel(job_id)
        return job_id

    def release(self, job_id: str) -> None:
        with self._held_lock:
            self._held.discard(job_id)

    def lane_elsewhere(self, endpoint_id: str) -> str | None:
        """The lane of an endpoint this node cannot serve now but a live peer can (None: nobody can)."""
        return self._elsewhere.get(endpoint_id.strip("/"))

    # -- heartbeat -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """What this node can serve now (model installed and fitting), and which models are loaded."""
        registry = self.service.registry
        servable: dict[str, list[str]] = {}
        hot: list[str] = []
        loaded = set(self._loaded_models())
        for row in registry.listing():
            if not row["available"] or not self._fits(row["model"]):
                continue
            servable.setdefault(row["lane"], []).append(row["id"])
            if row["model"] in loaded:
                hot.append(row["id"])
        self._servable, self._hot = servable, hot

    def _fits(self, model: str | None) -> bool:
        """Whether this node's memory budget can ever hold the model (always, for no model)."""
        if model is None:
            return True
        try:
            self.service.runtime.check(model)
        except Exception:
            return False
        return True

    def _loaded_models(self) -> list[str]:
        return [model["name"] for model in self.service.runtime.snapshot().get("loaded", [])]

    def _beat_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.beat()
                if not self.reachable:
                    log.info("jobs database reachable again")
                self.reachable = True
            except StoreUnavailable as exc:
                if self.reachable:
                    log.warning("cluster heartbeat: %s", exc.detail)
                self.reachable = False
                self._beating_since = None
            except Exception:
                log.exception("cluster heartbeat failed")
            self._stopping.wait(self.settings.heartbeat_s)

    def beat(self) -> None:
        self.refresh()
        lanes = {name: {"workers": lane.workers, "busy": lane.busy} for name, lane in self.lanes.items()}
        endpoints = [(endpoint_id, lane) for lane, ids in self._servable.items() for endpoint_id in ids]
        loaded = sorted(self._loaded_models())
        self.store.heartbeat(self.node_id, self.public_url, endpoints, loaded, lanes)
        if self._beating_since is None:
            self._beating_since = time.monotonic()
        may_reap = time.monotonic() - self._beating_since >= self.settings.node_timeout_s
        nodes = self.store.nodes()
        self.queued = self.store.queued_by_lane()
        live = [n for n in nodes if n["beat_age_s"] <= self.settings.node_timeout_s]
        self._elsewhere = {endpoint_id: lane for n in live if n["id"] != self.node_id
                           for endpoint_id, lane in n["endpoints"]}
        self._trust_peers([n["public_url"] for n in nodes if n["id"] != self.node_id])
        reaped = set()
        for node in nodes:
            if may_reap and node["id"] != self.node_id and node["beat_age_s"] > self.settings.node_timeout_s:
                self._reap(node["id"])
                reaped.add(node["id"])
        self._nodes = [node for node in nodes if node["id"] not in reaped]  # what /info and /metrics show
        with self._held_lock:
            held = list(self._held)
        # Claims this node made but could not start (a start write that failed): back to the queue.
        self.store.release_claims(self.node_id, keep=held)
        for job_id in self.store.cancels_for(self.node_id):  # a cancel NOTIFY missed in a reconnect
            self.service.note_cancel(job_id)
        self.service.feed.forget_quiet(FEED_QUIET_S)

    def _reap(self, node_id: str) -> None:
        released = self.store.release_claims(node_id)
        ended = 0
        for job in self.store.own_jobs(node_id):
            if job.started_at is not None:
                self._end(job, f"interrupted: node {node_id} lost (no heartbeat for "
                               f"{self.settings.node_timeout_s:g} s) while running this request; submit it again")
                ended += 1
        self.store.forget_node(node_id)
        log.warning("node %s lost: %d running job(s) ended, %d claimed job(s) put back in the queue",
                    node_id, ended, released)

    def _end(self, job: Job, message: str) -> None:
        self.service.end_interrupted(job, message)

    def _trust_peers(self, urls: list[str]) -> None:
        """Peers' file URLs are fetched from them (not read from this node's disk), and the outbound
        policy lets exactly those host:port pairs through, whatever address they resolve to."""
        netlocs = set()
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            if parts.hostname:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                netlocs.add(f"{parts.hostname.lower()}:{port}")
        self.service.resolver.peer_netlocs = frozenset(netlocs)
        self.service.resolver.policy.peers = frozenset(netlocs)

    # -- LISTEN --------------------------------------------------------------------------------

    def _listen(self) -> None:
        self.store.listen((JOBS_CHANNEL, QUEUE_CHANNEL, CANCEL_CHANNEL), self._notified, self._stopping,
                          connected=self._reconnected)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            self.service.feed.publish(payload)
        elif channel == QUEUE_CHANNEL:
            lane = self.lanes.get(payload)
            if lane is not None:
                lane.wake()
        elif channel == CANCEL_CHANNEL:
            with self._held_lock:
                held = payload in self._held
            if held:
                self.service.note_cancel(payload)
            self.service.feed.publish(payload)

    def _reconnected(self) -> None:
        for lane in self.lanes.values():  # a job queued while the link was down is claimed now
            lane.wake()

    # -- /info ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "public_url": self.public_url,
            "database_reachable": self.reachable,
            "nodes": [
                {"id": n["id"], "public_url": n["public_url"], "loaded_models": n["loaded"], "lanes": n["lanes"],
                 "endpoints": len(n["endpoints"]), "beat_age_s": round(n["beat_age_s"], 1),
                 "alive": n["beat_age_s"] <= self.settings.node_timeout_s}
                for n in self._nodes
            ],
        }


class _ClusterCollector(Collector):
    """/metrics in cluster mode: this node's name, and every node's liveness and lanes by ``node`` label,
    as of the last heartbeat (a scrape never waits on the database)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("thorgen_node_info", "This node's id in the cluster", labels=["node", "public_url"])
        info.add_metric([self.cluster.node_id, self.cluster.public_url], 1)
        yield info
        yield GaugeMetricFamily("thorgen_jobs_database_reachable", "1 while the jobs database answers",
                                value=1 if self.cluster.reachable else 0)
        alive = GaugeMetricFamily("thorgen_cluster_node_alive", "1 while a node beats", labels=["node"])
        busy = GaugeMetricFamily("thorgen_cluster_node_jobs_running", "Jobs a node runs, by lane",
                                 labels=["node", "lane"])
        loaded = GaugeMetricFamily("thorgen_cluster_node_models_loaded", "Models a node has loaded", labels=["node"])
        for node in self.cluster._nodes:
            alive.add_metric([node["id"]], 1 if node["beat_age_s"] <= self.cluster.settings.node_timeout_s else 0)
            loaded.add_metric([node["id"]], len(node["loaded"]))
            for lane, state in node["lanes"].items():
                busy.add_metric([node["id"], lane], state.get("busy", 0))
        yield alive
        yield busy
        yield loaded
