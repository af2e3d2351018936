"""The server's log: one format for thorgen's and uvicorn's lines, no progress bars, no poll noise.

``thorgen serve`` hands ``log_config()`` to uvicorn, which applies it with ``logging.config.dictConfig``
before it logs anything, so uvicorn's own lines ("Uvicorn running on ...", the access log) come out in
the same format as thorgen's. Health checks (a container's HEALTHCHECK, a test waiting for /ready)
poll every second or so; those access lines say nothing and are dropped. Every other request is kept.
"""

from __future__ import annotations

import logging
import os
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
POLLED_PATHS = frozenset({"/health", "/ready"})


class DropPolls(logging.Filter):
    """Drops uvicorn access lines for /health and /ready (its record args: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return args[2].split("?", 1)[0] not in POLLED_PATHS
        return True


def log_config(level: str) -> dict[str, Any]:
    """A dictConfig for the whole server process: root, thorgen.* and uvicorn.* share one handler."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"thorgen": {"format": FORMAT}},
        "filters": {"drop_polls": {"()": DropPolls}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "thorgen",
                                "stream": "ext://sys.stderr"}},
        # uvicorn's loggers carry no handler of their own: their records reach the root's.
        "loggers": {"uvicorn": {"level": level, "handlers": [], "propagate": True},
                    "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
                    "uvicorn.access": {"level": level, "handlers": [], "propagate": True,
                                       "filters": ["drop_polls"]}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def quiet_progress_bars() -> None:
    """No tqdm bars in a server's log: diffusers, transformers and huggingface_hub all draw them with
    tqdm (writing tiny models, loading, denoising), and a log file is no terminal. Must run before
    those libraries are imported; tqdm reads TQDM_* variables as its defaults."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def adopt_torch_logger() -> None:
    """torch logs through a handler of its own ("W1201 12:00:00.000 123 torch/...py:630] ..."), set up
    when torch is imported and again whenever ``torch._logging.set_logs`` is called: send its records
    to the root's handler instead. Call it after either; idempotent."""
    import torch  # noqa: F401  (torch's loggers get their handler when torch is imported)

    torch_logger = logging.getLogger("torch")
    for handler in list(torch_logger.handlers):
        torch_logger.removeHandler(handler)
    torch_logger.propagate = True


def adopt_library_loggers() -> None:
    """diffusers and transformers log through a handler of their own (their own format, not passed on
    to the root logger) and draw progress bars: send their records to the root's handler instead, so a
    server's log has one format, and draw no bars. torch's logger first: importing diffusers imports
    torchao where it is installed, which logs through torch's. Idempotent; imports the libraries, so
    call it where they are about to be used anyway."""
    adopt_torch_logger()
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
