"""The running totals scripts keep in rr:{t}:counts (what /metrics shows)."""

from __future__ import annotations

from collections import Counter

from redroute import Engine
from redroute.counts import totals_by_name
from tests.support.center import pass_time, setup_center


async def test_running_totals_match_the_event_stream(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), max_requests=2, ready=True, sla_ms=1_000)
    accepted = await engine.push_task("c-1", "sales")
    await engine.accept(accepted.id, accepted.media.id)
    await engine.push_task("c-2", "sales")
    await pass_time(engine, 1_500)  # unanswered: RONA, re-routed
    declined = await engine.push_task("c-3", "sales")
    await engine.set_task_state(declined.id, "CLOSED", "RONA")  # declined: RONA at once
    await engine.close_media(accepted.id, accepted.media.id)
    await engine.set_agent_state("a1", "NOT_READY", reason_code="BREAK")
    await engine.push_task("c-4", "sales")

    events = Counter(e.type for e in await engine.events())
    counted = totals_by_name(await engine.redis.hgetall(engine.prefix + "counts"))
    assert counted.pop("RONA") == 2
    assert counted == dict(events)


def test_totals_add_each_name_over_every_mix():
    fields = {"TASK_STATE_CHANGED*2 AGENT_RESERVED AGENT_STATE_CHANGED": "3",
              "TASK_STATE_CHANGED": "5", "AGENT_RESERVED RONA": "1"}
    assert totals_by_name(fields) == {"TASK_STATE_CHANGED": 11, "AGENT_RESERVED": 4,
                              "AGENT_STATE_CHANGED": 3, "RONA": 1}
    assert totals_by_name({}) == {}
