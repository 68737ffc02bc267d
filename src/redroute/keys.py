"""Every Redis key redroute uses, by the names the Lua scripts give them.

A tenant's keys share the prefix `rr:{<tenant>}:` (the braces are a Redis
Cluster hash tag: all of a tenant's keys live in one slot). Scripts get the
prefix as KEYS[1] and build every other key with `key(a, b, c)` of
lua/includes/base.lua; here each key is a member of TenantKeys named after
those parts: `key('q', id, 'waiting')` is `TenantKeys.q_waiting(id)`. The
Lua headers declare the same keys, and tests/engine/test_keys.py checks that
both lists agree.

What some keys hold has an encoding of its own (waiting-set members, timer
members); each has its one pair of helpers here, beside its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Keys outside any tenant.
TENANTS = "rr:tenants"  # set: the tenants the timer worker sweeps
WAKE_CHANNEL = "rr:wake"  # pub/sub: a tenant with a new earliest deadline
HEARTBEAT = "rr:timer-worker:heartbeat"  # string: the last full timer pass
WEBHOOK_TENANTS = "rr:webhook-tenants"  # set: the tenants webhook dispatchers serve


def tenant_prefix(tenant: str) -> str:
    """KEYS[1] of every script: the prefix of all the tenant's keys."""
    return f"rr:{{{tenant}}}:"


def tenant_of_timer_key(key: Any) -> str | None:
    """The tenant of an expired wake-up key rr:{<tenant>}:tmr:wake (any
    rr:{<tenant>}:tmr:… key names its tenant), else None."""
    if isinstance(key, str) and key.startswith("rr:{"):
        end = key.find("}:tmr:")
        if end > 4:
            return key[4:end]
    return None


