"""Where the crawler may connect: http(s) only, and never to a private address unless allowed.

A page can send the crawler anywhere, with a link or a redirect: to `file:`, to the cloud
metadata service at 169.254.169.254, to a router at 192.168.0.1. `check_url` refuses schemes
other than http and https. The address check happens where the connection is made
(`SafeAdapter`, mounted on the fetcher's session): the host name is resolved, every address it
resolves to is checked before connecting, and the peer address of the connected socket is
checked again before a byte is sent, so a name that resolves to a public address once and a
private one the next time (DNS rebinding) is still refused.

Refused: every address that is not globally routable (Python's `ipaddress` `is_global`:
private, loopback, link-local, shared, reserved, documentation, unspecified) and multicast,
IPv4-mapped IPv6 addresses included, unless a network in `allow_networks` contains it.
Proxies are never used (the session ignores the environment), because the peer would then be
the proxy.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

ALLOWED_SCHEMES = ("http", "https")
# the reasons of UnsafeTarget: a target the crawler refuses, which no later attempt changes
REFUSED_REASONS = frozenset({"unsupported_scheme", "no_host", "unsafe_address"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(Exception):
    """A URL or address the crawler must not reach. Not an OSError on purpose: urllib3 would
    retry and wrap it, and the fetcher must tell it from a network failure."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # "unsupported_scheme", "no_host" or "unsafe_address"


def check_url(url: str) -> None:
    """Raise UnsafeTarget unless `url` is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeTarget("unsupported_scheme", f"{url}: only http and https are fetched")
    if not parts.hostname:
        raise UnsafeTarget("no_host", f"{url}: no host name")


class AddressPolicy:
    """Which addresses may be connected to: public ones, and those in `allow_networks`."""

    def __init__(self, allow_networks: list[str] | tuple[str, ...] = ()):
        try:
            self.allowed = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        except ValueError as exc:
            raise ValueError(f"allow_networks: {exc}") from None

    def allows(self, address: str | Address) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def check(self, address: str, host: str) -> None:
        if not self.allows(address.split("%")[0]):  # an IPv6 scope id is not part of it
            raise UnsafeTarget(
                "unsafe_address",
                f"{host} is {address}, a private/loopback/link-local/multicast/reserved "
                "address not in allow_networks",
            )

    def check_host(self, host: str, port: int) -> None:
        """Check every address `host` resolves to (name resolution errors pass through)."""
        for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            self.check(str(sockaddr[0]), host)


class _CheckedConnection(HTTPConnection):
    """Checks the resolved addresses before connecting and the peer address after. It also
    keeps what the crawler records: the peer address (`peer_address`) and when the current
    request's first bytes were handed to the socket (`sent_at`, unix time), which is as close
    to the server's arrival time as the client can know it: name resolution, connecting and
    building the request all come before it."""

    policy: AddressPolicy  # set on the per-adapter subclasses
    peer_address: str | None = None
    sent_at: float | None = None

    def _new_conn(self) -> socket.socket:
        self.policy.check_host(self._dns_host, self.port)
        sock = super()._new_conn()
        try:
            self.peer_address = str(sock.getpeername()[0])
            self.policy.check(self.peer_address, self.host)
        except UnsafeTarget:
            sock.close()
            raise
        return sock

    def putrequest(self, *args: Any, **kwargs: Any) -> None:
        self.sent_at = None  # a new request on this connection
        super().putrequest(*args, **kwargs)

    def send(self, data: Any) -> None:
        if self.sent_at is None:
            if self.sock is None:
                self.connect()  # as http.client's send would, but before the time is taken
            self.sent_at = time.time()
        super().send(data)


class _CheckedHTTPSConnection(_CheckedConnection, HTTPSConnection):
    pass


class SafeAdapter(HTTPAdapter):
    """A requests adapter whose connections obey an AddressPolicy."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any):
        self.policy = policy  # init_poolmanager (called by the base __init__) needs it
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        policy = {"policy": self.policy}
        http = type("CheckedHTTPConnection", (_CheckedConnection,), policy)
        https = type("CheckedHTTPSConnection", (_CheckedHTTPSConnection,), policy)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
