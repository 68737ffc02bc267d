"""Webhooks cannot make the server call its own network: loopback, RFC 1918,
link-local and their IPv6 forms, names that resolve to them, and redirects
are refused unless the operator allows private targets."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

import pytest

from redroute import Engine
from redroute.errors import ValidationError
from redroute.webhooks import ssrf
from tests.support.receiver import Receiver
from tests.support.webhooks import FAST, contact_center, dispatching

REFUSED = [
    "http://127.0.0.1/in", "http://127.1/in", "http://2130706433/in", "http://0.0.0.0/in",
    "http://10.1.2.3/in", "http://172.16.5.4/in", "http://192.168.1.10:8080/in",
    "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/in",
    "http://[::1]/in", "http://[fc00::1]/in", "http://[fd12:3456::1]/in", "http://[fe80::1]/in",
    "http://[::ffff:127.0.0.1]/in", "http://[::ffff:10.0.0.1]/in", "http://[64:ff9b::a00:1]/in",
    "http://localhost/in", "https://LocalHost:8443/in",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_targets_are_refused_when_written(engine: Engine, url: str):
    with pytest.raises(ValidationError, match="--webhooks-allow-private"):
        await engine.put_webhook("wh-1", url=url, secret="s")
    assert (await engine.list_webhooks()).items == []


@pytest.mark.parametrize("url", ["http://127.0.0.1/in", "http://localhost/in", "http://[::1]/in"])
async def test_the_operator_may_allow_private_targets(engine: Engine, url: str):
    w = await engine.put_webhook("wh-1", url=url, secret="s", allow_private=True)
    assert w.url == url


class _Resolves:
    """A resolver that answers every name with one address (DNS rebinding)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        return [{"hostname": host, "host": self.address, "port": port, "family": family,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1",
                                     "fe80::1", "::ffff:192.168.0.1"])
async def test_a_name_resolving_to_a_private_address_at_connect_time_is_refused(address: str):
    resolver = ssrf.GuardedResolver(_Resolves(address))  # type: ignore[arg-type]
    with pytest.raises(ssrf.RefusedAddress):
        await resolver.resolve("public.example.com", 443)
    assert await ssrf.GuardedResolver(_Resolves("93.184.216.34")).resolve(  # type: ignore[arg-type]
        "public.example.com", 443) != []


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def _failed_attempts(engine: Engine, webhook_id: str) -> str:
    """The lastError of the webhook's delivery once an attempt failed."""
    for _ in range(200):
        raw = await engine.redis.hvals(engine.keys.webhook_dlv(webhook_id))
        if raw and '"lastError"' in raw[0]:
            import json
            return json.loads(raw[0])["lastError"]
        await asyncio.sleep(0.02)
    raise AssertionError("no failed attempt recorded")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_dispatcher_without_the_flag_never_connects_to_a_private_target(
        engine: Engine, receiver: Receiver, host: str):
    # Written while allowed (or by a server with the flag), delivered by a
    # dispatcher without it: the connection is refused where it is made.
    await engine.put_webhook("wh-1", url=f"http://{host}:{receiver.port}/in", secret="s",
                             allow_private=True)
    async with dispatching(engine, dataclasses.replace(FAST, allow_private=False)):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        error = await _failed_attempts(engine, "wh-1")
        await asyncio.sleep(0.3)
    assert receiver.received == []
    assert "loopback" in error or "no address the server may call" in error


async def test_redirects_are_not_followed(engine: Engine, receiver: Receiver):
    receiver.answer = lambda n, path: 302 if path == "/in" else 200
    await engine.put_webhook("wh-1", url=f"{receiver.base}/in", secret="s", allow_private=True)
    async with dispatching(engine):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        await receiver.wait_for(lambda: len(receiver.at("/in")) >= 2)
        error = await _failed_attempts(engine, "wh-1")
    assert receiver.at("/redirected") == []
    assert error == "HTTP 302"  # not delivered: retried like any other non-2xx
