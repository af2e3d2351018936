"""Write-once upload targets: create a target, write it once, read its file URL.

Any upload protocol (fal's storage API, and later others) uses the same three steps:

1. ``targets.create(ext)`` mints a fresh key and a token: ``{expires_ms}.{hmac(key, expires_ms)}``.
   The expiry sits inside what is signed, so a token can neither be forged, moved to another key
   nor stretched. Tokens are signed with a secret kept in the data folder, whether or not an API
   key is set, so they survive a restart and no one can PUT to a key that was not initiated.
2. ``await targets.write(key, token, chunks)`` (or ``put_part`` … ``complete`` for multipart)
   streams the bytes to a temporary file and puts it in place through ``MediaStore.place``, which
   never replaces a file: a target accepts one complete write, a replay gets 409.
3. ``media.url(key, base)`` is the file's URL.

Refusals (fal's ``{detail, error_type}`` shape): 403 ``upload_forbidden`` for a key this server did
not initiate (no token, a wrong token, or a job output's key), 410 ``upload_expired`` once the
target's lifetime (``storage.upload_ttl_s``) has passed, 409 ``upload_exists`` when the key already
holds a file, 413 past ``storage.max_upload_bytes``, 507 when the disk is full. Nothing is stored
on a refusal.

A grant (``grant()`` / ``check_grant``) is the same kind of token for "create new files until the
expiry", which fal's Python client uses as its bearer token: each upload it authorises gets a
fresh key, so it can never overwrite anything either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

from thorgen.errors import FalError, InputError
from thorgen.media.store import AlreadyStored, MediaStore

MAX_PARTS = 10_000
_GRANT = "grant:"  # signed in place of a key for a grant, so a grant is never a target's token


@dataclass(frozen=True)
class UploadTarget:
    key: str
    token: str
    expires_at: float  # seconds since the epoch


class UploadTargets:
    def __init__(self, media: MediaStore, secret: bytes, *, ttl_s: float, max_bytes: int, parts_root: Path,
                 clock: Callable[[], float] = time.time):
        self.media = media
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.parts_root = parts_root
        self._secret = secret
        self._clock = clock

    @classmethod
    def in_data_dir(cls, media: MediaStore, data_dir: Path, *, ttl_s: float, max_bytes: int,
                    parts_root: Path) -> UploadTargets:
        return cls(media, _load_secret(data_dir / "upload-secret"), ttl_s=ttl_s, max_bytes=max_bytes,
                   parts_root=parts_root)

    # -- tokens --------------------------------------------------------------------------------

    def create(self, ext: str) -> UploadTarget:
        """A new upload target: a fresh key that accepts one write until ``expires_at``."""
        key = self.media.new_key(ext)
        token, expires = self._token(key)
        return UploadTarget(key, token, expires)

    def grant(self) -> tuple[str, float]:
        """A token that lets its holder create new files until it expires: (token, expires_at)."""
        return self._token(_GRANT)

    def check_grant(self, token: str | None) -> None:
        self._check(_GRANT, token)

    def check(self, key: str, token: str | None) -> None:
        """Refuse (403/410/409) unless ``token`` is this key's unexpired token and nothing is stored yet."""
        try:
            self.media.path(key)
        except KeyError:
            raise _forbidden() from None
        self._check(key, token)
        if self.media.exists(key):
            raise _exists()

    def _token(self, subject: str) -> tuple[str, float]:
        expires_ms = int((self._clock() + self.ttl_s) * 1000)
        return f"{expires_ms}.{self._sign(subject, expires_ms)}", expires_ms / 1000

    def _sign(self, subject: str, expires_ms: int) -> str:
        return hmac.new(self._secret, f"{subject}\n{expires_ms}".encode(), hashlib.sha256).hexdigest()[:40]

    def _check(self, subject: str, token: str | None) -> None:
        stamp, _, signature = (token or "").partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(self._sign(subject, int(stamp)), signature):
            raise _forbidden()
        if int(stamp) / 1000 <= self._clock():
            raise FalError("This upload URL has expired (storage.upload_ttl_s); initiate a new upload",
                           status=410, error_type="upload_expired")

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, key: str, token: str | None, chunks: AsyncIterable[bytes],
                    declared_size: int | None = None) -> Path:
        """The one complete write a target accepts: stream ``chunks`` in, put the file in place."""
        self.check(key, token)
        temp = self.media.temp_path(key)
        await _receive(chunks, temp, self.max_bytes, declared_size)
        return await asyncio.to_thread(self._place, temp, key)

    async def put_part(self, key: str, token: str | None, number: int, chunks: AsyncIterable[bytes],
                       declared_size: int | None = None) -> str:
        """Store one part of a multipart upload (a part may be sent again); returns its ETag (MD5)."""
        if not 1 <= number <= MAX_PARTS:
            raise InputError("partNumber", f"Part numbers run from 1 to {MAX_PARTS}", "value_error", where="path")
        self.check(key, token)
        folder = self.parts_root / key  # key is checked: 32 hex digits and an extension
        folder.mkdir(parents=True, exist_ok=True)
        return await _receive(chunks, folder / f"{number:05d}", self.max_bytes, declared_size)

    async def complete(self, key: str, token: str | None) -> Path:
        """Join the uploaded parts in order into the stored file (off the event loop: it copies)."""
        self.check(key, token)
        return await asyncio.to_thread(self._join_parts, key)

    def _join_parts(self, key: str) -> Path:
        folder = self.parts_root / key
        parts = sorted(folder.glob("[0-9]*")) if folder.is_dir() else []
        if not parts:
            raise FalError("No parts were uploaded for this file", status=400, error_type="invalid_upload")
        try:
            if sum(p.stat().st_size for p in parts) > self.max_bytes:
                raise _too_large(self.max_bytes)
            temp = self.media.temp_path(key)
            try:
                with temp.open("wb") as out:
                    for part in parts:
                        with part.open("rb") as source:
                            shutil.copyfileobj(source, out, 1024 * 1024)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise  # a full disk becomes a 507 naming the data folder in the app's one error handler
            return self._place(temp, key)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _place(self, temp: Path, key: str) -> Path:
        try:
            return self.media.place(temp, key)
        except AlreadyStored:
            raise _exists() from None


async def _receive(chunks: AsyncIterable[bytes], path: Path, limit: int, declared_size: int | None) -> str:
    """Stream ``chunks`` into ``path`` with a size cap; returns the MD5 hex digest (the ETag)."""
    if declared_size is not None and declared_size > limit:
        raise _too_large(limit)
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise  # a full disk becomes a 507 naming the data folder in the app's one error handler
    return digest.hexdigest()


def _load_secret(path: Path) -> bytes:
    """The signing secret, made once per data folder (mode 0600) so tokens outlive a restart."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        path.unlink()  # a torn write from a killed first start: make a new one
        return _load_secret(path)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
        out.flush()
        os.fsync(out.fileno())
    return secret


def _forbidden() -> FalError:
    return FalError("Not an upload URL this server issued: initiate an upload first "
                    "(POST /storage/upload/initiate) and PUT to the upload_url it returns",
                    status=403, error_type="upload_forbidden")


def _exists() -> FalError:
    return FalError("This upload URL was already used: stored files are write-once; initiate a new upload",
                    status=409, error_type="upload_exists")


def _too_large(limit: int) -> FalError:
    return FalError(f"File is larger than the upload limit of {limit} bytes (storage.max_upload_bytes)",
                    status=413, error_type="file_too_large")
