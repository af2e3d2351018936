"""MediaStore: every file thorgen keeps (uploads and outputs) under one folder, by opaque key.

A key is 32 hex digits plus an extension (``3f2a….mp4``); it is both the file name on disk and the
last segment of its URL, ``{base}/files/{key}``. Nothing else reaches the disk through a URL, so a
request path can never walk out of the folder.

Files are write-once and appear whole: a writer fills a temporary file (``temp_path``, named
``{key}.{random}.part``, which no URL can name) and ``place`` links it under its key only when it is
complete, after an fsync of the file, and then fsyncs the folder, so a file that is served survives
a power cut. ``place`` never replaces a file: a second write to a key fails with ``AlreadyStored``.
Temporaries a killed process left behind are removed at start (``remove_partials``).
"""

from __future__ import annotations

import asyncio
import errno
import mimetypes
import os
import re
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,5}$")
_FILES_PATH = re.compile(r"^/files/([0-9a-f]{32}\.[a-z0-9]{1,5})$")

# mimetypes guesses differ between machines; pin the ones the editor and browsers care about.
_TYPES = {
    "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "mkv": "video/x-matroska",
    "gif": "image/gif", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "webp": "image/webp", "wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg",
    "flac": "audio/flac", "m4a": "audio/mp4", "aac": "audio/aac", "txt": "text/plain",
    "json": "application/json", "bin": "application/octet-stream",
}
_EXTENSIONS = {value: key for key, value in reversed(list(_TYPES.items()))}
_EXTENSIONS.update({"audio/x-wav": "wav", "audio/wave": "wav", "audio/mp3": "mp3", "image/jpg": "jpg"})


def content_type_of(key_or_name: str) -> str:
    ext = key_or_name.rsplit(".", 1)[-1].lower() if "." in key_or_name else ""
    return _TYPES.get(ext) or mimetypes.guess_type(key_or_name)[0] or "application/octet-stream"


def extension_for(content_type: str | None, file_name: str | None = None) -> str:
    """Pick a safe extension: from the file name if it has a sane one, else from the MIME type."""
    if file_name and "." in file_name:
        ext = file_name.rsplit(".", 1)[-1].lower()
        if re.fullmatch(r"[a-z0-9]{1,5}", ext):
            return ext
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    guessed = mimetypes.guess_extension(mime) if mime else None
    return guessed.lstrip(".") if guessed and re.fullmatch(r"\.[a-z0-9]{1,5}", guessed) else "bin"


class MediaStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def new_key(self, ext: str) -> str:
        return f"{uuid.uuid4().hex}.{ext.lower().lstrip('.')}"

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise KeyError(key)
        return self.root / key

    def exists(self, key: str) -> bool:
        return _KEY.match(key) is not None and (self.root / key).is_file()

    @staticmethod
    def key_in_path(url_path: str) -> str | None:
        match = _FILES_PATH.match(url_path)
        return match.group(1) if match else None

    @staticmethod
    def url(key: str, base: str) -> str:
        return f"{base.rstrip('/')}/files/{key}"

    def temp_path(self, key: str) -> Path:
        """Where to write the file for ``key`` until it is complete; unique per call, so two writers
        of one key never share a temporary."""
        return self.path(key).with_name(f"{key}.{uuid.uuid4().hex[:12]}.part")

    def place(self, temp: Path, key: str) -> Path:
        """Put a complete temporary file in place under ``key``, durably; never replaces a file.

        The temporary is always gone afterwards. Raises ``AlreadyStored`` if ``key`` already exists.
        """
        final = self.path(key)
        try:
            fsync_file(temp)
            try:
                # link() fails when the name exists, so no writer ever replaces a stored file (a
                # rename would, silently).
                os.link(temp, final)
            except FileExistsError:
                raise AlreadyStored(key) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # A file system without hard links (FAT, some network mounts): check, then rename.
                if final.exists():
                    raise AlreadyStored(key) from None
                os.rename(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(self.root)
        return final

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write a new file under ``key`` from ``chunks`` through a temporary and ``place``; never
        replaces one (AlreadyStored). A failed or aborted write leaves nothing behind. Returns the size."""
        temp = self.temp_path(key)
        size = 0
        try:
            with temp.open("xb") as out:
                async for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(self.place, temp, key)
        return size

    def remove_partials(self) -> int:
        """Drop half-written files a killed process left behind (uploads and outputs; never served)."""
        partials = list(self.root.glob("*.part"))
        for path in partials:
            path.unlink(missing_ok=True)
        return len(partials)

    def describe(self, key: str, base: str, file_name: str | None = None, *,
                 pending: Path | None = None) -> dict[str, Any]:
        """fal's File object for a stored file (or one still at its temporary path ``pending``)."""
        return {
            "url": self.url(key, base),
            "content_type": content_type_of(key),
            "file_name": file_name or key,
            "file_size": (pending or self.path(key)).stat().st_size,
        }


class AlreadyStored(Exception):
    """A write to a key that already holds a file: stored files are never replaced."""

    def __init__(self, key: str):
        super().__init__(f"{key} is already stored")
        self.key = key


def fsync_file(path: Path) -> None:
    """Flush a file's data to the disk (not only to the page cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries, so a file just linked into it is still there after a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
