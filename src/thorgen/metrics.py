"""Prometheus metrics for /metrics: lanes, jobs, durations, and the loaded models against the budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from thorgen.models.runtime import ModelRuntime


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

    def watch_models(self, runtime: ModelRuntime) -> None:
        self.registry.register(_ModelCollector(runtime))


class _ModelCollector(Collector):
    """Read at scrape time from the swapper, so the numbers are never stale."""

    def __init__(self, runtime: ModelRuntime):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        if not self.runtime.started:
            return
        snap = self.runtime.swapper.snapshot()
        yield GaugeMetricFamily("thorgen_model_budget_bytes", "Memory budget for loaded models",
                                value=snap["budget_bytes"])
        yield GaugeMetricFamily("thorgen_model_held_bytes", "Bytes of all loaded models", value=snap["held_bytes"])
        loaded = GaugeMetricFamily("thorgen_model_bytes", "Bytes of each loaded model", labels=["model"])
        seconds = GaugeMetricFamily("thorgen_model_load_seconds", "How long each loaded model took to load",
                                    labels=["model"])
        for model in snap["loaded"]:
            loaded.add_metric([model["name"]], model["bytes"])
            seconds.add_metric([model["name"]], model["load_seconds"])
        yield loaded
        yield seconds
        yield CounterMetricFamily("thorgen_model_loads", "Model loads since start", value=snap["loads"])
        yield CounterMetricFamily("thorgen_model_evictions", "Models unloaded since start", value=snap["evictions"])
