"""FalCall: one fal API call, however it reached thorgen.

fal's clients address four services by host. thorgen answers all of them on one port, reached either
through the proxy protocol (any path, the real URL in ``x-fal-target-url``) or through a path prefix
(``/queue/…``, ``/run/…``, ``/rest/…``, ``/cdn/…``). Both become the same FalCall, so every handler is
written once.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Literal

from thorgen.errors import FalError

Service = Literal["queue", "run", "rest", "cdn"]

_HOSTS: dict[str, Service] = {
    "queue.fal.run": "queue",
    "queue.falrun.com": "queue",
    "fal.run": "run",
    "falrun.com": "run",
    "rest.fal.ai": "rest",
    "rest.alpha.fal.ai": "rest",
    "v3.fal.media": "cdn",
    "v3b.fal.media": "cdn",
}


@dataclass(frozen=True)
class FalCall:
    service: Service
    path: str  # without leading slash: "fal-ai/flux/dev", "storage/upload/initiate"
    query: dict[str, str]
    base_url: str  # where this client reaches thorgen, for every URL we hand back

    def queue_url(self, path: str) -> str:
        return f"{self.base_url}/queue/{path}"


def from_target_url(target: str, base_url: str) -> FalCall:
    """The proxy protocol: route on the URL the client meant to call."""
    try:
        parts = urllib.parse.urlsplit(target)
        hostname = parts.hostname  # parsed lazily: "https://[::1/x" raises only here
    except ValueError as exc:
        raise FalError(f"x-fal-target-url is not a URL: {exc}", status=400,
                       error_type="invalid_target_url") from None
    service = _HOSTS.get((hostname or "").lower())
    if service is None:
        raise FalError(
            f"x-fal-target-url must point at a fal host ({', '.join(sorted(_HOSTS))}); got "
            f"{(hostname or target)[:100]!r}",
            status=400,
            error_type="invalid_target_url",
        )
    return FalCall(service, parts.path.strip("/"), _query(parts.query), base_url)


def from_prefix(service: Service, path: str, query: str, base_url: str) -> FalCall:
    return FalCall(service, path.strip("/"), _query(query), base_url)


def _query(query: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
