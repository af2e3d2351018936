"""File inputs (``*_url`` fields) to local paths.

- thorgen's own file URLs (``…/files/{key}``) on a loopback host, the configured public host or the
  host the job was submitted through: the stored file itself, no HTTP round trip.
- ``data:`` URIs: decoded into the job's scratch folder.
- other http(s) URLs: fetched with a size cap and a timeout, under the outbound-address policy
  (media/outbound.py): hosts that resolve to loopback, private, link-local or otherwise non-public
  addresses are refused, at every redirect hop and again at connect time, unless
  ``limits.fetch_allowed_hosts`` names them.

Every failure is a 422 that names the input field.
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import httpx

from thorgen.config import Config
from thorgen.errors import InputError
from thorgen.media.outbound import OutboundPolicy, OutboundRefused
from thorgen.media.store import MediaStore, extension_for

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "[::1]"}
_MAX_REDIRECTS = 5


class UrlResolver:
    def __init__(self, media: MediaStore, config: Config, policy: OutboundPolicy | None = None):
        self.media = media
        self.policy = policy or OutboundPolicy(config.limits.fetch_allowed_hosts)
        self.max_bytes = config.limits.max_fetch_bytes
        self.timeout = config.limits.fetch_timeout_s
        public = urllib.parse.urlsplit(config.server.public_url) if config.server.public_url else None
        self._own_hosts = {h for h in (public.hostname if public else None, config.server.host) if h}
        # Cluster mode: other nodes' "host:port". Their file URLs name files on their disks, fetched
        # from them, even where the host looks like this node's own (two nodes on one machine).
        self.peer_netlocs: frozenset[str] = frozenset()

    def resolve(self, url: str, field: str | list[str | int], *, scratch: Path, base_url: str = "") -> Path:
        if not isinstance(url, str) or not url.strip():
            raise InputError(field, "A file URL is required", "missing")
        url = url.strip()
        if url.startswith("data:"):
            return self._data_uri(url, field, scratch)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(field, f"Unsupported URL (expected http(s):// or data:): {_short(url)}",
                             "url_scheme")
        own = self._own_file(parts, base_url)
        if own is not None:
            if not own.is_file():
                raise InputError(field, f"File not found on this server: {_short(url)}", "url_not_found")
            return own
        return self._fetch(url, field, scratch)

    def _own_file(self, parts: urllib.parse.SplitResult, base_url: str) -> Path | None:
        key = MediaStore.key_in_path(parts.path)
        if key is None:
            return None
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if f"{host}:{port}" in self.peer_netlocs:
            return None
        job_host = urllib.parse.urlsplit(base_url).hostname if base_url else None
        if host in _LOOPBACK_NAMES or host in self._own_hosts or host == job_host:
            return self.media.path(key)
        return None

    def _data_uri(self, url: str, field: str | list[str | int], scratch: Path) -> Path:
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise InputError(field, "Malformed data: URI (no comma)", "url_parsing")
        mime = header.split(";")[0] or "application/octet-stream"
        try:
            if header.endswith(";base64"):
                # Whitespace (line breaks) is allowed; any other character outside base64 is an error,
                # not silently dropped (which turned "%%%" into an empty file).
                data = base64.b64decode("".join(payload.split()), validate=True)
            else:
                data = urllib.parse.unquote_to_bytes(payload)
        except ValueError:
            raise InputError(field, "Malformed data: URI (bad base64)", "url_parsing") from None
        if len(data) > self.max_bytes:
            raise InputError(field, f"data: URI is larger than {self.max_bytes} bytes", "url_too_large")
        path = scratch / f"input-{len(list(scratch.iterdir()))}.{extension_for(mime)}"
        path.write_bytes(data)
        return path

    def _fetch(self, url: str, field: str | list[str | int], scratch: Path) -> Path:
        current = url
        try:
            with self.policy.client(self.timeout) as client:
                for _ in range(_MAX_REDIRECTS + 1):
                    self._refuse_private(current, field)
                    with client.stream("GET", current) as response:
                        if response.is_redirect:
                            current = str(response.url.join(response.headers.get("location", "")))
                            continue
                        if response.status_code >= 400:
                            raise InputError(field, f"Fetching {_short(url)} answered HTTP "
                                             f"{response.status_code}", "url_unreachable")
                        return self._save(response, field, scratch, url)
        except OutboundRefused as exc:  # at connect time: the name resolved differently than at the check
            raise _refused(current, field, exc) from None
        except httpx.HTTPError as exc:
            raise InputError(field, f"Could not fetch {_short(url)}: {type(exc).__name__}",
                             "url_unreachable") from None
        raise InputError(field, f"Too many redirects fetching {_short(url)}", "url_unreachable")

    def _save(self, response: httpx.Response, field: str | list[str | int], scratch: Path, url: str) -> Path:
        declared = int(response.headers.get("content-length") or 0)
        if declared > self.max_bytes:
            raise InputError(field, f"{_short(url)} is larger than {self.max_bytes} bytes", "url_too_large")
        name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
        ext = extension_for(response.headers.get("content-type"), name)
        path = scratch / f"input-{len(list(scratch.iterdir()))}.{ext}"
        received = 0
        with path.open("wb") as out:
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > self.max_bytes:
                    raise InputError(field, f"{_short(url)} is larger than {self.max_bytes} bytes",
                                     "url_too_large")
                out.write(chunk)
        return path

    def _refuse_private(self, url: str, field: str | list[str | int]) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(field, f"Unsupported redirect target: {_short(url)}", "url_scheme")
        try:
            self.policy.check_url(url)
        except OutboundRefused as exc:
            raise _refused(url, field, exc) from None


def _refused(url: str, field: str | list[str | int], exc: OutboundRefused) -> InputError:
    if exc.unresolved:
        return InputError(field, f"Could not fetch {_short(url)}: {exc}", "url_unreachable")
    return InputError(field, f"Refusing to fetch {_short(url)}: {exc}. Upload the file to thorgen instead "
                      "and pass the URL it returns.", "url_forbidden")


def _short(url: str, limit: int = 120) -> str:
    """URLs go into error messages: drop any credentials and query, cap the length."""
    if url.startswith("data:"):
        return "data: URI"
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
