"""Configuration can be seen and undone (docs/api.md, Configuration lists and
deletion): MRDs, queues and agents are listed in pages in id order, and
each is deleted only when nothing holds it, atomically, with its events."""

from __future__ import annotations

import pytest

from redroute import Engine
from redroute.errors import InvalidTransition, NotFound, ValidationError
from redroute.model import page_cursor
from tests.support.center import EventLog, setup_center, summary

# Lists


async def test_lists_are_in_id_order_whatever_the_order_of_creation(engine: Engine):
    await engine.put_mrd("voice")
    await engine.put_mrd("chat")
    for q in ("support", "billing", "sales"):
        await engine.put_queue(q, mrd_id="chat")
    for a in ("b2", "a10", "a2", "B1"):
        await engine.put_agent(a)

    assert [m.id for m in (await engine.list_mrds()).items] == ["chat", "voice"]
    assert [q.id for q in (await engine.list_queues()).items] == ["billing", "sales", "support"]
    # Byte order: upper case before lower case, "a10" before "a2".
    assert [a.id for a in (await engine.list_agents()).items] == ["B1", "a10", "a2", "b2"]


async def test_a_list_pages_with_limit_and_cursor_until_next_is_null(engine: Engine):
    await engine.put_mrd("chat")
    ids = [f"a{i:02d}" for i in range(7)]
    for a in reversed(ids):
        await engine.put_agent(a)

    seen, cursor, pages = [], None, 0
    while True:
        page = await engine.list_agents(limit=3, cursor=cursor)
        pages += 1
        seen += [a.id for a in page.items]
        if page.next is None:
            break
        cursor = page.next
    assert seen == ids and pages == 3


async def test_a_full_last_page_has_no_next(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_mrd("voice")

    page = await engine.list_mrds(limit=2)

    assert [m.id for m in page.items] == ["chat", "voice"] and page.next is None


async def test_a_cursor_stays_right_when_ids_are_added_and_deleted_between_pages(engine: Engine):
    await engine.put_mrd("chat")
    for a in ("a1", "a2", "a3", "a4"):
        await engine.put_agent(a)
    first = await engine.list_agents(limit=2)

    await engine.delete_agent("a2")  # the page's last id
    await engine.put_agent("a0")  # before the cursor: not seen again
    await engine.put_agent("a5")  # after it: on a later page

    rest = await engine.list_agents(limit=10, cursor=first.next)
    assert [a.id for a in first.items] == ["a1", "a2"]
    assert [a.id for a in rest.items] == ["a3", "a4", "a5"]


async def test_list_items_have_the_shape_of_the_single_reads(engine: Engine):
    await setup_center(engine, ready=True)
    await engine.push_task("c1", "sales")
    await engine.push_task("c2", "sales")

    assert (await engine.list_mrds()).items == [await engine.get_mrd("chat")]
    assert (await engine.list_agents()).items == [await engine.get_agent("a1")]
    (queue,) = (await engine.list_queues()).items
    single = await engine.get_queue("sales")
    assert queue.waiting == single.waiting == 1 and queue.agents == single.agents == {"BUSY": 1}
    assert queue.oldest_wait_ms is not None
    assert queue.to_dict().keys() == single.to_dict().keys()


async def test_empty_lists(engine: Engine):
    for page in (await engine.list_mrds(), await engine.list_queues(), await engine.list_agents()):
        assert page.items == [] and page.next is None


@pytest.mark.parametrize("limit", [0, 1001, -1, "10", 2.5, True])
async def test_a_limit_outside_1_to_1000_is_refused(engine: Engine, limit):
    with pytest.raises(ValidationError, match="limit"):
        await engine.list_agents(limit=limit)


@pytest.mark.parametrize("cursor", ["", "!!", "a b", "YTo", "x" * 200, "YWdlbnQ6MQ"])
async def test_a_cursor_no_list_returned_is_refused(engine: Engine, cursor):
    # "YTo" is "a:" and "YWdlbnQ6MQ" "agent:1": not ids, so never cursors.
    with pytest.raises(ValidationError, match="cursor"):
        await engine.list_agents(cursor=cursor)


async def test_config_written_before_the_id_index_is_listed_and_the_index_completed(engine: Engine):
    # The scripts before lists kept only the sets: drop the indexes to get
    # what such a tenant holds.
    await setup_center(engine, agents=("a2", "a1"), queues=("sales", "billing"))
    await engine.put_mrd("voice")
    k = engine.keys
    await engine.redis.delete(k.index("mrds"), k.index("queues"), k.index("agents"))

    assert [a.id for a in (await engine.list_agents(limit=1)).items] == ["a1"]
    page = await engine.list_queues(limit=1)
    assert [q.id for q in (await engine.list_queues(cursor=page.next)).items] == ["sales"]
    await engine.put_mrd("email")  # a write completes the index too
    assert await engine.redis.zrange(k.index("mrds"), 0, -1) == ["chat", "email", "voice"]
    assert await engine.redis.zrange(k.index("agents"), 0, -1) == ["a1", "a2"]


# Deleting an MRD


async def test_deleting_an_mrd_removes_it_from_every_agents_states_with_their_events(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.put_mrd("voice")
    await engine.set_agent_state("a1", "READY")
    log = EventLog(engine)
    await log.skip()

    await engine.delete_mrd("voice")

    with pytest.raises(NotFound):
        await engine.get_mrd("voice")
    assert [m.id for m in (await engine.list_mrds()).items] == ["chat"]
    for a in ("a1", "a2"):
        assert [m.mrd_id for m in (await engine.get_agent(a)).mrd_states] == ["chat"]
    events = await log.take()
    assert [summary(e) for e in events[:-1]] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "LOGOUT", None, 0),)),
    ]
    assert (events[-1].type, events[-1].data) == ("MRD_DELETED", {"mrdId": "voice"})
    assert not any(f.startswith("voice|") for f in await engine.redis.hgetall(engine.keys.agent("a1")))


