"""The response shapes fal's clients parse: JSON bodies, fal-style errors, and request-id headers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response

from thorgen.errors import FalError, InputError


def json_response(data: Any, status: int = 200, request_id: str | None = None) -> Response[bytes]:
    headers = {"x-fal-request-id": request_id} if request_id else None
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json",
                    headers=headers)


def error_response(error: FalError, request_id: str | None = None) -> Response[bytes]:
    response = json_response(error.body(), error.status, request_id)
    response.headers["x-fal-error-type"] = error.error_type
    return response


def decode_json(body: bytes) -> Any:
    """A request body as JSON (empty = {}), or a 422 that says why not.

    Every request body thorgen parses as JSON goes through here. msgspec raises more than its
    DecodeError on hostile input: RecursionError for deep nesting (≥ 1000 levels) and
    UnicodeDecodeError (a ValueError) for invalid UTF-8 inside a string. All are the client's mistake.
    """
    if not body.strip():
        return {}
    try:
        return msgspec.json.decode(body)
    except RecursionError:
        raise InputError([], "Request body is not valid JSON: nested too deeply", "json_invalid") from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise InputError([], f"Request body is not valid JSON: {exc}", "json_invalid") from None
