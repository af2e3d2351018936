"""The composition root: builds the registry (from the families), the model runtime (with their load
hooks and tiny builders), the job service, and the Litestar app — fal's routes, operations routes,
CORS, error shapes, and the lifespan."""

from __future__ import annotations

import asyncio
import logging
import platform
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from thorgen.config import Config
from thorgen.console import build_console_routes
from thorgen.errors import FalError, disk_full
from thorgen.families.registry import Registry
from thorgen.jobs.housekeeping import DiskUsage
from thorgen.jobs.record import JobState
from thorgen.jobs.service import JobService
from thorgen.metrics import Metrics
from thorgen.models.installed import all_model_status
from thorgen.models.runtime import TINY_NOTE, ModelRuntime
from thorgen.protocol.auth import OPEN, Auth
from thorgen.protocol.responses import error_response, json_response
from thorgen.protocol.routes import build_routes
from thorgen.protocol.trust import TrustGate, TrustPolicy
from thorgen.version import __version__

log = logging.getLogger("thorgen")


def build_app(config: Config, service: JobService | None = None) -> Litestar:
    if service is None:
        registry = Registry(config)
        runtime = ModelRuntime(config, registry.load_hooks(), registry.tiny_builder, registry.warm_ups())
        service = JobService(config, registry, Metrics(), runtime)
    auth = Auth(config.server.api_key)
    announced = threading.Event()  # set once the "N endpoints ready" line is logged, after warm-up
    disk = DiskUsage(service.store, service.media)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        service.feed.attach_loop(asyncio.get_running_loop())
        service.start()
        announce(config, service)
        threading.Thread(target=announce_ready, args=(service, announced), name="announce-ready",
                         daemon=True).start()
        try:
            yield
        finally:
            service.feed.attach_loop(None)
            service.stop()

    @get("/health", sync_to_thread=False, opt={OPEN: "liveness only"})
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @get("/ready", sync_to_thread=False, opt={OPEN: "readiness only"})
    def ready() -> Response[bytes]:
        # Ready once the models marked preload are loaded (and, in tiny mode, written) and the log
        # has said which endpoints are ready: a caller that waited for /ready finds that line there.
        is_ready = announced.is_set()
        return json_response({"ready": is_ready}, status=200 if is_ready else 503)

    @get("/info", sync_to_thread=True)  # reads the job store and the disk: off the event loop
    def info() -> dict[str, Any]:
        return describe(config, service, auth, disk)

    @get("/endpoints", sync_to_thread=False)
    def endpoints() -> dict[str, Any]:
        return {"endpoints": service.registry.listing()}

    @get("/openapi.json", sync_to_thread=False)
    def openapi() -> dict[str, Any]:
        return service.registry.openapi()

    # server.metrics_public lets a local Prometheus scrape without the key.
    @get("/metrics", sync_to_thread=False, media_type=CONTENT_TYPE_LATEST,
         opt={OPEN: "server.metrics_public"} if config.server.metrics_public else {})
    def metrics() -> bytes:
        return generate_latest(service.metrics.registry)

    app = Litestar(
        route_handlers=[health, ready, info, endpoints, openapi, metrics,
                        *build_routes(config, service, auth), *build_console_routes(service, auth)],
        lifespan=[lifespan],
        # With an API key, every route needs it unless it says (opt OPEN) what authorises it instead.
        guards=[auth.guard],
        exception_handlers={FalError: _fal_error, HTTPException: _http_error,
                            Exception: _unexpected_handler(config)},
        request_max_body_size=config.limits.max_request_bytes,
        openapi_config=None,
    )
    # Host, Origin and CORS rules go in front of the whole router, where Litestar puts its own CORS
    # layer: unmatched paths and error responses pass through them too.
    app.asgi_handler = TrustGate(app.asgi_handler, TrustPolicy(config.server))
    return app


def describe(config: Config, service: JobService, auth: Auth, disk: DiskUsage) -> dict[str, Any]:
    """What a frontend's "local mode" badge and an operator read: this is thorgen, and its state."""
    counts = service.store.count_by_state()
    return {
        "server": "thorgen",
        "local": True,
        "version": __version__,
        "machine": platform.machine(),
        "runtime": service.runtime.snapshot(),
        # Each family's own note (Family.safety_note): what checks, or does not check, its outputs.
        "safety_checkers": {family.name: family.safety_note(service.config)
                            for family in service.registry.families if family.safety_note is not None},
        "auth_required": auth.enabled,
        "lanes": {
            name: {"workers": lane.workers, "busy": lane.busy, "queued": lane.depth}
            for name, lane in service.lanes.items()
        },
        "jobs": {state.value: counts.get(state.value, 0) for state in JobState},
        "models": [vars(status) for status in all_model_status(config)],
        "endpoints": sum(1 for row in service.registry.listing() if row["available"]),
        "disk": disk.snapshot(),
        **({"cluster": service.cluster.describe()} if service.cluster is not None else {}),
    }


def announce(config: Config, service: JobService) -> None:
    """Say at start what is being prepared and what is missing, and how to get it. Which endpoints are
    ready is said by announce_ready, once the runtime's warm-up (tiny models, preloads) is over."""
    if config.server.host not in ("127.0.0.1", "localhost", "::1") and not config.server.api_key:
        log.warning("listening on %s with no API key: any machine that reaches it can run jobs; set "
                    "THORGEN_SERVER__API_KEY (README: Security)", config.server.host)
    for family in service.registry.families:
        if family.on_start is not None:
            family.on_start(config)
    if config.runtime.tiny:
        log.warning(TINY_NOTE)
        log.info("thorgen %s: preparing tiny models in %s (written once; /ready answers 503 until then)", __version__,
                 config.models_dir)
        return
    preload = [name for name in sorted(config.models) if config.models[name].preload]
    log.info("thorgen %s: starting%s", __version__,
             f"; loading preload models: {', '.join(preload)}" if preload else "")
    for status in all_model_status(config):
        if status.installed:
            log.info("model %s (%s): installed at %s", status.name, status.family, status.path)
        else:
            log.warning("model %s (%s): MISSING at %s; get it with: %s", status.name, status.family,
                        status.path, status.install_hint)


def announce_ready(service: JobService, announced: threading.Event) -> None:
    """After the warm-up: the endpoints that are ready now, then /ready answers 200."""
    service.runtime.ready.wait()
    try:
        available = [row["id"] for row in service.registry.listing() if row["available"]]
        log.info("thorgen %s: %d endpoints ready: %s", __version__, len(available), ", ".join(available))
    finally:
        announced.set()


def _fal_error(request: Request[Any, Any, Any], exc: FalError) -> Response[bytes]:
    return error_response(exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    error = FalError(exc.detail, status=exc.status_code, error_type="http_error")
    response = error_response(error)
    response.headers.update(exc.headers or {})
    return response


def _unexpected_handler(config: Config) -> Any:
    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        # A full disk (a file write or the jobs database, on any route) is a 507 naming the data folder.
        full = disk_full(exc, config.data_dir)
        if full is not None:
            log.error("%s %s: %s", request.method, request.url.path, full.detail)
            return error_response(full)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(FalError("Internal server error", status=500, error_type="internal_error"))

    return unexpected