async def test_an_agent_ready_only_on_a_deleted_mrd_becomes_not_ready(engine: Engine):
    await setup_center(engine, queues=())
    await engine.put_agent("a1")
    await engine.set_agent_state("a1", "LOGIN")
    await engine.set_agent_state("a1", "READY", mrd_id="chat")

    await engine.delete_mrd("chat")

    agent = await engine.get_agent("a1")
    assert agent.state == "NOT_READY" and agent.mrd_states == []


async def test_an_mrd_a_queue_uses_cannot_be_deleted_and_the_error_names_the_queues(engine: Engine):
    await setup_center(engine, agents=(), queues=("sales", "billing"))

    with pytest.raises(InvalidTransition, match="used by queues billing, sales"):
        await engine.delete_mrd("chat")

    assert (await engine.get_mrd("chat")).id == "chat"


async def test_an_mrd_an_agent_holds_tasks_on_cannot_be_deleted_and_the_error_names_the_agent(
    engine: Engine,
):
    await setup_center(engine, queues=())
    await engine.put_agent("a1")
    await engine.set_agent_state("a1", "READY")
    await engine.pull_task("a1", "c1", "chat")
    log = EventLog(engine)
    await log.skip()

    with pytest.raises(InvalidTransition, match="open tasks of agents a1"):
        await engine.delete_mrd("chat")

    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 1
    assert await log.take() == []


async def test_deleting_an_unknown_mrd_is_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.delete_mrd("nope")


async def test_an_mrd_created_again_after_deletion_starts_fresh_for_every_agent(engine: Engine):
    await setup_center(engine, queues=())
    await engine.put_mrd("voice")
    await engine.put_agent("a1")
    await engine.set_agent_state("a1", "READY")
    await engine.delete_mrd("voice")

    await engine.put_mrd("voice")

    # Logged in, never set on this MRD: NOT_READY, as for any new MRD.
    assert (await engine.get_agent("a1")).mrd("voice").state == "NOT_READY"


# Deleting a queue


async def test_deleting_a_queue_removes_it_and_its_keys(engine: Engine):
    await setup_center(engine, agents=(), queues=("sales", "billing"))
    log = EventLog(engine)
    await log.skip()

    await engine.delete_queue("sales")

    with pytest.raises(NotFound):
        await engine.get_queue("sales")
    with pytest.raises(NotFound):
        await engine.push_task("c1", "sales")
    assert [q.id for q in (await engine.list_queues()).items] == ["billing"]
    assert [(e.type, e.data) for e in await log.take()] == [("QUEUE_DELETED", {"queueId": "sales"})]
    assert await engine.redis.keys(engine.keys.prefix.replace("{", "[{]") + "q:sales*") == []


async def test_a_queue_agents_list_cannot_be_deleted_and_the_error_names_them(engine: Engine):
    await setup_center(engine, agents=("a2", "a1"))

    with pytest.raises(InvalidTransition, match="listed by agents a1, a2"):
        await engine.delete_queue("sales")

    assert (await engine.get_queue("sales")).agents == {"LOGOUT": 2}


async def test_a_queue_with_waiting_tasks_cannot_be_deleted(engine: Engine):
    await setup_center(engine, agents=())
    await engine.push_task("c1", "sales")
    await engine.push_task("c2", "sales")

    with pytest.raises(InvalidTransition, match="has 2 waiting tasks"):
        await engine.delete_queue("sales")

    assert (await engine.get_queue("sales")).waiting == 2


async def test_a_queue_with_a_reserved_task_cannot_be_deleted_even_once_no_agent_lists_it(
    engine: Engine,
):
    # A RONA would route the task back to the queue.
    await setup_center(engine, ready=True)
    task = await engine.push_task("c1", "sales")
    await engine.put_agent("a1", queues=[])

    with pytest.raises(InvalidTransition, match=f"has reserved tasks {task.id}"):
        await engine.delete_queue("sales")


