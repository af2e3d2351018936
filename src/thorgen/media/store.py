"""MediaStore: every file thorgen keeps (uploads and outputs) under one folder, by opaque key.

A key is 32 hex digits plus an extension (``3f2a….mp4``); it is both the file name on disk and the
last segment of its URL, ``{base}/files/{key}``. Nothing else reaches the disk through a URL, so a
request path can never walk out of the folder.
"""

from __future__ import annotations

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

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write a new file under ``key`` from ``chunks``; never replaces one (FileExistsError).

        The bytes go to ``{key}.part`` first and are linked into place only when complete, so a reader
        never sees half a file and a failed or aborted write leaves nothing behind. Returns the size.
        """
        target = self.path(key)
        partial = target.with_name(target.name + ".part")
        size = 0
        out = partial.open("xb")  # another writer of the same key fails here, before touching anything
        try:
            with out:
                async for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.link(partial, target)  # fails if the key was ever written: files are write-once
        finally:
            partial.unlink(missing_ok=True)
        return size

    def remove_partials(self) -> int:
        """Drop half-written uploads a killed process left behind (they were never served)."""
        partials = list(self.root.glob("*.part"))
        for path in partials:
            path.unlink(missing_ok=True)
        return len(partials)

    def describe(self, key: str, base: str, file_name: str | None = None) -> dict[str, Any]:
        """fal's File object for a stored file."""
        return {
            "url": self.url(key, base),
            "content_type": content_type_of(key),
            "file_name": file_name or key,
            "file_size": self.path(key).stat().st_size,
        }
