"""A simulation scenario: the router's configuration (MRDs, queues with their
steps and policies, agents by count), the traffic (Poisson arrivals per
queue, or a recorded day) and the people (handle, accept, wrap-up and
patience durations, RONA), validated with pydantic.

`load_scenario(path)` reads a JSON file and raises ScenarioError naming the
field at fault, e.g. `queues[0].handle.meanMs: Input should be greater
than 0`. docs/simulation.md describes every field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..limits import (
    AGENT_REQUEST_TTL_MS,
    AGENT_SLA_MS,
    DEFAULT_AGENT_SLA_MS,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_PRIORITY,
    DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
    DEFAULT_WRAP_UP_TIMEOUT_MS,
    MAX_REQUESTS,
    PRIORITY,
    SERVICE_LEVEL_THRESHOLD_MS,
    WRAP_UP_TIMEOUT_MS,
)
from ..model import ID_PATTERN
from .distributions import Distribution, Exponential, Fixed

HOUR_MS = 3_600_000
MAX_DURATION_MS = 7 * 24 * HOUR_MS
MAX_REPLICATIONS = 1000
MAX_AGENTS = 100_000
ID = Field(pattern=ID_PATTERN.pattern)


class ScenarioError(ValueError):
    """A scenario that cannot run, with the field at fault named."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WrapUp(_Model):
    enabled: bool = False
    timeoutMs: int = Field(DEFAULT_WRAP_UP_TIMEOUT_MS, ge=WRAP_UP_TIMEOUT_MS[0], le=WRAP_UP_TIMEOUT_MS[1])


class MrdSpec(_Model):
    id: str = ID
    maxRequests: int = Field(DEFAULT_MAX_REQUESTS, ge=MAX_REQUESTS[0], le=MAX_REQUESTS[1])
    wrapUp: WrapUp = WrapUp()
    blocks: list[str] | None = None


class QueueSpec(_Model):
    """A queue as PUT /v1/queues takes it (the same names), plus its traffic
    defaults: handle, accept, wrapUp and patience durations override the
    scenario's for requests of this queue."""

    id: str = ID
    mrdId: str = ID
    agentRequestTtlMs: int = Field(AGENT_REQUEST_TTL_MS[1], ge=AGENT_REQUEST_TTL_MS[0],
                                   le=AGENT_REQUEST_TTL_MS[1])
    agentSlaMs: int = Field(DEFAULT_AGENT_SLA_MS, ge=AGENT_SLA_MS[0], le=AGENT_SLA_MS[1])
    agentSelectionPolicy: str = "LONGEST_AVAILABLE"
    serviceLevelThresholdMs: int = Field(DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
                                         ge=SERVICE_LEVEL_THRESHOLD_MS[0],
                                         le=SERVICE_LEVEL_THRESHOLD_MS[1])
    steps: list[dict[str, Any]] | None = None
    priorityUnitMs: int | None = None
    maxWaiting: int | None = None
    overflow: dict[str, Any] | None = None
    handle: Distribution | None = None
    accept: Distribution | None = None
    wrapUpTime: Distribution | None = None
    patience: Distribution | None = None


class AgentGroup(_Model):
    """`count` agents named `<id>-1` … `<id>-<count>` (or just `id` for one),
    all READY from the start."""

    id: str = ID
    count: int = Field(1, ge=0, le=MAX_AGENTS)
    queues: list[str] = Field(min_length=1)
    attributes: dict[str, Any] = {}
    maxRequests: dict[str, int] | None = None

    def agent_ids(self) -> list[str]:
        if self.count == 1:
            return [self.id]
        return [f"{self.id}-{i}" for i in range(1, self.count + 1)]


