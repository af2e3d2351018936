"""The outbound-address policy: which addresses thorgen may connect to, checked at connect time."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from thorgen.media.outbound import OutboundPolicy, OutboundRefused, is_public


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.20", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "255.255.255.255",
    "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::7f00:1", "64:ff9b::c0a8:114", "64:ff9b::a9fe:a9fe",  # NAT64 of 127.0.0.1, 192.168.1.20, metadata
    "64:ff9b:1::808:808",  # local-use NAT64: not the well-known prefix, can lead anywhere
    "2002:7f00:1::1", "2002:c0a8:114::1", "2002:a00:1::",  # 6to4 of 127.0.0.1, 192.168.1.20, 10.0.0.1
    "::127.0.0.1", "::10.0.0.1", "::192.168.1.20",  # IPv4-compatible
])
def test_non_public_addresses_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_pass(address):
    assert is_public(ipaddress.ip_address(address))


def _policy(answers: dict[str, list[str]], allowed: list[str] | None = None) -> OutboundPolicy:
    return OutboundPolicy(allowed or [], resolve=lambda host, port: answers[host])


def test_a_name_is_refused_if_any_of_its_addresses_is_private():
    policy = _policy({"mixed.example": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(OutboundRefused, match="fetch_allowed_hosts"):
        policy.check_url("http://mixed.example/x")


def test_allowed_hosts_open_a_private_address_by_name_or_name_and_port():
    answers = {"nas.local": ["192.168.1.20"], "::1": ["::1"]}
    _policy(answers, ["nas.local"]).check_url("http://nas.local/x")
    _policy(answers, ["nas.local:8080"]).check_url("http://nas.local:8080/x")
    _policy(answers, ["[::1]:9000"]).check_url("http://[::1]:9000/x")
    with pytest.raises(OutboundRefused):
        _policy(answers, ["nas.local:8080"]).check_url("http://nas.local:9090/x")  # another port


def test_cluster_peers_open_exactly_their_host_and_port():
    """A peer node's public URL (from the node table) is trusted; nothing else on its host is."""
    policy = _policy({"thor-b.local": ["192.168.1.11"]})
    policy.peers = frozenset({"thor-b.local:10000"})
    policy.check_url("http://thor-b.local:10000/files/abc.png")
    with pytest.raises(OutboundRefused):
        policy.check_url("http://thor-b.local:22/")  # another port of the same machine
    policy.peers = frozenset()  # gone from the node table
    with pytest.raises(OutboundRefused):
        policy.check_url("http://thor-b.local:10000/files/abc.png")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost"])
def test_only_http_urls_with_a_host(url):
    with pytest.raises(OutboundRefused):
        _policy({}).check_url(url)


class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_dns_rebinding_is_caught_at_connect_time():
    """The name is public when checked, then resolves to loopback: the client never connects there."""
    loopback = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=loopback.serve_forever, daemon=True).start()
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    policy = OutboundPolicy([], resolve=lambda host, port: next(answers))
    try:
        url = f"http://rebind.example:{loopback.server_port}/secret"
        policy.check_url(url)  # the early check sees a public address
        with policy.client(5) as client, pytest.raises(OutboundRefused, match="127.0.0.1"):
            client.get(url)
    finally:
        loopback.shutdown()
    assert _Counter.hits == []


def test_the_client_connects_to_the_checked_address():
    """An allowed name is reached at the address the policy resolved, not by a second lookup."""
    loopback = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=loopback.serve_forever, daemon=True).start()
    policy = OutboundPolicy([f"files.lan:{loopback.server_port}"],
                            resolve=lambda host, port: ["127.0.0.1"] if host == "files.lan" else [])
    try:
        with policy.client(5) as client:
            response = client.get(f"http://files.lan:{loopback.server_port}/fine")
    finally:
        loopback.shutdown()
    assert response.status_code == 200 and _Counter.hits[-1] == "/fine"
    with pytest.raises(httpx.UnsupportedProtocol):
        policy.client(5).get("ftp://files.lan/x")
