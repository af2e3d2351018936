"""fal's storage API, answered locally: every upload lands in thorgen's MediaStore.

- JS client (and Python's ``repository="fal"``): ``POST rest…/storage/upload/initiate`` gives
  ``{upload_url, file_url}``; the client PUTs the raw bytes to ``upload_url`` (on thorgen).
  Over 90 MB the JS client uses ``initiate-multipart``: PUT ``{upload_url}/{n}`` per part, then
  POST ``{upload_url}/complete``.
- Python client (``fal_v3``): ``POST rest…/storage/auth/token`` gives a token, then
  ``POST {cdn}/files/upload`` with the raw bytes gives ``{access_url}``; over 100 MB
  ``POST {cdn}/files/upload/multipart``, PUT ``{access_url}/multipart/{id}/{n}``, POST ``…/complete``.
Upload URLs and tokens carry a signature, so they work without an Authorization header.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from litestar import Request, Response

from thorgen.errors import FalError, InputError
from thorgen.media.store import MediaStore, extension_for
from thorgen.protocol.auth import Auth
from thorgen.protocol.call import FalCall
from thorgen.protocol.responses import decode_json, json_response

TOKEN_LIFETIME = dt.timedelta(hours=12)
MAX_PARTS = 10_000


class StorageApi:
    def __init__(self, media: MediaStore, auth: Auth, scratch: Path, max_upload_bytes: int):
        self.media = media
        self.auth = auth
        self.parts_root = scratch / "multipart"
        self.max_upload_bytes = max_upload_bytes

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
        key = self.media.new_key(extension_for(content_type, file_name))
        upload_url = f"{call.base_url}/uploads/{key}"
        if multipart:
            upload_url += "/multipart"
        return json_response({
            "upload_url": f"{upload_url}?token={self.auth.sign(key)}",
            "file_url": self.media.url(key, call.base_url),
        })

    def token(self, call: FalCall) -> Response[bytes]:
        expires = (dt.datetime.now(dt.UTC) + TOKEN_LIFETIME).replace(microsecond=0)
        stamp = expires.isoformat().replace("+00:00", "Z")
        return json_response({
            "token": f"{stamp}.{self.auth.sign(stamp)}",
            "token_type": "Bearer",
            "base_url": f"{call.base_url}/cdn",
            "expires_at": stamp,
        })

    # -- CDN side (Python fal-client's v3 upload; prefix /cdn or the proxy) --------------------

    async def handle_cdn(self, call: FalCall, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Raw bytes in, ``{access_url}`` out; ``…/multipart`` starts a multipart upload instead."""
        self.check_token(request.headers.get("authorization"))
        if request.method != "POST" or call.path not in ("files/upload", "files/upload/multipart"):
            raise FalError(f"No such CDN call: {request.method} {call.path[:100]!r}", status=404,
                           error_type="not_found")
        name = request.headers.get("x-fal-file-name")
        key = self.media.new_key(extension_for(request.headers.get("content-type"), name))
        access_url = self.media.url(key, call.base_url)
        if call.path.endswith("multipart"):
            return json_response({"access_url": access_url, "uploadId": self.auth.sign(key)})
        await self.put_file(key, request)
        return json_response({"access_url": access_url})

    def check_token(self, authorization: str | None) -> None:
        if not self.auth.enabled:
            return
        _, _, token = (authorization or "").partition(" ")
        stamp, _, signature = token.strip().rpartition(".")
        self.auth.check_signature(stamp, signature)
        try:
            expires = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise FalError("Malformed upload token", status=403, error_type="forbidden") from None
        if expires < dt.datetime.now(dt.UTC):
            raise FalError("Upload token expired; ask for a new one", status=401, error_type="unauthorized")

    # -- byte transfers ------------------------------------------------------------------------

    async def put_file(self, key: str, request: Request[Any, Any, Any]) -> Path:
        """Stream a request body into the store under ``key`` (413 past the size limit)."""
        target = self._target(key)
        partial = target.with_suffix(target.suffix + ".part")
        await self._receive(request, partial, self.max_upload_bytes)
        os.replace(partial, target)
        return target

    async def put_part(self, key: str, number: int, request: Request[Any, Any, Any]) -> Response[bytes]:
        """One part of a multipart upload; both clients read its ETag (JS from the body)."""
        if not 1 <= number <= MAX_PARTS:
            raise InputError("partNumber", f"Part numbers run from 1 to {MAX_PARTS}", "value_error", where="path")
        folder = self._parts(key)
        folder.mkdir(parents=True, exist_ok=True)
        etag = await self._receive(request, folder / f"{number:05d}", self.max_upload_bytes)
        response = json_response({"partNumber": number, "etag": etag})
        response.headers["etag"] = etag
        return response

    async def complete(self, key: str) -> Path:
        """Join the uploaded parts in order into the stored file (off the event loop: it copies)."""
        return await asyncio.to_thread(self._join_parts, key)

    def _join_parts(self, key: str) -> Path:
        folder = self._parts(key)
        parts = sorted(folder.glob("[0-9]*")) if folder.is_dir() else []
        if not parts:
            raise FalError("No parts were uploaded for this file", status=400, error_type="invalid_upload")
        if sum(p.stat().st_size for p in parts) > self.max_upload_bytes:
            shutil.rmtree(folder, ignore_errors=True)
            raise _too_large(self.max_upload_bytes)
        target = self._target(key)
        with target.with_suffix(target.suffix + ".part").open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1024 * 1024)
        os.replace(target.with_suffix(target.suffix + ".part"), target)
        shutil.rmtree(folder, ignore_errors=True)
        return target

    def _target(self, key: str) -> Path:
        try:
            return self.media.path(key)
        except KeyError:
            raise FalError("Not an upload URL this server issued", status=404, error_type="not_found") from None

    def _parts(self, key: str) -> Path:
        self._target(key)  # validates the key shape before it becomes a folder name
        return self.parts_root / key

    @staticmethod
    async def _receive(request: Request[Any, Any, Any], path: Path, limit: int) -> str:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        raise _too_large(limit)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise  # a full disk becomes a 507 naming the data folder in the app's one error handler
        return digest.hexdigest()


def _too_large(limit: int) -> FalError:
    return FalError(f"File is larger than the upload limit of {limit} bytes (storage.max_upload_bytes)",
                    status=413, error_type="file_too_large")
