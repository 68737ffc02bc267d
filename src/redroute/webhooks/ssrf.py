"""Where a webhook may point: the server must not be made to call its own
network (SSRF). A URL is http(s), carries no credentials, and its host must
not be, or resolve to, a loopback, private (RFC 1918, fc00::/7), link-local
or otherwise non-global address, IPv4-mapped and NAT64 IPv6 forms included,
unless the operator allows it (--webhooks-allow-private).

The check runs twice: when the webhook is written (a 422), and at every
connection, where the resolver itself drops refused addresses so the
connection goes to an address that was checked (a name cannot resolve to a
public address at the first check and to a private one at the second).
Literal IP hosts never reach a resolver; `check_target` covers them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from ..errors import ValidationError

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(OSError):
    """A webhook target that resolves only to addresses it may not call."""


def refusal(ip: IP) -> str | None:
    """Why the server may not call this address, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "not a public unicast address"
    return None


def parse_url(url: Any) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL, or ValidationError."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LENGTH:
        raise ValidationError(f"url must be a string of 1 to {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValidationError(f"url is malformed: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValidationError(f"url must be http or https; got {scheme or 'no'} scheme")
    if not parts.hostname:
        raise ValidationError("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url must not carry credentials (sign with the secret instead)")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValidationError("url must not contain spaces or control characters")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def literal_ip(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def check_target(url: str, allow_private: bool) -> None:
    """The URL's shape, and its host when it is a literal address (names
    are checked where they are resolved). Raises ValidationError."""
    _, host, _ = parse_url(url)
    ip = literal_ip(host)
    if ip is not None and not allow_private and (why := refusal(ip)):
        raise ValidationError(f"url points at a {why} address ({ip}); the server does not call "
                              "those unless its operator allows it (--webhooks-allow-private)")


async def check_url(url: str, allow_private: bool, *, timeout: float = 3.0) -> None:
    """check_target, and a name resolved now: refused if any of its
    addresses is. A name that does not resolve (yet) passes: every
    connection checks again."""
    check_target(url, allow_private)
    _, host, port = parse_url(url)
    if allow_private or literal_ip(host) is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError):
        return
    for info in infos:
        ip = literal_ip(str(info[4][0]))
        if ip is not None and (why := refusal(ip)):
            raise ValidationError(f"url host {host} resolves to a {why} address ({ip}); the server "
                                  "does not call those unless its operator allows it "
                                  "(--webhooks-allow-private)")


class GuardedResolver(AbstractResolver):
    """A resolver that only returns addresses the server may call."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        hosts = await self.inner.resolve(host, port, family)
        allowed = [h for h in hosts if (ip := literal_ip(h["host"])) is not None and not refusal(ip)]
        if not allowed:
            raise RefusedAddress(f"{host} resolves to no address the server may call")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def connector(allow_private: bool, *, limit: int = 256) -> TCPConnector:
    """The connector of every webhook request."""
    resolver = None if allow_private else GuardedResolver()
    return TCPConnector(resolver=resolver, limit=limit, limit_per_host=0,
                        ttl_dns_cache=10)
