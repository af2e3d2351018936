"""The trust model over real HTTP: which Hosts are served, which web pages may change anything, and
the CORS answers browsers get (see src/thorgen/protocol/trust.py)."""

from __future__ import annotations

import httpx
import pytest
from mediagen import make_audio
from server_process import ServerProcess
from wire_helpers import upload

METADATA = "fal-ai/ffmpeg-api/metadata"
EVIL = "https://evil.example"
KIT = "http://localhost:3000"  # the video-starter-kit's dev server: allowed by default


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A server with the default trust settings (no tiny models needed: ffmpeg endpoints only)."""
    process = ServerProcess(tmp_path_factory.mktemp("trust") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def wav_url(plain, tmp_path_factory) -> str:
    return upload(plain.base_url, make_audio(tmp_path_factory.mktemp("trust-media") / "t.wav", seconds=0.5),
                  "audio/wav")


def jobs_total(base: str) -> int:
    return sum(httpx.get(f"{base}/info").json()["jobs"].values())


# -- Hosts (DNS rebinding) -------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("POST", f"/queue/{METADATA}"),
    ("GET", "/info"),
    ("POST", "/rest/storage/upload/initiate"),
    ("POST", "/api/fal"),
])
def test_foreign_host_is_refused_with_421_naming_the_setting(plain, wav_url, method, path):
    before = jobs_total(plain.base_url)
    response = httpx.request(method, f"{plain.base_url}{path}", json={"media_url": wav_url},
                             headers={"host": f"attacker.example:{plain.port}",
                                      "x-fal-target-url": f"https://queue.fal.run/{METADATA}"})
    assert response.status_code == 421, response.text
    body = response.json()
    assert body["error_type"] == "host_not_allowed" and "server.allowed_hosts" in body["detail"]
    assert "status_url" not in body and "file_url" not in body
    assert jobs_total(plain.base_url) == before


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "127.3.4.5:{port}", "[::1]:{port}",
                                  "LOCALHOST:{port}", "localhost"])
def test_loopback_hosts_are_served_and_name_the_urls(plain, wav_url, host):
    host = host.format(port=plain.port)
    submit = httpx.post(f"{plain.base_url}/queue/{METADATA}", json={"media_url": wav_url},
                        headers={"host": host})
    assert submit.status_code == 200, submit.text
    assert submit.json()["status_url"].startswith(f"http://{host}/queue/")


@pytest.mark.parametrize("host", ["localhost:1/evil", "localhost@evil.example", "evil.example#localhost",
                                  "127.0.0.1.evil.example", "localhost.evil.example", "[::2]:1"])
def test_host_lookalikes_are_refused(plain, host):
    assert httpx.get(f"{plain.base_url}/info", headers={"host": host}).status_code == 421


def test_health_and_ready_answer_any_host(plain):
    """Container and orchestrator probes address thorgen by an IP nobody lists; these two disclose
    nothing but "up" and "ready"."""
    for path in ("/health", "/ready"):
        response = httpx.get(f"{plain.base_url}{path}", headers={"host": "10.1.2.3:10000"})
        assert response.status_code in (200, 503) and response.status_code != 421


def test_allowed_hosts_are_served_and_urls_follow_them(tmp_path):
    """A browser on the LAN reaches thorgen by a listed name: every URL it gets back uses that name."""
    env = {"THORGEN_SERVER__ALLOWED_HOSTS": "thor.lan, 10.0.0.7:10000"}
    process = ServerProcess(tmp_path / "data", env=env).start()
    try:
        base, headers = process.base_url, {"host": f"thor.lan:{process.port}"}
        path = make_audio(tmp_path / "a.wav", seconds=0.5)
        audio = upload(base, path, "audio/wav")
        submit = httpx.post(f"{base}/queue/{METADATA}", json={"media_url": audio}, headers=headers).json()
        assert submit["status_url"].startswith(f"http://thor.lan:{process.port}/queue/")
        initiate = httpx.post(f"{base}/rest/storage/upload/initiate", headers=headers,
                              json={"content_type": "image/png", "file_name": "x.png"}).json()
        assert initiate["upload_url"].startswith(f"http://thor.lan:{process.port}/uploads/")
        assert initiate["file_url"].startswith(f"http://thor.lan:{process.port}/files/")
        # An entry with a port allows that port only.
        assert httpx.get(f"{base}/info", headers={"host": "10.0.0.7:10000"}).status_code == 200
        assert httpx.get(f"{base}/info", headers={"host": "10.0.0.7:10001"}).status_code == 421
        assert httpx.get(f"{base}/info", headers={"host": "other.lan"}).status_code == 421
    finally:
        process.stop()


def test_public_url_host_is_served(tmp_path):
    process = ServerProcess(tmp_path / "data", env={"THORGEN_SERVER__PUBLIC_URL": "https://media.example.org"}).start()
    try:
        assert httpx.get(f"{process.base_url}/info", headers={"host": "media.example.org"}).status_code == 200
        assert httpx.get(f"{process.base_url}/info", headers={"host": "evil.example.org"}).status_code == 421
    finally:
        process.stop()


# -- Origins (cross-site request forgery) ----------------------------------------------------------

def test_page_on_another_origin_cannot_submit(plain, wav_url):
    before = jobs_total(plain.base_url)
    for headers in ({"origin": EVIL}, {"origin": EVIL, "content-type": "text/plain"}, {"origin": "null"}):
        response = httpx.post(f"{plain.base_url}/queue/{METADATA}", headers=headers,
                              content=f'{{"media_url": "{wav_url}"}}')
        assert response.status_code == 403, response.text
        assert response.json()["error_type"] == "origin_not_allowed"
        assert "server.cors_origins" in response.json()["detail"]
        assert "access-control-allow-origin" not in response.headers
    assert jobs_total(plain.base_url) == before


@pytest.mark.parametrize("method,path", [
    ("POST", f"/run/{METADATA}"),
    ("PUT", f"/queue/{METADATA}/requests/0123/cancel"),
    ("POST", "/rest/storage/upload/initiate"),
    ("PUT", f"/uploads/{'0' * 32}.wav?token=open"),
    ("PUT", f"/uploads/{'0' * 32}.wav/multipart/1?token=open"),
    ("POST", f"/uploads/{'0' * 32}.wav/multipart/complete?token=open"),
    ("POST", "/cdn/files/upload"),
    ("DELETE", "/api/fal"),
])
def test_every_state_change_from_a_foreign_origin_is_refused(plain, method, path):
    response = httpx.request(method, f"{plain.base_url}{path}", json={}, headers={"origin": EVIL})
    assert response.status_code == 403 and response.json()["error_type"] == "origin_not_allowed"


def test_foreign_upload_put_cannot_write_a_file(plain):
    initiate = httpx.post(f"{plain.base_url}/rest/storage/upload/initiate",
                          json={"content_type": "audio/wav", "file_name": "t.wav"}).json()
    assert httpx.put(initiate["upload_url"], content=b"RIFF", headers={"origin": EVIL}).status_code == 403
    assert httpx.get(initiate["file_url"]).status_code == 404


@pytest.mark.parametrize("origin", [KIT, "http://127.0.0.1:3000", "http://localhost:3000/"])
def test_the_kits_dev_origin_may_submit_and_reads_its_answer(plain, wav_url, origin):
    response = httpx.post(f"{plain.base_url}/queue/{METADATA}", json={"media_url": wav_url},
                          headers={"origin": origin})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert "origin" in response.headers["vary"].lower()
    assert "x-fal-request-id" in response.headers["access-control-expose-headers"]


def test_next_rewrite_of_the_kit_keeps_working(plain, wav_url):
    """The editor's /api/fal rewrite: Host is thorgen's, the browser's Origin is forwarded."""
    response = httpx.post(f"{plain.base_url}/api/fal", json={"media_url": wav_url}, headers={
        "host": f"localhost:{plain.port}", "origin": KIT, "x-fal-target-url": f"https://queue.fal.run/{METADATA}"})
    assert response.status_code == 200, response.text
    assert response.json()["status_url"].startswith(f"http://localhost:{plain.port}/queue/")