def glob_escape(text: str) -> str:
    """text with SCAN MATCH's special characters escaped."""
    for c in "\\*?[]{}":
        text = text.replace(c, "\\" + c)
    return text


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """One tenant's keys. Fixed keys are properties, keys with an id methods."""

    prefix: str

    @classmethod
    def of(cls, tenant: str) -> TenantKeys:
        return cls(tenant_prefix(tenant))

    # base: ids, clock, events, counts, deadlines
    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def clock_offset(self) -> str:
        return self.prefix + "clock:offset"

    @property
    def clock_virtual(self) -> str:
        return self.prefix + "clock:virtual"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def counts(self) -> str:
        return self.prefix + "counts"

    @property
    def timers(self) -> str:
        return self.prefix + "timers"

    @property
    def tmr_wake(self) -> str:
        return self.prefix + "tmr:wake"

    # config
    def mrd(self, mrd_id: str) -> str:
        return f"{self.prefix}mrd:{mrd_id}"

    @property
    def mrds(self) -> str:
        return self.prefix + "mrds"

    def queue(self, queue_id: str) -> str:
        return f"{self.prefix}queue:{queue_id}"

    @property
    def queues(self) -> str:
        return self.prefix + "queues"

    @property
    def config_token(self) -> str:
        """The version of the tenant's configuration (its MRDs and queues):
        replaced by every script that writes it; the function library
        trusts the configuration it kept between calls only while this is
        the same."""
        return self.prefix + "config:token"

    def index(self, kind: str) -> str:
        """The ids of the set `kind` ("mrds", "queues", "agents") in id
        order (a sorted set, scores 0): what the lists page through."""
        return f"{self.prefix}index:{kind}"

    # agent
    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    def agent_tasks(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}:tasks"

    @property
    def agents(self) -> str:
        return self.prefix + "agents"

    def q_members(self, queue_id: str) -> str:
        return f"{self.prefix}q:{queue_id}:members"

    def q_avail(self, queue_id: str) -> str:
        return f"{self.prefix}q:{queue_id}:avail"

    def q_avail_step(self, queue_id: str, step: int | str) -> str:
        """A queue with steps: the available agents whose first step is step."""
        return f"{self.prefix}q:{queue_id}:avail:{step}"

    # routing
    def q_waiting(self, queue_id: str) -> str:
        return f"{self.prefix}q:{queue_id}:waiting"

    def q_age(self, queue_id: str) -> str:
        return f"{self.prefix}q:{queue_id}:age"

    def q_waiting_step(self, queue_id: str, step: int | str) -> str:
        """A queue with steps: its waiting tasks at step."""
        return f"{self.prefix}q:{queue_id}:waiting:{step}"

    def q_pref(self, queue_id: str) -> str:
        """The queue's tasks waiting for their preferred agent only."""
        return f"{self.prefix}q:{queue_id}:pref"

    def agent_pref(self, agent_id: str) -> str:
        """The tasks waiting for this agent only (their preferred agent)."""
        return f"{self.prefix}agent:{agent_id}:pref"

    # ewt
    def q_ewt(self, queue_id: str) -> str:
        """The queue's take rate and time to accept (the wait estimate)."""
        return f"{self.prefix}q:{queue_id}:ewt"

    def ewt_minute(self, queue_id: str, minute: int | str) -> str:
        """The queue's prediction errors answered in minute (ms // 60000)."""
        return f"{self.prefix}ewt:{queue_id}:{minute}"

    # stats: a queue's counted minutes and what it holds now
    def st(self, queue_id: str, minute: int | str) -> str:
        """A queue's statistics bucket of one minute (ms // 60000 of the
        tenant's clock)."""
        return f"{self.prefix}st:{queue_id}:{minute}"

    def st_hour(self, queue_id: str, hour: int | str) -> str:
        """The sums of a queue's minute buckets of one past hour (minute // 60)."""
        return f"{self.prefix}st:{queue_id}:h{hour}"

    @property
    def qgen(self) -> str:
        """The counter of queue generations (a queue's gen)."""
        return self.prefix + "qgen"

    def q_totals(self, queue_id: str) -> str:
        """A queue's counts since it was made (the counters of /metrics)."""
        return f"{self.prefix}q:{queue_id}:totals"

    def q_tally(self, queue_id: str) -> str:
        """What a queue holds now: waiting by priority and step, reserved, active."""
        return f"{self.prefix}q:{queue_id}:tally"

    # task
    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    @property
    def live(self) -> str:
        return self.prefix + "live"

    def conv(self, conversation_id: str) -> str:
        return f"{self.prefix}conv:{conversation_id}"

    # push_task
    def idem(self, idempotency_key: str) -> str:
        return f"{self.prefix}idem:{idempotency_key}"

    # webhooks
    def webhook(self, webhook_id: str) -> str:
        return f"{self.prefix}webhook:{webhook_id}"

    @property
    def webhooks(self) -> str:
        return self.prefix + "webhooks"

    @property
    def webhooks_due(self) -> str:
        return self.prefix + "webhooks:due"

    def webhook_due(self, webhook_id: str) -> str:
        return f"{self.prefix}webhook:{webhook_id}:due"

    def webhook_dlv(self, webhook_id: str) -> str:
        return f"{self.prefix}webhook:{webhook_id}:dlv"

    def webhook_failed(self, webhook_id: str) -> str:
        return f"{self.prefix}webhook:{webhook_id}:failed"


def task_match(keys: TenantKeys) -> str:
    """SCAN MATCH pattern of every task document of the tenant."""
    return glob_escape(keys.task("")) + "*"


def task_id_of_key(keys: TenantKeys, key: str) -> str:
    """The task id of a key keys.task(id)."""
    return key[len(keys.task("")):]


# Waiting-set members (rr:{t}:q:<id>:waiting): the task's number zero-padded
# to 15 digits, so equal scores keep arrival order (wait_member and
# member_task_id of lua/includes/routing.lua).
def waiting_member(task_id: str) -> str:
    return task_id[2:].rjust(15, "0")


def waiting_task_id(member: str) -> str:
    return "t-" + (member.lstrip("0") or "0")


# Timer members (rr:{t}:timers): "ttl|<taskId>", "rona|<taskId>|<mediaId>",
# "wrap|<taskId>", "step|<taskId>", "pref|<taskId>".
def timer_member(kind: str, task_id: str, media_id: str | None = None) -> str:
    return f"{kind}|{task_id}" if media_id is None else f"{kind}|{task_id}|{media_id}"


def timer_task_id(member: str) -> str:
    return member.split("|")[1]


# Failed-delivery members (rr:{t}:webhook:<id>:failed): "<failedAt, 15
# digits>|<deliveryId>" (dlv_fail of lua/includes/webhooks.lua).
def failed_delivery_id(member: str) -> str:
    return member.partition("|")[2]
