"""UploadThing's client protocol (uploadthing 7.x), answered locally for the video-starter-kit's uploads.

The kit's browser code (``useUploadThing("fileUploader")``, uploadthing 7.4.4 and @uploadthing/react
7.1.5) talks to the kit's own ``/api/uploadthing``. With that path rewritten to thorgen
(``thorgen kit setup``) the calls it makes, in order, are:

1. ``GET /api/uploadthing`` — the route config, ``[{slug, config: {image: {maxFileSize, …}, …}}]``
   (the React hook reads it for the accepted types).
2. ``POST /api/uploadthing?actionType=upload&slug=fileUploader`` with JSON ``{input, files: [{name,
   size, type, lastModified}]}`` — checked against the route (count, type, size) and answered with one
   upload target per file, ``[{url, key, name, customId}]``. A refusal is ``{message, code}`` with a
   4xx status; the client turns it into the UploadThingError the page is handed.
3. ``HEAD {url}`` — how much of the file the server already holds (``x-ut-range-start``; always 0).
4. ``PUT {url}`` from XMLHttpRequest (so the page sees progress) with ``multipart/form-data`` holding
   one field, ``file`` — the bytes stream into the MediaStore and the answer is ``{url, appUrl, ufsUrl,
   fileHash, serverData}``, every URL being thorgen's absolute file URL, which the kit stores and later
   hands to fal endpoints (``ffmpeg-api/metadata`` first).

The targets follow the upload rules of the rest of thorgen: each is an unguessable id, kept in memory
with what the upload action allowed (type, size); it can be written once, and expires after
TARGET_TTL_S. A second write, a write after expiry, or a body of another size than declared is refused
and stores nothing. Only the kit's route exists (``fileUploader``: one image ≤ 16 MB, video ≤ 512 MB or
audio ≤ 64 MB, as its ``src/app/api/uploadthing/core.ts`` declares).
"""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import HttpMethod, Request, Response, get, post, route

from thorgen.media.store import AlreadyStored, MediaStore, extension_for
from thorgen.protocol.auth import OPEN
from thorgen.protocol.responses import json_response

CLIENT_VERSION = "7.4.4"  # the uploadthing version whose client this module was written against
TARGET_TTL_S = 3600.0  # uploadthing's own default lifetime of a presigned URL
MAX_OPEN_TARGETS = 1000
MAX_PART_HEADER_BYTES = 16 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and part headers around the file's bytes
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass(frozen=True)
class FileRule:
    max_file_size: str  # uploadthing's notation, 1024-based: "16MB"
    max_file_count: int = 1
    min_file_count: int = 1

    @property
    def max_bytes(self) -> int:
        number, unit = self.max_file_size[:-2], self.max_file_size[-2:]
        return int(number) * _UNITS[unit]


# The kit's file route, as its src/app/api/uploadthing/core.ts declares it (starter-kit.md §6).
KIT_ROUTES: dict[str, dict[str, FileRule]] = {
    "fileUploader": {"image": FileRule("16MB"), "video": FileRule("512MB"), "audio": FileRule("64MB")},
}


class FileInfo(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(max_length=1024)]
    size: Annotated[int, msgspec.Meta(ge=0)]
    type: str = ""
    lastModified: float | None = None  # noqa: N815 (the client's spelling)


class UploadAction(msgspec.Struct):
    files: Annotated[list[FileInfo], msgspec.Meta(max_length=100)]
    input: Any = None


