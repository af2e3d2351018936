"""Who may talk to thorgen from a browser: the Host and Origin rules, and the CORS answers.

thorgen is a local server that a browser on the same desk can reach, so any web page the owner opens
could try to drive it. One ASGI layer in front of every route enforces the trust model:

- Hosts: only requests whose ``Host`` is loopback, the host of ``server.public_url``, or listed in
  ``server.allowed_hosts`` are served (421 otherwise). This defeats DNS rebinding, where a page's own
  name is re-pointed at 127.0.0.1: its requests still carry its own name as Host. Because the Host has
  been checked, the URLs thorgen builds from it (status_url, file URLs) never name a foreign host.
  ``/health`` and ``/ready`` answer any Host: they disclose only "up" and "ready", and container and
  orchestrator probes often address thorgen by an IP nobody lists.
- Origins: a state-changing request (anything but GET, HEAD, OPTIONS) that carries an ``Origin`` must
  come from an origin in ``server.cors_origins`` or from thorgen's own origin (403 otherwise).
  Browsers always send Origin on such requests; fal's Python and Node clients, curl and server-side
  proxies send none and are judged by the API key alone.
- CORS: API responses name only allowed origins (never ``*``), with ``Vary: Origin``. Public file
  reads (GET/HEAD of ``/files/…`` and ``/cdn/…``) always answer ``Access-Control-Allow-Origin: *``,
  whether or not the request had an Origin: a response a ``<video>`` cached without CORS must still
  satisfy a later ``fetch()`` of the same URL. Files are capability URLs (unguessable keys) read
  without credentials, so ``*`` gives a page nothing it could not already load.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import cast

import msgspec
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

from thorgen.config import ServerConfig
from thorgen.errors import FalError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths answered to any Host (see the module docstring for why).
ANY_HOST_PATHS = frozenset({"/health", "/ready"})
# Public file reads: GET/HEAD under these prefixes (their PUT/POST are uploads, judged like the API).
FILE_PREFIXES = ("/files/", "/cdn/")
EXPOSED_HEADERS = "x-fal-request-id, x-fal-error-type, content-range, accept-ranges, content-length, etag"
PREFLIGHT_MAX_AGE = "600"
# A Host header is a name or an IP literal, then an optional port: nothing else may reach a URL.
_HOST = re.compile(r"^(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")


class TrustPolicy:
    """The Host and Origin rules for one server configuration (pure: no I/O, unit-testable)."""

    def __init__(self, server: ServerConfig):
        self.any_host = "*" in server.allowed_hosts
        self.hosts = {_normal_host(entry) for entry in server.allowed_hosts if entry != "*"}
        self.public_origin = ""
        if server.public_url:
            parts = urllib.parse.urlsplit(server.public_url)
            if parts.hostname:
                self.hosts.add(parts.hostname.lower())
                self.public_origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.any_origin = "*" in server.cors_origins
        self.origins = {origin.rstrip("/").lower() for origin in server.cors_origins if origin != "*"}

    def host_allowed(self, host: str | None) -> bool:
        """Loopback, the public URL's host, or a listed one. No Host at all (HTTP/1.0, some probes)
        passes: every browser sends one, and DNS rebinding needs a browser."""
        if host is None:
            return True
        match = _HOST.match(host)
        if match is None:
            return False
        if self.any_host:
            return True
        name = match.group("name").lower()
        return _is_loopback(name) or name in self.hosts or host.lower() in self.hosts

    def origin_allowed(self, origin: str, scheme: str, host: str | None) -> bool:
        """A configured origin, or thorgen's own (the page was served by the host it calls)."""
        origin = origin.rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        if self.public_origin and origin == self.public_origin:
            return True
        return host is not None and origin == f"{scheme}://{host}".lower()


def is_file_read(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and path.startswith(FILE_PREFIXES)


class TrustGate:
    """The ASGI layer that applies a TrustPolicy to every HTTP request before any route sees it."""

    def __init__(self, app: ASGIApp, policy: TrustPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # thorgen serves no websockets; lifespan never comes this way
            await self.app(scope, receive, send)
            return
        await self._http(cast(HTTPScope, scope), receive, send)

    async def _http(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        method: str = scope["method"]
        path: str = scope["path"]
        host = headers.get("host")
        if path not in ANY_HOST_PATHS and not self.policy.host_allowed(host):
            await _refuse(send, 421, "host_not_allowed",
                          f"Host {(host or '')[:100]!r} is not served by this thorgen. Add it to "
                          "server.allowed_hosts (THORGEN_SERVER__ALLOWED_HOSTS) or set server.public_url")
            return
        origin = headers.get("origin")
        preflight = method == "OPTIONS" and origin is not None and "access-control-request-method" in headers
        if preflight:
            assert origin is not None
            await self._preflight(scope, send, headers, origin)
            return
        allowed = origin is not None and self.policy.origin_allowed(origin, scope.get("scheme", "http"), host)
        if origin is not None and not allowed and method not in SAFE_METHODS:
            await _refuse(send, 403, "origin_not_allowed",
                          f"Requests from the web page at {origin[:100]!r} may not change anything on this "
                          "thorgen. Add that origin to server.cors_origins (THORGEN_SERVER__CORS_ORIGINS)")
            return
        if is_file_read(method, path):
            cors = [(b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode())]
        elif allowed:
            assert origin is not None
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"Origin")]
        else:
            # The answer still depends on Origin (another origin would get an allow header).
            cors = [(b"vary", b"Origin")]
        await self.app(scope, receive, _adding_headers(send, cors))

    async def _preflight(self, scope: HTTPScope, send: Send, headers: dict[str, str], origin: str) -> None:
        requested = headers["access-control-request-method"].upper()
        path: str = scope["path"]
        asked_headers = headers.get("access-control-request-headers", "")
        if is_file_read(requested, path):
            allow_origin, methods = "*", "GET, HEAD, OPTIONS"
        elif self.policy.origin_allowed(origin, scope.get("scheme", "http"), headers.get("host")):
            allow_origin, methods = origin, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        else:
            await _refuse(send, 403, "origin_not_allowed",
                          f"Cross-origin requests from {origin[:100]!r} are not allowed. Add that origin "
                          "to server.cors_origins (THORGEN_SERVER__CORS_ORIGINS)")
            return
        response = [
            (b"access-control-allow-origin", allow_origin.encode("latin-1")),
            (b"access-control-allow-methods", methods.encode()),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
            (b"vary", b"Origin"),
        ]
        if asked_headers:
            # Any request header may be sent: what a caller may do is decided by Origin and key.
            response.append((b"access-control-allow-headers", asked_headers.encode("latin-1")))
        await _answer(send, 204, response, b"")


def _headers(scope: HTTPScope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            current = list(message.get("headers") or [])
            names = {name.lower() for name, _ in extra}
            kept = [(name, value) for name, value in current
                    if name.lower() not in names or name.lower() == b"vary"]
            message["headers"] = kept + extra
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, error_type: str, detail: str) -> None:
    """A fal-style error body, written here because no route (and no exception handler) runs."""
    body = msgspec.json.encode(FalError(detail, status=status, error_type=error_type).body())
    await _answer(send, status, [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-fal-error-type", error_type.encode()),
        (b"vary", b"Origin"),
    ], body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _normal_host(entry: str) -> str:
    return entry.strip().lower().rstrip(".")


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if name.startswith("["):
        return address == ipaddress.IPv6Address("::1")
    return isinstance(address, ipaddress.IPv4Address) and address.is_loopback