def test_same_origin_and_originless_requests_pass(plain, wav_url):
    own = httpx.post(f"{plain.base_url}/queue/{METADATA}", json={"media_url": wav_url},
                     headers={"origin": plain.base_url})
    assert own.status_code == 200 and own.headers["access-control-allow-origin"] == plain.base_url
    bare = httpx.post(f"{plain.base_url}/queue/{METADATA}", json={"media_url": wav_url})
    assert bare.status_code == 200 and "access-control-allow-origin" not in bare.headers


def test_api_reads_never_answer_star_and_name_only_allowed_origins(plain):
    foreign = httpx.get(f"{plain.base_url}/info", headers={"origin": EVIL})
    assert foreign.status_code == 200  # a read changes nothing; the browser just may not show it to the page
    assert "access-control-allow-origin" not in foreign.headers
    assert "origin" in foreign.headers["vary"].lower()
    for path in ("/health", "/info", "/endpoints", f"/queue/{METADATA}/requests/x/status"):
        kit = httpx.get(f"{plain.base_url}{path}", headers={"origin": KIT})
        assert kit.headers["access-control-allow-origin"] == KIT


def test_preflights_answer_allowed_origins_only(plain):
    asked = "content-type,authorization,x-fal-target-url,x-fal-queue-priority"
    ok = httpx.options(f"{plain.base_url}/api/fal", headers={
        "origin": KIT, "access-control-request-method": "POST", "access-control-request-headers": asked})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == KIT
    for header in asked.split(","):
        assert header in ok.headers["access-control-allow-headers"].lower()
    denied = httpx.options(f"{plain.base_url}/api/fal", headers={
        "origin": EVIL, "access-control-request-method": "POST", "access-control-request-headers": asked})
    assert denied.status_code == 403 and "access-control-allow-origin" not in denied.headers
    put = httpx.options(f"{plain.base_url}/uploads/{'0' * 32}.png", headers={
        "origin": EVIL, "access-control-request-method": "PUT"})
    assert put.status_code == 403 and "access-control-allow-origin" not in put.headers


