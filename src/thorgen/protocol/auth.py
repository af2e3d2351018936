"""Optional API-key check.

With no ``server.api_key`` set, thorgen is open (fal's JS client sends no Authorization unless given
credentials). With a key, every route except /health and /ready needs ``Authorization: Key <key>`` (or
``Bearer``), enforced by one guard; file downloads are public (capability URLs), and upload URLs and
CDN tokens carry their own signed, expiring token (media/uploads.py), because browsers PUT to them bare.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from thorgen.errors import FalError

# A route handler's ``opt`` key saying why it needs no API key (what authorises it instead).
OPEN = "open_without_key"


class Auth:
    def __init__(self, api_key: str):
        self._key = api_key.encode()

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    def check_header(self, authorization: str | None) -> None:
        if not self._key:
            return
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() in ("key", "bearer") and hmac.compare_digest(credential.strip().encode(), self._key):
            return
        raise FalError("Missing or wrong credentials: send 'Authorization: Key <THORGEN_SERVER__API_KEY>'",
                       status=401, error_type="unauthorized")

    def guard(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Litestar guard on every route: the key is needed unless the route is marked OPEN."""
        if OPEN not in handler.opt:
            self.check_header(connection.headers.get("authorization"))
