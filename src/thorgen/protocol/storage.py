"""fal's storage API, answered locally: every upload lands in thorgen's MediaStore.

- JS client (and Python's ``repository="fal"``): ``POST rest…/storage/upload/initiate`` gives
  ``{upload_url, file_url}``; the client PUTs the raw bytes to ``upload_url`` (on thorgen).
  Over 90 MB the JS client uses ``initiate-multipart``: PUT ``{upload_url}/{n}`` per part, then
  POST ``{upload_url}/complete``.
- Python client (``fal_v3``): ``POST rest…/storage/auth/token`` gives a token, then
  ``POST {cdn}/files/upload`` with the raw bytes gives ``{access_url}``; over 100 MB
  ``POST {cdn}/files/upload/multipart``, PUT ``{access_url}/multipart/{id}/{n}``, POST ``…/complete``.

Every upload goes through a write-once target (media/uploads.py): an initiate call (or a CDN POST
under a valid token) creates it; upload URLs and upload ids carry the target's signed token with its
expiry, so they work without an Authorization header, accept one complete write, and expire after
``storage.upload_ttl_s``. A PUT to anything else is refused (403/409/410) and stores nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from litestar import Request, Response

from thorgen.errors import FalError, InputError
from thorgen.media.store import MediaStore, extension_for
from thorgen.media.uploads import UploadTargets
from thorgen.protocol.call import FalCall
from thorgen.protocol.responses import decode_json, json_response


class StorageApi:
    def __init__(self, media: MediaStore, targets: UploadTargets):
        self.media = media
        self.targets = targets

    # -- REST side (reached by path prefix /rest or through the proxy) -------------------------

    def handle_rest(self, call: FalCall, method: str, body: bytes) -> Response[bytes]:
        if method != "POST":
            raise FalError("Use POST", status=405, error_type="method_not_allowed")
        if call.path in ("storage/upload/initiate", "storage/upload/initiate-multipart"):
            return self.initiate(call, decode_json(body), multipart=call.path.endswith("multipart"))
        if call.path == "storage/auth/token":
            return self.token(call)
        raise FalError(f"No such storage call: {call.path[:100]!r}", status=404, error_type="not_found")

    def initiate(self, call: FalCall, request: Any, *, multipart: bool) -> Response[bytes]:
        if not isinstance(request, dict):
            raise InputError([], "Expected {content_type, file_name}", "dict_type")
        content_type = request.get("content_type")
        file_name = request.get("file_name")
        if content_type is not None and not isinstance(content_type, str):
            raise InputError("content_type", "Must be a string", "string_type")
        if file_name is not None and not isinstance(file_name, str):
            raise InputError("file_name", "Must be a string", "string_type")
        target = self.targets.create(extension_for(content_type, file_name))
        upload_url = f"{call.base_url}/uploads/{target.key}"
        if multipart:
            upload_url += "/multipart"
        return json_response({
            "upload_url": f"{upload_url}?token={target.token}",
            "file_url": self.media.url(target.key, call.base_url),
        })

    def token(self, call: FalCall) -> Response[bytes]:
        token, expires_at = self.targets.grant()
        stamp = dt.datetime.fromtimestamp(expires_at, dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return json_response({
            "token": token,
            "token_type": "Bearer",
            "base_url": f"{call.base_url}/cdn",
            "expires_at": stamp,
        })

    # -- CDN side (Python fal-client's v3 upload; prefix /cdn or the proxy) --------------------

    async def handle_cdn(self, call: FalCall, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Raw bytes in, ``{access_url}`` out; ``…/multipart`` starts a multipart upload instead."""
        _, _, grant = (request.headers.get("authorization") or "").partition(" ")
        self.targets.check_grant(grant.strip())
        if request.method != "POST" or call.path not in ("files/upload", "files/upload/multipart"):
            raise FalError(f"No such CDN call: {request.method} {call.path[:100]!r}", status=404,
                           error_type="not_found")
        name = request.headers.get("x-fal-file-name")
        target = self.targets.create(extension_for(request.headers.get("content-type"), name))
        access_url = self.media.url(target.key, call.base_url)
        if call.path.endswith("multipart"):
            return json_response({"access_url": access_url, "uploadId": target.token})
        await self.put_file(target.key, target.token, request)
        return json_response({"access_url": access_url})

    # -- byte transfers ------------------------------------------------------------------------

    async def put_file(self, key: str, token: str | None, request: Request[Any, Any, Any]) -> Path:
        """The target's one write: the request body becomes the file under ``key``."""
        return await self.targets.write(key, token, request.stream(), _declared_size(request))

    async def put_part(self, key: str, token: str | None, number: int,
                       request: Request[Any, Any, Any]) -> Response[bytes]:
        """One part of a multipart upload; both clients read its ETag (JS from the body)."""
        etag = await self.targets.put_part(key, token, number, request.stream(), _declared_size(request))
        response = json_response({"partNumber": number, "etag": etag})
        response.headers["etag"] = etag
        return response

    async def complete(self, key: str, token: str | None) -> Path:
        return await self.targets.complete(key, token)


def _declared_size(request: Request[Any, Any, Any]) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared and declared.isdigit() else None
