"""thorgen's own web console at ``/``: a page shell, its static ES modules and CSS, and one read API.

The page is plain ES modules and CSS served from this package (no build step, no CDN), so it works
offline on a Jetson. The shell and its assets are OPEN routes: they hold no data, and a browser must
load them to ask for the API key. Everything the page shows comes from the guarded APIs (/info,
/endpoints, /openapi.json, the queue protocol, and ``/console/api/jobs`` here), sent with the key.
"""

from __future__ import annotations

import importlib.metadata
import re
from importlib import resources
from typing import Any

from litestar import Request, Response, get

from thorgen.jobs.service import JobService
from thorgen.protocol.auth import OPEN, Auth
from thorgen.protocol.responses import json_response
from thorgen.version import __version__

SHELL = {OPEN: "the console's page shell: no data, only the key prompt and the scripts"}
ASSET = {OPEN: "the console's static scripts and styles: no data"}
# Only these names are served, so a request path can never reach another file of the package.
_ASSET_NAME = re.compile(r"^[a-z][a-z0-9-]*\.(js|css|svg)$")
_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
# Scripts and styles only from thorgen itself; pictures and players may load file URLs from a public_url.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src * data: blob:; media-src * blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_STEP = re.compile(r"^(?P<what>.+?) (?P<done>\d+)/(?P<total>\d+)$")
MAX_JOBS = 200


def _asset(name: str) -> bytes | None:
    if not _ASSET_NAME.match(name):
        return None
    path = resources.files(__package__).joinpath(name)
    return path.read_bytes() if path.is_file() else None


def _wants_html(accept: str | None) -> bool:
    """Content negotiation for ``/``: a browser's navigation asks for text/html first; fal's
    clients, curl and httpx send ``*/*`` or ``application/json`` and keep getting the JSON index."""
    for part in (accept or "").split(","):
        media_type = part.split(";")[0].strip().lower()
        if media_type == "text/html":
            return True
        if media_type == "application/json":
            return False
    return False


def build_console_routes(service: JobService, auth: Auth) -> list[Any]:
    def torch_version() -> str | None:
        try:  # the installed distribution's version, without importing torch into this room
            return importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return None

    torch = torch_version()

    @get("/", sync_to_thread=False, opt=SHELL)
    def index(request: Request[Any, Any, Any]) -> Response[bytes]:
        if _wants_html(request.headers.get("accept")):
            return Response(_shell(), media_type="text/html",
                            headers={"content-security-policy": _CSP, "cache-control": "no-cache",
                                     "x-content-type-options": "nosniff", "vary": "accept"})
        # The JSON index says what this server is and where to look: behind the key like /info.
        auth.check_header(request.headers.get("authorization"))
        response = json_response({
            "server": "thorgen", "version": __version__, "console": "/", "info": "/info",
            "endpoints": "/endpoints", "openapi": "/openapi.json", "health": "/health", "metrics": "/metrics",
            "fal_proxy": "/api/fal/proxy"})
        response.headers["vary"] = "accept"
        return response

    @get("/console/{name:str}", sync_to_thread=False, opt=ASSET)
    def asset(name: str) -> Response[bytes]:
        body = _asset(name)
        if body is None:
            return json_response({"detail": "Not found"}, status=404)
        return Response(body, media_type=_TYPES[name.rsplit(".", 1)[1]],
                        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})

    @get("/console/api/jobs", sync_to_thread=True)  # reads the job store: off the event loop
    def jobs(limit: int = 50) -> Response[bytes]:
        """Recent jobs from every client, newest first, with queue positions and step progress."""
        rows = service.store.recent(max(1, min(limit, MAX_JOBS)))
        for row in rows:
            row["queue_position"] = None
            row["progress"] = None
            if row["state"] == "IN_QUEUE" and row["lane"] in service.lanes:
                row["queue_position"] = service.lanes[row["lane"]].position(row["id"])
            elif row["state"] == "IN_PROGRESS":
                row["progress"] = _progress(service, row["id"])
        return json_response({"jobs": rows, "torch": torch})

    return [index, asset, jobs]


def _shell() -> bytes:
    return resources.files(__package__).joinpath("index.html").read_bytes()


def _progress(service: JobService, job_id: str) -> dict[str, Any] | None:
    """The last ``what done/total`` line a running job logged (JobContext.step writes them)."""
    for entry in reversed(service.store.logs(job_id)):
        match = _STEP.match(entry.message)
        if match:
            return {"what": match["what"], "done": int(match["done"]), "total": int(match["total"])}
    return None
