"""Shared test helpers: a standard setup and a reader of the events a step
produced, so tests can assert the exact events of each step in order."""

from __future__ import annotations

from typing import Any

from redroute import Engine
from redroute.events import Event


class EventLog:
    """Reads the tenant's stream from where the last take() stopped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last = "-"

    async def skip(self) -> None:
        """Forgets everything emitted so far (e.g. by the setup)."""
        await self.take()

    async def take(self) -> list[Event]:
        events = await self.engine.events(self.last)
        if events:
            self.last = events[-1].id
        return events

    async def types(self) -> list[str]:
        return [e.type.value for e in await self.take()]


def summary(e: Event) -> tuple[Any, ...]:
    """A compact, comparable view of one event."""
    if e.type == "AGENT_STATE_CHANGED":
        a = e.data["agent"]
        return (e.type.value, a["id"], tuple((m["mrdId"], m["state"], m["reasonCode"], m["activeTasks"])
                                             for m in a["mrdStates"]))
    t = e.data["task"]
    media = tuple(m["state"] for m in t["activeMedia"])
    base = (e.type.value, t["id"], t["state"]["name"], t["state"]["reasonCode"], media)
    if e.type == "AGENT_RESERVED":
        return (*base, e.data["agentId"])
    if e.type == "TASK_STATE_CHANGED":
        return (*base, e.data["taskStateChanged"], tuple(e.data["mediaStateChanges"]))
    return base


async def setup_center(
    engine: Engine,
    *,
    agents: tuple[str, ...] = ("a1",),
    queues: tuple[str, ...] = ("sales",),
    mrd: str = "chat",
    max_requests: int = 1,
    wrap_up: bool = False,
    wrap_up_timeout_ms: int = 60_000,
    auto_join: bool = False,
    sla_ms: int = 30_000,
    ttl_ms: int = 300_000,
    policy: str = "LONGEST_AVAILABLE",
    ready: bool = False,
) -> None:
    """One MRD, its queues, and agents in all of them (LOGOUT unless ready)."""
    await engine.put_mrd(mrd, max_requests=max_requests, auto_join=auto_join,
                         wrap_up_enabled=wrap_up, wrap_up_timeout_ms=wrap_up_timeout_ms)
    for q in queues:
        await engine.put_queue(q, mrd_id=mrd, agent_sla_ms=sla_ms, agent_request_ttl_ms=ttl_ms,
                               agent_selection_policy=policy)
    for a in agents:
        await engine.put_agent(a, queues=list(queues))
        if ready:
            await engine.set_agent_state(a, "READY")


async def pass_time(engine: Engine, ms: int) -> int:
    """Lets ms pass on the tenant's clock and fires what became due; returns
    how many deadlines fired."""
    await engine.advance_clock(ms)
    return (await engine.fire_due()).fired
