"""The HTTP routes: fal's services by proxy header or path prefix, upload targets, and file serving."""

from __future__ import annotations

from typing import Any

from litestar import HttpMethod, Request, Response, post, put, route
from starlette.responses import FileResponse

from thorgen.config import Config
from thorgen.errors import FalError
from thorgen.jobs.service import JobService
from thorgen.media.store import content_type_of
from thorgen.media.uploads import UploadTargets
from thorgen.protocol.auth import OPEN, Auth
from thorgen.protocol.call import FalCall, Service, from_prefix, from_target_url
from thorgen.protocol.queue import QueueApi
from thorgen.protocol.responses import json_response
from thorgen.protocol.storage import StorageApi
from thorgen.protocol.uploadthing import build_uploadthing_routes

ANY_METHOD = [HttpMethod.GET, HttpMethod.HEAD, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE,
              HttpMethod.PATCH]
# What authorises the routes the API-key guard lets through (see protocol/auth.py).
BY_DISPATCH = {OPEN: "dispatch checks the key, or the upload token for the CDN"}
BY_SIGNATURE = {OPEN: "signed upload URL"}
PUBLIC_FILE = {OPEN: "files are public capability URLs, so <video> and <img> tags work"}


def build_routes(config: Config, service: JobService, auth: Auth) -> list[Any]:
    queue = QueueApi(service)
    targets = UploadTargets.in_data_dir(service.media, config.data_dir, ttl_s=config.storage.upload_ttl_s,
                                        max_bytes=config.storage.max_upload_bytes,
                                        parts_root=service.scratch_root / "multipart")
    storage = StorageApi(service.media, targets)
    upload_limit = config.storage.max_upload_bytes
    json_limit = config.limits.max_request_bytes

    def base_url(request: Request[Any, Any, Any]) -> str:
        if config.server.public_url:
            return config.server.public_url.rstrip("/")
        # protocol/trust.py has refused any Host that is not allowed, so these URLs never name a
        # host a web page chose (DNS rebinding).
        host = request.headers.get("host") or f"{config.server.host}:{config.server.port}"
        return f"{request.url.scheme}://{host}"

    async def dispatch(call: FalCall, request: Request[Any, Any, Any]) -> Response[Any]:
        if call.service == "cdn":  # authorised by the upload token instead of the API key
            return await storage.handle_cdn(call, request)
        auth.check_header(request.headers.get("authorization"))
        if call.service == "run" and request.method != "POST":
            # fal's own sync run takes POST; a GET that ran a job would let any <img src> start one.
            raise FalError(f"Use POST to run {call.path[:100]!r} (GET never starts a job)", status=405,
                           error_type="method_not_allowed")
        body = await request.body() if request.method in ("POST", "PUT", "PATCH") else b""
        if body.strip():
            require_json(request.headers.get("content-type"))
        if call.service == "queue":
            return await queue.handle(call, request, body)
        if call.service == "run":
            return await queue.run(call, request, body)
        return storage.handle_rest(call, request.method, body)

    # -- fal's services --------------------------------------------------------------------

    @route(["/api/fal", "/api/fal/proxy"], http_method=ANY_METHOD, request_max_body_size=json_limit,
           status_code=200, opt=BY_DISPATCH)
    async def proxy(request: Request[Any, Any, Any]) -> Response[Any]:
        target = request.headers.get("x-fal-target-url")
        if not target:
            raise FalError("Missing the x-fal-target-url header", status=400, error_type="invalid_target_url")
        return await dispatch(from_target_url(target, base_url(request)), request)

    def prefixed(service_name: Service, limit: int) -> Any:
        @route(f"/{service_name}/{{path:path}}", http_method=ANY_METHOD, name=f"prefix-{service_name}",
               request_max_body_size=limit, status_code=200, opt=BY_DISPATCH)
        async def handler(request: Request[Any, Any, Any], path: str) -> Response[Any]:
            call = from_prefix(service_name, path, request.url.query, base_url(request))
            return await dispatch(call, request)

        return handler

    # -- upload targets (PUT straight from browsers, so no Authorization: the URL carries the
    #    target's signed, expiring token; each target takes one complete write, see media/uploads.py)

    @put("/uploads/{key:str}", request_max_body_size=upload_limit, status_code=200, opt=BY_SIGNATURE)
    async def upload(request: Request[Any, Any, Any], key: str, token: str | None = None) -> Response[bytes]:
        await storage.put_file(key, token, request)
        return json_response({"file_url": service.media.url(key, base_url(request))})

    @put("/uploads/{key:str}/multipart/{number:int}", request_max_body_size=upload_limit, status_code=200,
         opt=BY_SIGNATURE)
    async def upload_part(request: Request[Any, Any, Any], key: str, number: int,
                          token: str | None = None) -> Response[bytes]:
        return await storage.put_part(key, token, number, request)

    @post("/uploads/{key:str}/multipart/complete", status_code=200, opt=BY_SIGNATURE)
    async def upload_complete(request: Request[Any, Any, Any], key: str,
                              token: str | None = None) -> Response[bytes]:
        await storage.complete(key, token)
        return json_response({"file_url": service.media.url(key, base_url(request))})

    @put("/files/{key:str}/multipart/{upload_id:str}/{number:int}", request_max_body_size=upload_limit,
         status_code=200, opt=BY_SIGNATURE)
    async def cdn_part(request: Request[Any, Any, Any], key: str, upload_id: str, number: int) -> Response[bytes]:
        return await storage.put_part(key, upload_id, number, request)

    @post("/files/{key:str}/multipart/{upload_id:str}/complete", status_code=200, opt=BY_SIGNATURE)
    async def cdn_complete(request: Request[Any, Any, Any], key: str, upload_id: str) -> Response[bytes]:
        await storage.complete(key, upload_id)
        return json_response({"access_url": service.media.url(key, base_url(request))})

    # -- file downloads: Starlette's FileResponse answers Range (206), HEAD and ETag -------

    @route("/files/{key:str}", http_method=[HttpMethod.GET, HttpMethod.HEAD], opt=PUBLIC_FILE)
    async def files(key: str) -> FileResponse:
        if not service.media.exists(key):
            raise FalError("File not found", status=404, error_type="not_found")
        return FileResponse(service.media.path(key), media_type=content_type_of(key),
                            headers={"cache-control": "public, max-age=31536000, immutable"})

    return [
        proxy,
        prefixed("queue", json_limit),
        prefixed("run", json_limit),
        prefixed("rest", json_limit),
        prefixed("cdn", upload_limit),
        upload,
        upload_part,
        upload_complete,
        cdn_part,
        cdn_complete,
        files,
        # The video-starter-kit's own uploads (uploadthing's client protocol), on the same file store.
        *build_uploadthing_routes(service.media, base_url, upload_limit),
    ]


def require_json(content_type: str | None) -> None:
    """A body the API parses must say it is JSON. A text/plain POST is what a web page can send
    without a CORS preflight, so accepting it would let any page submit jobs."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    raise FalError(f"Send the request body as JSON (Content-Type: application/json), not {media_type or 'untyped'!r}",
                   status=415, error_type="unsupported_media_type")