class Refusal(Exception):
    """An answer in uploadthing's error shape; the client reads ``message`` and maps the status to a code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response[bytes]:
        return json_response({"message": self.message, "code": self.code}, status=self.status)


@dataclass
class Target:
    """One upload target: what may be written to it, until when, and whether it has been."""

    key: str  # the MediaStore key the bytes go to
    name: str
    size: int
    expires: float
    state: Literal["open", "writing", "written"] = "open"


class UploadThingApi:
    def __init__(self, media: MediaStore, routes: dict[str, dict[str, FileRule]] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.media = media
        self.routes = routes or KIT_ROUTES
        self.clock = clock
        self.targets: dict[str, Target] = {}

    def route_config(self) -> list[dict[str, Any]]:
        return [{"slug": slug, "config": {kind: {"maxFileSize": rule.max_file_size,
                                                   "maxFileCount": rule.max_file_count,
                                                   "minFileCount": rule.min_file_count,
                                                   "contentDisposition": "inline"}
                                            for kind, rule in rules.items()}}
                for slug, rules in self.routes.items()]

    # -- the upload action ----------------------------------------------------------------------

    def prepare(self, slug: str | None, action_type: str | None, body: bytes, base_url: str) -> list[dict[str, Any]]:
        """Check the announced files against the route; give each an upload target."""
        if action_type != "upload":
            raise Refusal(400, "BAD_REQUEST", f"Invalid input: actionType must be 'upload', got {action_type!r}")
        rules = self.routes.get(slug or "")
        if rules is None:
            raise Refusal(404, "NOT_FOUND", f"No file route found for slug {slug}")
        try:
            action = msgspec.json.decode(body, type=UploadAction)
        except msgspec.DecodeError as exc:
            raise Refusal(400, "BAD_REQUEST", f"Invalid input: {exc}") from None
        if not action.files:
            raise Refusal(400, "BAD_REQUEST", "Invalid input: no files")
        counts: dict[str, int] = {}
        for file in action.files:
            kind = self._kind(file, rules)
            rule = rules[kind]
            if file.size > rule.max_bytes:
                raise Refusal(400, "BAD_REQUEST", f"Invalid config: FileSizeMismatch: you uploaded a {kind} file "
                              f"of {file.size} bytes, but the limit for that type is {rule.max_file_size}")
            counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():
            if count > rules[kind].max_file_count:
                raise Refusal(400, "BAD_REQUEST", f"Invalid config: FileCountMismatch: {count} {kind} files, "
                              f"at most {rules[kind].max_file_count}")
        self._forget_expired()
        if len(self.targets) + len(action.files) > MAX_OPEN_TARGETS:
            raise Refusal(429, "TOO_MANY_REQUESTS", "Too many uploads waiting for their bytes; try again later")
        presigned = []
        for file in action.files:
            target_id = secrets.token_urlsafe(24)
            key = self.media.new_key(extension_for(file.type, file.name))
            self.targets[target_id] = Target(key, file.name, file.size, self.clock() + TARGET_TTL_S)
            presigned.append({"url": f"{base_url}/api/uploadthing/ingest/{target_id}", "key": key,
                              "name": file.name, "customId": None})
        return presigned

    @staticmethod
    def _kind(file: FileInfo, rules: dict[str, FileRule]) -> str:
        """The route's name for the file's type ("image", …) from its MIME type, else its name."""
        mime = (file.type or mimetypes.guess_type(file.name)[0] or "").lower()
        if not mime:
            raise Refusal(400, "BAD_REQUEST", f"Invalid config: UnknownFileType: cannot tell the type of {file.name!r}")
        kind = "pdf" if mime == "application/pdf" else mime.split("/")[0]
        if kind not in rules:
            raise Refusal(400, "BAD_REQUEST", f"Invalid config: InvalidFileType: {mime} is not allowed on this "
                          f"route (allowed: {', '.join(rules)})")
        return kind

    # -- the upload target ----------------------------------------------------------------------

    def open_target(self, target_id: str) -> Target:
        """The target, if it exists, has not expired and has not been written (409 when it has)."""
        target = self.targets.get(target_id)
        if target is None or target.expires <= self.clock():
            self.targets.pop(target_id, None)
            raise Refusal(404, "NOT_FOUND", "No such upload target, or it has expired; ask for a new one")
        if target.state != "open":
            raise Refusal(409, "BAD_REQUEST", f"This upload target is already {target.state}: targets are written once")
        return target

    async def receive(self, target_id: str, request: Request[Any, Any, Any], base_url: str) -> dict[str, Any]:
        """Stream the form's file into the MediaStore under the target's key; one write only."""
        target = self.open_target(target_id)
        boundary = _boundary(request.headers.get("content-type"))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > target.size + MULTIPART_OVERHEAD_BYTES:
            raise Refusal(413, "TOO_LARGE", f"The body is larger than the {target.size} bytes the upload announced")
        target.state = "writing"  # no await between the check above and this: one writer per target
        digest = hashlib.md5(usedforsecurity=False)
        try:
            await self.media.put_stream(target.key, _hashed(form_file(request.stream(), boundary, target.size), digest))
        except BaseException:
            target.state = "open"  # nothing was stored: the client may try again until the target expires
            raise  # a full disk becomes a 507 naming the data folder in the app's one error handler
        target.state = "written"
        url = self.media.url(target.key, base_url)
        return {"url": url, "appUrl": url, "ufsUrl": url, "key": target.key, "name": target.name,
                "fileHash": digest.hexdigest(), "serverData": None}

    def _forget_expired(self) -> None:
        now = self.clock()
        for target_id in [tid for tid, target in self.targets.items() if target.expires <= now]:
            del self.targets[target_id]


def _boundary(content_type: str | None) -> bytes:
    mime, _, params = (content_type or "").partition(";")
    if mime.strip().lower() != "multipart/form-data":
        raise Refusal(400, "BAD_REQUEST", "Send the file as multipart/form-data with one field, 'file'")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and 0 < len(value.strip('"')) <= 200:
            return value.strip('"').encode("latin-1")
    raise Refusal(400, "BAD_REQUEST", "multipart/form-data without a boundary")


async def form_file(body: AsyncIterable[bytes], boundary: bytes, size: int) -> AsyncIterator[bytes]:
    """The bytes of the only field, ``file``, of a multipart body as it streams in; exactly ``size`` of them.

    Raises Refusal for anything else: another field, a second part, more or fewer bytes than announced.
    """
    stream = aiter(body)
    buffer = bytearray()

    async def more() -> bool:
        chunk = await anext(stream, None)
        if chunk is not None:
            buffer.extend(chunk)
        return chunk is not None

    while (head_end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_PART_HEADER_BYTES or not await more():
            raise Refusal(400, "BAD_REQUEST", "The form's first part has no complete header")
    lines = bytes(buffer[:head_end]).split(b"\r\n")
    del buffer[:head_end + 4]
    disposition = next((line for line in lines[1:] if line.lower().startswith(b"content-disposition:")), b"")
    if lines[0] != b"--" + boundary or b'name="file"' not in disposition:
        raise Refusal(400, "BAD_REQUEST", "The form must hold one field, 'file'")

    delimiter = b"\r\n--" + boundary
    received = 0
    while True:
        end = buffer.find(delimiter)
        ready = end if end >= 0 else max(0, len(buffer) - len(delimiter) + 1)
        received += ready
        if received > size:
            raise Refusal(413, "TOO_LARGE", f"The file is larger than the {size} bytes the upload announced")
        if ready:
            yield bytes(buffer[:ready])
            del buffer[:ready]
        if end >= 0:
            break
        if not await more():
            raise Refusal(400, "BAD_REQUEST", "The body ended before the form's closing boundary")
    if received != size:
        raise Refusal(400, "BAD_REQUEST", f"The file has {received} bytes; the upload announced {size}")
    del buffer[:len(delimiter)]
    while len(buffer) < 2 and await more():
        pass
    if not buffer.startswith(b"--"):
        raise Refusal(400, "BAD_REQUEST", "One file per upload target: the form has a second part")


async def _hashed(chunks: AsyncIterable[bytes], digest: Any) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


def build_uploadthing_routes(media: MediaStore, base_url: Callable[[Request[Any, Any, Any]], str],
                             max_body_bytes: int) -> list[Any]:
    """``/api/uploadthing`` (config and upload action) and its upload targets."""
    api = UploadThingApi(media)
    headers = {"x-uploadthing-version": CLIENT_VERSION}

    @get("/api/uploadthing", sync_to_thread=False)
    def config() -> Response[bytes]:
        response = json_response(api.route_config())
        response.headers.update(headers)
        return response

    @post("/api/uploadthing", status_code=200)
    async def action(request: Request[Any, Any, Any]) -> Response[bytes]:
        # The app's key guard covers this route: with server.api_key set, a page must send the key.
        query = request.query_params
        try:
            response = json_response(api.prepare(query.get("slug"), query.get("actionType"), await request.body(),
                                                 base_url(request)))
        except Refusal as refusal:
            response = refusal.response()
        response.headers.update(headers)
        return response

    @route("/api/uploadthing/ingest/{target_id:str}", http_method=[HttpMethod.HEAD, HttpMethod.PUT],
           request_max_body_size=max_body_bytes, status_code=200,
           opt={OPEN: "the target id, made by an upload action that needed the key, is the capability"})
    async def ingest(request: Request[Any, Any, Any], target_id: str) -> Response[bytes]:
        try:
            if request.method == "HEAD":
                api.open_target(target_id)
                return Response(b"", headers={**headers, "x-ut-range-start": "0"})
            return json_response(await api.receive(target_id, request, base_url(request)))
        except Refusal as refusal:
            return refusal.response()
        except AlreadyStored:
            return Refusal(409, "BAD_REQUEST", "This file has already been written").response()

    return [config, action, ingest]
