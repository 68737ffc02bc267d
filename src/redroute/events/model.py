"""The events of docs/api.md, Events, as they come out of the tenant's Redis Stream."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..model import EventType, Transition


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: EventType
    data: dict[str, Any]

    @property
    def task(self) -> dict[str, Any] | None:
        return self.data.get("task")

    @property
    def transition(self) -> Transition | None:
        """What happened, on a TASK_STATE_CHANGED; None on other types."""
        t = self.data.get("transition")
        return Transition(t) if t else None

    @property
    def agent(self) -> dict[str, Any] | None:
        return self.data.get("agent")

    @property
    def agent_id(self) -> str | None:
        """The agent the event concerns, for filtering."""
        if "agentId" in self.data:
            return self.data["agentId"]
        if self.agent is not None:
            return self.agent["id"]
        return self.task["assignedTo"] if self.task else None

    @property
    def conversation_id(self) -> str | None:
        return self.task["conversationId"] if self.task else None

    @property
    def queue_ids(self) -> tuple[str, ...]:
        """The queues the event concerns: a task's queue, or every queue an
        agent serves (so a queue's dashboard sees its agents change)."""
        if self.task is not None:
            q = self.task.get("queueId")
            return (q,) if q else ()
        if self.agent is not None:
            return tuple(self.agent.get("queues") or ())
        q = self.data.get("queueId")  # QUEUE_DELETED
        return (q,) if q else ()

    def matches(
        self,
        types: frozenset[str] | None = None,
        agent_id: str | None = None,
        queue_id: str | None = None,
        conversation_id: str | None = None,
    ) -> bool:
        """Whether the event passes the SSE filters (None = no filter)."""
        if types is not None and self.type.value not in types:
            return False
        if agent_id is not None and self.agent_id != agent_id:
            return False
        if queue_id is not None and queue_id not in self.queue_ids:
            return False
        return conversation_id is None or self.conversation_id == conversation_id


def decode_entry(entry_id: str, fields: dict[str, str]) -> Event:
    return Event(entry_id, EventType(fields["type"]), json.loads(fields["data"]))


def decode_entries(entries: list[tuple[str, dict[str, str]]]) -> list[Event]:
    return [decode_entry(i, f) for i, f in entries]
