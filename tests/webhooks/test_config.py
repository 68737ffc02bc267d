"""Webhook configuration on the engine (both backends): PUT, GET, list,
DELETE, and hostile input that is refused and changes nothing."""

from __future__ import annotations

import pytest

from redroute import Engine
from redroute.errors import NotFound, ValidationError

URL = "https://hooks.example.com/redroute"


async def test_a_webhook_is_stored_and_read_without_its_secret(engine: Engine):
    w = await engine.put_webhook("wh-1", url=URL, secret="s3cret-value",
                                 types=["TASK_STATE_CHANGED"], queue_ids=["sales"])
    assert w.to_dict() == {
        "id": "wh-1", "url": URL, "types": ["TASK_STATE_CHANGED"], "queueIds": ["sales"],
        "enabled": True, "createdAt": w.created_at, "updatedAt": w.updated_at,
        "deliveries": {"pending": 0, "failed": 0}}
    assert "s3cret-value" not in str(w.to_dict())
    assert await engine.get_webhook("wh-1") == w


async def test_replacing_a_webhook_keeps_its_creation_time(engine: Engine):
    first = await engine.put_webhook("wh-1", url=URL, secret="a")
    await engine.advance_clock(5)
    second = await engine.put_webhook("wh-1", url=URL + "/v2", secret="b", enabled=False)
    assert second.created_at == first.created_at
    assert second.updated_at >= first.created_at + 5
    assert (second.url, second.enabled, second.types, second.queue_ids) == (URL + "/v2", False,
                                                                           None, None)


async def test_webhooks_are_listed_in_id_order_page_by_page(engine: Engine):
    for i in (3, 1, 2, 5, 4):
        await engine.put_webhook(f"wh-{i}", url=URL, secret="x")
    first = await engine.list_webhooks(limit=2)
    assert [w.id for w in first.items] == ["wh-1", "wh-2"]
    second = await engine.list_webhooks(limit=2, cursor=first.next)
    assert [w.id for w in second.items] == ["wh-3", "wh-4"]
    third = await engine.list_webhooks(limit=2, cursor=second.next)
    assert [w.id for w in third.items] == ["wh-5"] and third.next is None


async def test_delete_removes_the_webhook_and_a_second_delete_is_not_found(engine: Engine):
    await engine.put_webhook("wh-1", url=URL, secret="x")
    await engine.delete_webhook("wh-1")
    with pytest.raises(NotFound):
        await engine.get_webhook("wh-1")
    with pytest.raises(NotFound):
        await engine.delete_webhook("wh-1")
    assert (await engine.list_webhooks()).items == []


@pytest.mark.parametrize("change", [
    {"url": "ftp://hooks.example.com/x"},
    {"url": "https://user:pw@hooks.example.com/x"},
    {"url": "not a url"},
    {"url": "https:///nohost"},
    {"url": "https://hooks.example.com/" + "x" * 3000},
    {"secret": ""},
    {"secret": "x" * 5000},
    {"secret": "bad\nsecret"},
    {"types": ["TASK_EXPLODED"]},
    {"types": []},
    {"queue_ids": ["bad:queue"]},
    {"queue_ids": ["q"] * 300},
    {"webhook_id": "bad:id"},
    {"webhook_id": "{other}"},
])
async def test_hostile_input_is_refused_and_changes_nothing(engine: Engine, change):
    await engine.put_webhook("wh-1", url=URL, secret="kept")
    before = await engine.get_webhook("wh-1")
    args = {"webhook_id": "wh-1", "url": URL, "secret": "s", **change}
    with pytest.raises(ValidationError) as e:
        await engine.put_webhook(args.pop("webhook_id"), **args)
    assert "kept" not in str(e.value) and "x" * 100 not in str(e.value)
    assert await engine.get_webhook("wh-1") == before
    assert [w.id for w in (await engine.list_webhooks()).items] == ["wh-1"]


@pytest.mark.parametrize("call", [
    lambda e: e.list_webhooks(limit=0),
    lambda e: e.list_webhooks(limit=1001),
    lambda e: e.list_webhooks(cursor="bad cursor"),
    lambda e: e.list_deliveries("wh-1", status="DELIVERED"),
    lambda e: e.retry_delivery("wh-1", "bad:id"),
])
async def test_bad_list_and_retry_arguments_are_refused(engine: Engine, call):
    with pytest.raises(ValidationError):
        await call(engine)


async def test_deliveries_of_an_unknown_webhook_are_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.list_deliveries("nope")
    with pytest.raises(NotFound):
        await engine.retry_delivery("nope", "1-0")
