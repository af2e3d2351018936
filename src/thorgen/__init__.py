"""thorgen: a local stand-in for fal.ai.

``import thorgen`` gives an in-process client shaped like fal_client::

    import thorgen
    with thorgen.Client() as client:
        output = client.subscribe("fal-ai/ffmpeg-api/metadata", {"media_url": "data:..."})
"""

from __future__ import annotations

from typing import Any

from thorgen.version import __version__

__all__ = ["Client", "FalError", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `import thorgen` (and `thorgen --help`) stays fast.
    if name == "Client":
        from thorgen.client import Client

        return Client
    if name == "FalError":
        from thorgen.errors import FalError

        return FalError
    raise AttributeError(name)