# -- JSON declared as JSON, and GET never starts a job ---------------------------------------------

@pytest.mark.parametrize("path", [f"/queue/{METADATA}", f"/run/{METADATA}", "/rest/storage/upload/initiate"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_json_body_must_be_declared_json(plain, wav_url, path, content_type):
    """A text/plain POST is what a page can send without a preflight: it must not be parsed."""
    before = jobs_total(plain.base_url)
    headers = {"content-type": content_type} if content_type else {}
    body = f'{{"media_url": "{wav_url}", "content_type": "audio/wav"}}'.encode()
    response = httpx.post(f"{plain.base_url}{path}", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error_type"] == "unsupported_media_type" and "application/json" in response.json()["detail"]
    assert jobs_total(plain.base_url) == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.fal+json"])
def test_json_content_types_are_accepted(plain, wav_url, content_type):
    response = httpx.post(f"{plain.base_url}/queue/{METADATA}", content=f'{{"media_url": "{wav_url}"}}',
                          headers={"content-type": content_type})
    assert response.status_code == 200, response.text


def test_get_never_runs_a_job(plain, wav_url):
    before = jobs_total(plain.base_url)
    response = httpx.get(f"{plain.base_url}/run/{METADATA}", params={"media_url": wav_url})
    assert response.status_code == 405 and "POST" in response.json()["detail"]
    proxied = httpx.get(f"{plain.base_url}/api/fal", params={"media_url": wav_url},
                        headers={"x-fal-target-url": f"https://fal.run/{METADATA}?media_url={wav_url}"})
    assert proxied.status_code == 405
    assert jobs_total(plain.base_url) == before


# -- Public file reads: one CORS answer whatever the browser cached ----------------------------------

@pytest.mark.parametrize("origin", [None, KIT, EVIL])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_file_reads_always_answer_star(plain, wav_url, origin, method):
    """A <video> loads a file without CORS and the browser caches that answer; the player's later
    fetch() of the same URL is served from the cache, so the cached answer must already allow it."""
    headers = {"origin": origin} if origin else {}
    response = httpx.request(method, wav_url, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "origin" not in response.headers.get("vary", "").lower()  # one answer for every origin
    ranged = httpx.request(method, wav_url, headers={**headers, "range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["access-control-allow-origin"] == "*"
    assert "content-range" in ranged.headers["access-control-expose-headers"]


def test_file_preflight_is_answered_for_any_origin(plain, wav_url):
    response = httpx.options(wav_url, headers={"origin": EVIL, "access-control-request-method": "GET",
                                               "access-control-request-headers": "range"})
    assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
    assert "range" in response.headers["access-control-allow-headers"]


# -- Configuration ----------------------------------------------------------------------------------

def test_defaults_allow_only_the_kits_dev_origins():
    from pathlib import Path

    from thorgen.config import Config, load_config

    shipped = load_config(Path(__file__).parents[2] / "config.toml", environ={})
    for config in (shipped, Config()):
        assert config.server.cors_origins == ["http://localhost:3000", "http://127.0.0.1:3000"]
        assert config.server.allowed_hosts == [] and config.server.metrics_public is False


@pytest.mark.parametrize("value", ["localhost:3000", "http://localhost:3000/app", "ftp://x"])
def test_a_malformed_origin_is_refused_naming_the_key(value):
    from thorgen.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="server.cors_origins"):
        load_config(None, environ={"THORGEN_SERVER__CORS_ORIGINS": value})
