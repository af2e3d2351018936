"""File inputs: fetching with caps and timeouts, redirects re-checked, data: URIs, own URLs."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from thorgen.config import Config, LimitsConfig, ServerConfig
from thorgen.errors import InputError
from thorgen.media.outbound import OutboundPolicy
from thorgen.media.resolve import UrlResolver
from thorgen.media.store import MediaStore

BODY = b"RIFF" + b"\0" * 4000


class Origin(BaseHTTPRequestHandler):
    """A stand-in for a file host on the LAN: fixed routes, some misbehaving on purpose."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/song.wav":
            self._send(200, BODY, {"content-type": "audio/wav", "content-length": str(len(BODY))})
        elif self.path == "/chunked.wav":  # no content-length: the cap must hold while streaming
            self.send_response(200)
            self.send_header("content-type", "audio/wav")
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/slow.wav":
            time.sleep(2)
            self._send(200, BODY, {"content-length": str(len(BODY))})
        elif self.path == "/to-elsewhere":
            self._send(302, b"", {"location": "http://127.0.0.2:9/secret", "content-length": "0"})
        elif self.path == "/to-song":
            self._send(302, b"", {"location": "/song.wav", "content-length": "0"})
        else:
            self._send(404, b"no", {"content-length": "2"})

    def _send(self, status, body, headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def resolver(tmp_path, origin, **limits) -> UrlResolver:
    allowed = [origin.removeprefix("http://")]
    config = Config(server=ServerConfig(), limits=LimitsConfig(fetch_allowed_hosts=allowed, **limits))
    return UrlResolver(MediaStore(tmp_path / "files"), config)


def test_allowed_host_is_fetched_and_typed_by_content_type(tmp_path, origin):
    path = resolver(tmp_path, origin).resolve(f"{origin}/song.wav", "audio_url", scratch=tmp_path)
    assert path.read_bytes() == BODY and path.suffix == ".wav"


def test_relative_redirect_on_the_allowed_host_is_followed(tmp_path, origin):
    path = resolver(tmp_path, origin).resolve(f"{origin}/to-song", "audio_url", scratch=tmp_path)
    assert path.read_bytes() == BODY


@pytest.mark.parametrize("route,limits,message", [
    ("/song.wav", {"max_fetch_bytes": 100}, "larger than"),
    ("/chunked.wav", {"max_fetch_bytes": 100}, "larger than"),
    ("/slow.wav", {"fetch_timeout_s": 0.3}, "Could not fetch"),
    ("/missing.wav", {}, "HTTP 404"),
    ("/to-elsewhere", {}, "Refusing to fetch"),  # the redirect target is private and not allowed
])
def test_fetch_failures_are_422_naming_the_field(tmp_path, origin, route, limits, message):
    with pytest.raises(InputError) as caught:
        resolver(tmp_path, origin, **limits).resolve(f"{origin}{route}", "audio_url", scratch=tmp_path)
    detail = caught.value.body()["detail"][0]
    assert detail["loc"] == ["body", "audio_url"] and message in detail["msg"]


def test_loopback_without_allowance_is_refused_before_connecting(tmp_path, origin):
    plain = UrlResolver(MediaStore(tmp_path / "files"), Config())
    with pytest.raises(InputError, match="loopback, private or link-local"):
        plain.resolve(f"{origin}/song.wav", "audio_url", scratch=tmp_path)


def test_data_uris_and_own_urls(tmp_path, origin):
    store = MediaStore(tmp_path / "files")
    plain = UrlResolver(store, Config())
    assert plain.resolve("data:audio/wav;base64,UklGRg==", "x", scratch=tmp_path).read_bytes() == b"RIFF"
    assert plain.resolve("data:text/plain,a%20b", "x", scratch=tmp_path).read_bytes() == b"a b"
    key = store.new_key("png")
    store.path(key).write_bytes(b"stored")
    own = plain.resolve(f"http://localhost:10000/files/{key}", "image_url", scratch=tmp_path)
    assert own == store.path(key)
    submitted_via = plain.resolve(f"http://thor.lan:10000/files/{key}", "image_url", scratch=tmp_path,
                                  base_url="http://thor.lan:10000")
    assert submitted_via == store.path(key)


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[2002:7f00:1::1]", "[::127.0.0.1]", "[::ffff:7f00:1]"])
def test_ipv6_forms_of_loopback_are_refused(tmp_path, host):
    plain = UrlResolver(MediaStore(tmp_path / "files"), Config())
    with pytest.raises(InputError) as caught:
        plain.resolve(f"http://{host}:9/song.wav", "audio_url", scratch=tmp_path)
    assert caught.value.body()["detail"][0]["type"] == "url_forbidden"


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused(tmp_path, origin):
    """The early check sees a public address; the connection re-resolves and finds loopback."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    policy = OutboundPolicy([], resolve=lambda host, port: next(answers))
    rebinding = UrlResolver(MediaStore(tmp_path / "files"), Config(), policy)
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(InputError) as caught:
        rebinding.resolve(f"http://rebind.example:{port}/song.wav", "audio_url", scratch=tmp_path)
    assert caught.value.body()["detail"][0]["type"] == "url_forbidden"
