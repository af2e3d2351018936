"""Prometheus metrics for /metrics: queue depth per lane, job counts, durations and failures."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "thorgen_queue_depth", "Jobs waiting in a lane", ["lane"], registry=self.registry
        )
        self.running = Gauge(
            "thorgen_jobs_running", "Jobs running in a lane", ["lane"], registry=self.registry
        )
        self.jobs = Counter(
            "thorgen_jobs", "Finished jobs by endpoint and outcome (ok, error, cancelled, interrupted)",
            ["endpoint", "outcome"], registry=self.registry,
        )
        self.duration = Histogram(
            "thorgen_job_duration_seconds", "Run time of finished jobs", ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
