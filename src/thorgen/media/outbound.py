"""The one outbound-address policy: every URL thorgen fetches (file inputs) or posts to (webhooks).

thorgen runs on a desk machine, where a URL handed in by a web page could otherwise make it reach
the owner's router, a loopback admin port or a cloud metadata service. So an outbound connection
goes only to public addresses: loopback, private, link-local, shared, reserved and multicast
addresses are refused, and so are IPv6 forms that carry such an IPv4 address inside (IPv4-mapped
``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and 6to4 ``2002::/16``),
the local-use NAT64 prefix ``64:ff9b:1::/48``, and IPv6 loopback, unique-local and link-local ones.

``limits.fetch_allowed_hosts`` is the only way to open a private address: a host named there (as
``name`` or ``name:port``, exactly as it appears in the URL) is reached whatever it resolves to,
e.g. a NAS or a webhook receiver on the LAN.

The check holds at connect time: ``client()`` gives an httpx client whose transport resolves each
host itself, checks every address it gets, and connects only to a checked address, so a DNS answer
that changes between an early check and the connection (DNS rebinding) cannot slip through, and
every redirect hop is checked because each opens its connection through the same transport.
``check_url`` is the same check made early (at submit, before each redirect), for a clear message.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class OutboundRefused(Exception):
    """A URL or address the outbound policy does not allow; the message says why and what to set."""

    def __init__(self, message: str, *, unresolved: bool = False):
        super().__init__(message)
        self.unresolved = unresolved  # the host did not resolve at all (not a policy refusal)


def is_public(address: Address) -> bool:
    """Whether ``address`` may be reached without being opened in ``limits.fetch_allowed_hosts``."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address in _NAT64_LOCAL or address.is_site_local:
            return False
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries, which is where a packet to it really ends up."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or address in _IPV4_COMPATIBLE:  # the last 32 bits (:: and ::1 included)
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class OutboundPolicy:
    def __init__(self, allowed_hosts: Iterable[str], resolve: Resolver = system_resolve):
        self._allowed = {host.strip().lower() for host in allowed_hosts if host.strip()}
        self._resolve = resolve
        # Cluster mode: the other nodes' "host:port" (their public URLs, from the node table, renewed
        # at each heartbeat). Trusted as exactly those pairs, so a peer's file URL may be fetched
        # even on a LAN address without opening private addresses in general.
        self.peers: frozenset[str] = frozenset()

    def is_opened(self, host: str, port: int) -> bool:
        """Named in ``limits.fetch_allowed_hosts`` (with or without its port)."""
        host = host.lower().strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return bool({host, shown, f"{shown}:{port}"} & self._allowed) or f"{host}:{port}" in self.peers

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``, every one of them checked (OutboundRefused if not)."""
        host = host.strip("[]")
        try:
            found = self._resolve(host, port)
        except (OSError, UnicodeError, ValueError):
            raise OutboundRefused(f"host {host!r} does not resolve", unresolved=True) from None
        if not found:
            raise OutboundRefused(f"host {host!r} does not resolve", unresolved=True)
        if self.is_opened(host, port):
            return found
        for text in found:
            address = ipaddress.ip_address(text.split("%")[0])
            if not is_public(address):
                raise OutboundRefused(
                    f"{host} is a loopback, private or link-local address ({address}); thorgen only "
                    "connects to public addresses unless the host is listed in limits.fetch_allowed_hosts")
        return found

    def check_url(self, url: str) -> None:
        """The whole check for one URL, made before connecting: scheme, host and every address."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundRefused("only http(s) URLs with a host are allowed")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise OutboundRefused("the URL's port is not a number from 0 to 65535") from None
        self.addresses(parts.hostname, port)

    def client(self, timeout: float, *, follow_redirects: bool = False, max_redirects: int = 5) -> httpx.Client:
        """An httpx client that connects only where this policy allows, checked at connect time."""
        return httpx.Client(timeout=timeout, follow_redirects=follow_redirects, max_redirects=max_redirects,
                            trust_env=False, transport=_PolicyTransport(self))


class _PolicyTransport(httpx.HTTPTransport):
    def __init__(self, policy: OutboundPolicy):
        super().__init__(trust_env=False)
        # httpx 0.28 takes no network backend; its connection pool is rebuilt around ours. TLS still
        # verifies the certificate against the URL's host name (httpcore passes it as the SNI name).
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                             network_backend=_PolicyBackend(policy))


class _PolicyBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address, never to the name."""

    def __init__(self, policy: OutboundPolicy):
        self._policy = policy
        self._system = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._policy.addresses(host, port):
            try:
                return self._system.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise OutboundRefused("unix sockets are not an outbound address")

    def sleep(self, seconds: float) -> None:
        self._system.sleep(seconds)
