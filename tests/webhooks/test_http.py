"""The webhook endpoints over HTTP with the Python client: the contract's
shapes, 204 and 404, pagination, hostile input (422, nothing changes),
SSRF refusals, and deliveries listed and retried through the API."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from redroute.errors import InvalidTransition, NotFound, ValidationError
from redroute.http import Settings
from redroute.webhooks.dispatcher import Dispatcher
from tests.support.http import Server, server_fixture, start_server  # noqa: F401
from tests.support.receiver import Receiver
from tests.support.webhooks import FAST, contact_center

URL = "https://hooks.example.com/in"
SECRET = "http-secret-4c2b0a"


async def test_put_get_list_delete(server: Server):
    c = server.client
    status, doc = await c.request("PUT", "/v1/webhooks/wh-1", {
        "url": URL, "secret": SECRET, "types": ["TASK_STATE_CHANGED"], "queueIds": ["sales"],
        "enabled": True})
    assert status == 200
    assert doc == {"id": "wh-1", "url": URL, "types": ["TASK_STATE_CHANGED"],
                   "queueIds": ["sales"], "enabled": True, "createdAt": doc["createdAt"],
                   "updatedAt": doc["updatedAt"], "deliveries": {"pending": 0, "failed": 0}}
    assert (await c.request("GET", "/v1/webhooks/wh-1"))[1] == doc
    await c.put_webhook("wh-2", url=URL, secret=SECRET)
    status, listed = await c.request("GET", "/v1/webhooks?limit=1")
    assert [w["id"] for w in listed["webhooks"]] == ["wh-1"] and listed["next"] == "wh-1"
    _, rest = await c.request("GET", f"/v1/webhooks?limit=1&cursor={listed['next']}")
    assert [w["id"] for w in rest["webhooks"]] == ["wh-2"]
    _, last = await c.request("GET", "/v1/webhooks?limit=1&cursor=wh-2")
    assert last == {"webhooks": [], "next": None}
    status, body = await c.request("DELETE", "/v1/webhooks/wh-1")
    assert (status, body) == (204, "")
    with pytest.raises(NotFound):
        await c.request("DELETE", "/v1/webhooks/wh-1")
    with pytest.raises(NotFound):
        await c.get_webhook("wh-1")
    assert [w.id for w in (await c.list_webhooks()).items] == ["wh-2"]
    assert SECRET not in json.dumps([doc, listed, rest])


@pytest.mark.parametrize("body", [
    {"url": "ftp://x.example.com", "secret": "s"},
    {"url": "http://127.0.0.1:9/in", "secret": "s"},
    {"url": "http://localhost/in", "secret": "s"},
    {"url": "http://10.0.0.5/in", "secret": "s"},
    {"url": "http://[::1]/in", "secret": "s"},
    {"url": URL, "secret": "x" * 2000},
    {"url": URL, "secret": ""},
    {"url": URL},
    {"url": URL, "secret": "s", "types": ["NOPE"]},
    {"url": URL, "secret": "s", "queueIds": ["a:b"]},
    {"url": URL, "secret": "s", "enabled": "yes"},
    {"url": URL, "secret": "s", "extra": 1},
])
async def test_hostile_bodies_are_422_and_change_nothing(server: Server, body):
    await server.client.put_webhook("wh-1", url=URL, secret=SECRET)
    before = await server.client.get_webhook("wh-1")
    with pytest.raises(ValidationError) as e:
        await server.client.request("PUT", "/v1/webhooks/wh-1", body)
    assert e.value.http_status == 422  # type: ignore[attr-defined]
    assert "x" * 50 not in json.dumps(e.value.problem)  # type: ignore[attr-defined]
    assert await server.client.get_webhook("wh-1") == before


@pytest.mark.parametrize("path", [
    "/v1/webhooks?limit=0", "/v1/webhooks?limit=5000", "/v1/webhooks?cursor=%20x",
    "/v1/webhooks/wh-1/deliveries?status=DELIVERED", "/v1/webhooks/bad%3Aid",
])
async def test_bad_queries_and_ids_are_422(server: Server, path):
    await server.client.put_webhook("wh-1", url=URL, secret=SECRET)
    with pytest.raises(ValidationError):
        await server.client.request("GET", path)


async def test_the_openapi_document_describes_the_webhook_endpoints(server: Server):
    doc = await server.client.openapi()
    ops = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert {"putWebhook", "getWebhook", "deleteWebhook", "listWebhooks", "listDeliveries",
            "retryDelivery"} <= ops
    delete = doc["paths"]["/v1/webhooks/{webhookId}"]["delete"]["responses"]["204"]
    assert "content" not in delete
    assert "secret" not in doc["components"]["schemas"]["Webhook"]["properties"]


async def test_failed_deliveries_are_listed_and_retried_over_http(redis_server):
    import redis.asyncio as aioredis

    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    receiver = await Receiver(answer=lambda n, path: 500).start()
    settings = dataclasses.replace(FAST, give_up_ms=200)
    dispatcher = Dispatcher(redis, settings=settings, refresh=0.05)
    server = await start_server(redis, settings=Settings(require_timer_worker=False,
                                                         webhooks_allow_private=True),
                                dispatcher=dispatcher)
    try:
        c = server.client
        await c.put_webhook("wh-1", url=f"{receiver.base}/in", secret=SECRET)
        await contact_center(server.engine)
        await c.push_task("c-1", "sales")
        for _ in range(100):
            if (await c.get_webhook("wh-1")).failed:
                break
            await asyncio.sleep(0.05)
        status, page = await c.request("GET", "/v1/webhooks/wh-1/deliveries?status=FAILED")
        assert status == 200 and len(page["deliveries"]) == 1 and page["next"] is None
        dead = page["deliveries"][0]
        assert (dead["status"], dead["lastStatus"], dead["type"]) == ("FAILED", 500,
                                                                     "TASK_STATE_CHANGED")
        receiver.answer = lambda n, path: 200
        tried = len(receiver.received)
        again = await c.retry_delivery("wh-1", dead["id"])
        assert again.status == "PENDING"
        with pytest.raises(InvalidTransition):
            await c.retry_delivery("wh-1", dead["id"])
        with pytest.raises(NotFound):
            await c.retry_delivery("wh-1", "1-1")
        await receiver.wait_for(lambda: len(receiver.received) > tried)
        assert receiver.received[-1].json["id"] == dead["id"]
    finally:
        await server.stop()
        await receiver.stop()
        await redis.aclose()