async def test_a_queue_whose_tasks_were_accepted_can_be_deleted_and_they_go_on(engine: Engine):
    await setup_center(engine, ready=True)
    task = await engine.push_task("c1", "sales")
    await engine.accept(task.id, task.media.id)
    await engine.put_agent("a1", queues=[])

    await engine.delete_queue("sales")

    closed = await engine.close_media(task.id, task.media.id)
    assert closed.state == "CLOSED" and closed.queue_id == "sales"


async def test_deleting_an_unknown_queue_is_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.delete_queue("nope")


# Deleting an agent


async def test_deleting_a_logged_in_agent_logs_it_out_then_deletes_it(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    log = EventLog(engine)
    await log.skip()

    await engine.delete_agent("a1")

    with pytest.raises(NotFound):
        await engine.get_agent("a1")
    events = await log.take()
    assert summary(events[0]) == ("AGENT_STATE_CHANGED", "a1", (("chat", "LOGOUT", None, 0),))
    assert events[0].agent["state"]["name"] == "LOGOUT"
    assert (events[1].type, events[1].data) == ("AGENT_DELETED", {"agentId": "a1"})
    assert len(events) == 2
    assert (await engine.get_queue("sales")).agents == {"READY": 1}


async def test_a_deleted_agent_leaves_every_availability_index_and_is_offered_nothing(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"), queues=("sales", "billing"), ready=True)
    await engine.delete_agent("a1")

    for q in ("sales", "billing"):
        assert await engine.redis.zrange(engine.keys.q_avail(q), 0, -1) == ["a2"]
        assert await engine.redis.smembers(engine.keys.q_members(q)) == {"a2"}
    task = await engine.push_task("c1", "sales")
    assert task.assigned_to == "a2"


async def test_deleting_a_logged_out_agent_emits_only_agent_deleted(engine: Engine):
    await setup_center(engine)
    log = EventLog(engine)
    await log.skip()

    await engine.delete_agent("a1")

    assert [(e.type, e.data) for e in await log.take()] == [("AGENT_DELETED", {"agentId": "a1"})]
    assert [a.id for a in (await engine.list_agents()).items] == []


@pytest.mark.parametrize("accepted", [False, True], ids=["reserved", "active"])
async def test_an_agent_holding_tasks_cannot_be_deleted_and_the_error_names_them(
    engine: Engine, accepted: bool,
):
    await setup_center(engine, ready=True, max_requests=2)
    t1 = await engine.push_task("c1", "sales")
    t2 = await engine.push_task("c2", "sales")
    if accepted:
        await engine.accept(t1.id, t1.media.id)
    log = EventLog(engine)
    await log.skip()

    with pytest.raises(InvalidTransition, match=f"holds tasks {t1.id}, {t2.id}"):
        await engine.delete_agent("a1")

    assert (await engine.get_agent("a1")).state == "READY"
    assert await log.take() == []


async def test_an_agent_in_wrap_up_cannot_be_deleted(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    task = await engine.push_task("c1", "sales")
    await engine.accept(task.id, task.media.id)
    await engine.set_task_state(task.id, "WRAP_UP")

    with pytest.raises(InvalidTransition, match=task.id):
        await engine.delete_agent("a1")


async def test_an_agent_tasks_wait_for_as_their_preferred_agent_cannot_be_deleted(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    task = await engine.push_task("c1", "sales", preferred_agent_id="a2",
                                  preferred_agent_timeout_ms=10_000)

    with pytest.raises(InvalidTransition, match=f"preferred agent of waiting tasks {task.id}"):
        await engine.delete_agent("a2")

    assert (await engine.get_agent("a2")).id == "a2"


async def test_a_queue_whose_only_waiting_task_waits_for_its_preferred_agent_cannot_be_deleted(
    engine: Engine,
):
    await setup_center(engine, agents=("a1",))
    await engine.put_agent("a2")
    await engine.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=10_000)
    await engine.put_agent("a1", queues=[])

    with pytest.raises(InvalidTransition, match="has 1 waiting tasks"):
        await engine.delete_queue("sales")


async def test_deleting_an_unknown_agent_is_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.delete_agent("nope")


async def test_an_agent_created_again_after_deletion_starts_logged_out(engine: Engine):
    await setup_center(engine, ready=True)
    await engine.delete_agent("a1")

    agent = await engine.put_agent("a1", queues=["sales"])

    assert agent.state == "LOGOUT" and agent.mrd("chat").state == "LOGOUT"


# References


async def test_an_agent_naming_an_unknown_queue_is_not_found_and_nothing_changes(engine: Engine):
    await setup_center(engine)
    log = EventLog(engine)
    await log.skip()

    with pytest.raises(NotFound, match="queue nope does not exist"):
        await engine.put_agent("a1", queues=["sales", "nope"])
    with pytest.raises(NotFound):
        await engine.put_agent("a9", queues=["nope"])

    assert (await engine.get_agent("a1")).queues == ["sales"]
    with pytest.raises(NotFound):
        await engine.get_agent("a9")
    assert await log.take() == []


def test_a_cursor_is_opaque_but_stable():
    assert page_cursor("a1") == page_cursor("a1") != "a1"
