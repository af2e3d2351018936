"""Optional API-key check.

With no ``server.api_key`` set, thorgen is open (fal's JS client sends no Authorization unless given
credentials). With a key, API calls need ``Authorization: Key <key>`` (or ``Bearer``). Upload URLs and
CDN tokens carry their own signed, expiring token (media/uploads.py), because browsers PUT to them bare.
"""

from __future__ import annotations

import hmac

from thorgen.errors import FalError


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
