"""Errors that carry their fal wire shape, raised anywhere below the protocol layer.

fal answers bad input with HTTP 422 and ``{"detail": [{"loc", "msg", "type"}]}`` (FastAPI style) and
other failures with ``{"detail": str, "error_type": str}``. Keeping that shape on the exception lets
an endpoint's ``run`` raise the same error a submit-time check would have given.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any


class FalError(Exception):
    """A failure with an HTTP status, a ``detail`` body and an ``error_type``."""

    def __init__(self, detail: Any, *, status: int = 500, error_type: str = "internal_error"):
        super().__init__(detail if isinstance(detail, str) else str(detail))
        self.detail = detail
        self.status = status
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "error_type": self.error_type}


class InputError(FalError):
    """Bad input: 422 with one entry per problem, each naming its field (``loc``)."""

    def __init__(self, field: str | list[str | int], msg: str, kind: str = "value_error",
                 where: str = "body"):
        loc = [where, *([field] if isinstance(field, str) else field)]
        super().__init__([{"loc": loc, "msg": msg, "type": kind}], status=422, error_type="validation_error")


class Cancelled(FalError):
    """The job was cancelled by its client; raised at the next step boundary."""

    def __init__(self) -> None:
        super().__init__("Request was cancelled", status=400, error_type="request_cancelled")


def disk_full(exc: BaseException, data_dir: Path | str | None = None) -> FalError | None:
    """A full disk is the operator's problem to fix, not a bug: say so with 507, never a bare 500.

    Both ways it shows: an OSError from a file write (ENOSPC, or EDQUOT over a quota) and SQLite's
    "database or disk is full" (SQLITE_FULL) from the jobs database.
    """
    if not is_disk_full(exc):
        return None
    where = f" ({data_dir})" if data_dir is not None else ""
    return FalError(f"The disk holding thorgen's data folder{where} is full; free some space and try again",
                    status=507, error_type="insufficient_storage")


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