class Arrivals(_Model):
    """Poisson arrivals to one queue: `ratePerHour` constant, or a list of
    rates, one per `intervalMs` (default an hour) from the start, the last
    holding to the end."""

    queueId: str = ID
    ratePerHour: float | list[float]
    intervalMs: int = Field(HOUR_MS, ge=1000, le=MAX_DURATION_MS)
    priority: int = Field(DEFAULT_PRIORITY, ge=PRIORITY[0], le=PRIORITY[1])
    requestSession: dict[str, Any] = {}

    @model_validator(mode="after")
    def _rates(self) -> Arrivals:
        rates = self.ratePerHour if isinstance(self.ratePerHour, list) else [self.ratePerHour]
        if not rates or any(r < 0 or r > 10_000_000 for r in rates):
            raise ValueError("ratePerHour: each rate must be from 0 to 10,000,000 per hour")
        return self

    def rate_at(self, offset_ms: int) -> float:
        """Arrivals per ms at offset_ms from the start."""
        if not isinstance(self.ratePerHour, list):
            return self.ratePerHour / HOUR_MS
        i = min(offset_ms // self.intervalMs, len(self.ratePerHour) - 1)
        return self.ratePerHour[i] / HOUR_MS


class Scenario(_Model):
    name: str = "scenario"
    seed: int = Field(1, ge=0)
    replications: int = Field(5, ge=1, le=MAX_REPLICATIONS)
    durationMs: int = Field(ge=1000, le=MAX_DURATION_MS)  # arrivals stop then; the rest drains
    warmupMs: int = Field(0, ge=0)  # requests arriving before it are left out of the KPIs
    startTime: int = Field(1_767_225_600_000, ge=0)  # the virtual clock's start, ms since the epoch
    mrds: list[MrdSpec] = Field(min_length=1)
    queues: list[QueueSpec] = Field(min_length=1)
    agents: list[AgentGroup] = Field(min_length=1)
    arrivals: list[Arrivals] = []
    handle: Distribution = Exponential(type="exponential", meanMs=180_000)
    accept: Distribution = Fixed(type="fixed", valueMs=0)
    wrapUpTime: Distribution = Fixed(type="fixed", valueMs=0)
    patience: Distribution | None = None  # None: nobody hangs up
    noAnswerProbability: float = Field(0.0, ge=0, le=1)  # a reservation left to RONA
    ronaRecovery: Distribution = Fixed(type="fixed", valueMs=30_000)  # NOT_READY/RONA -> READY

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        mrds = {m.id for m in self.mrds}
        queues = {q.id for q in self.queues}
        if len(mrds) != len(self.mrds):
            raise ValueError("mrds: ids must be unique")
        if len(queues) != len(self.queues):
            raise ValueError("queues: ids must be unique")
        for i, q in enumerate(self.queues):
            if q.mrdId not in mrds:
                raise ValueError(f"queues[{i}].mrdId: no mrd {q.mrdId!r} in mrds")
            target = (q.overflow or {}).get("queueId")
            if q.overflow is not None and target not in queues:
                raise ValueError(f"queues[{i}].overflow: no queue {target!r} in queues")
        for i, m in enumerate(self.mrds):
            for b in m.blocks or ():
                if b not in mrds:
                    raise ValueError(f"mrds[{i}].blocks: no mrd {b!r} in mrds")
        names: set[str] = set()
        for i, g in enumerate(self.agents):
            for q in g.queues:
                if q not in queues:
                    raise ValueError(f"agents[{i}].queues: no queue {q!r} in queues")
            ids = set(g.agent_ids())
            if ids & names:
                raise ValueError(f"agents[{i}].id: agent ids overlap another group's")
            names |= ids
        for i, a in enumerate(self.arrivals):
            if a.queueId not in queues:
                raise ValueError(f"arrivals[{i}].queueId: no queue {a.queueId!r} in queues")
        if self.warmupMs >= self.durationMs:
            raise ValueError("warmupMs: must be shorter than durationMs")
        return self

    def queue(self, queue_id: str) -> QueueSpec:
        return next(q for q in self.queues if q.id == queue_id)

    def mrd(self, mrd_id: str) -> MrdSpec:
        return next(m for m in self.mrds if m.id == mrd_id)

    def agent_count(self, queue_id: str) -> int:
        return sum(g.count for g in self.agents if queue_id in g.queues)

    def with_agents(self, group_id: str, count: int) -> Scenario:
        """This scenario with agent group group_id at count agents."""
        groups = [g.model_copy(update={"count": count}) if g.id == group_id else g
                  for g in self.agents]
        return self.model_copy(update={"agents": groups})


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: queues[0].handle.meanMs
    (the union's tag names, e.g. 'exponential', are left out)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("exponential", "lognormal", "fixed", "empirical") or part.startswith(
                "function-after"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "scenario"


def parse_scenario(data: Any, base_dir: str | Path = ".") -> Scenario:
    """A Scenario from decoded JSON; files it names are relative to base_dir."""
    try:
        return Scenario.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            where = _where(err["loc"])
            field, sep, rest = msg.partition(": ")
            if sep and " " not in field and where == "scenario":
                where, msg = field, rest  # a cross-field check names its own field
            elif sep and " " not in field:
                where, msg = f"{where}.{field}", rest
            lines.append(f"{where}: {msg}")
        raise ScenarioError("; ".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise ScenarioError(f"cannot read {p}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{p} is not JSON: {e}") from None
    return parse_scenario(data, p.parent)
