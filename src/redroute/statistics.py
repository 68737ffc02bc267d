"""Queue statistics: what the minute buckets of lua/includes/stats.lua hold,
turned into the API's figures, and the same counts recomputed from the
event stream (docs/design.md, invariant 13).

A bucket is a hash per queue and minute (`TenantKeys.st`): entered `e`,
answered `a` and `aw` (within the threshold), expired `x`, cancelled `c`,
abandoned within `bw`, RONAs `r`, overflowed in/out `oi`/`oo`, answered
waits' sum `ws`, max `wm` and histogram `w<bin>`, handle times' count
`hn`, sum `hs` and histogram `h<bin>`, and `th`, the threshold the minute
counted with.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .events.model import Event
from .model import EventType

MINUTE_MS = 60_000

# The figures a bucket counts one by one (the others are sums, the max and
# histogram bins).
COUNTS = ("e", "a", "aw", "x", "c", "bw", "r", "oi", "oo")


def minute_of(ms: int) -> int:
    return ms // MINUTE_MS


def bin_of(ms: int) -> int:
    """The histogram bin of a duration (stats_bin in stats.lua): 64 ms
    wide below 1024 ms, then 8 bins per power of two."""
    if ms < 1024:
        return ms // 64
    e = ms.bit_length() - 1  # 2^e <= ms < 2^(e+1)
    return 16 + (e - 10) * 8 + (ms >> (e - 3)) - 8


def bin_middle(b: int) -> int:
    """The middle of bin b: within 32 ms or 1/16 of every value in it."""
    if b < 16:
        return b * 64 + 32
    e, sub = 10 + (b - 16) // 8, (b - 16) % 8
    width = 1 << (e - 3)
    return (8 + sub) * width + width // 2


def percentile(hist: dict[int, int], p: float, cap: int | None = None) -> int | None:
    """The nearest-rank p-quantile (0 < p <= 1) of the values binned in hist,
    as its bin's middle (capped at the exact max when known); None when
    hist is empty."""
    n = sum(hist.values())
    if n == 0:
        return None
    rank, seen = math.ceil(p * n), 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            mid = bin_middle(b)
            return mid if cap is None else min(mid, cap)
    raise AssertionError("unreachable")


def _hist(sums: dict[str, int], prefix: str) -> dict[int, int]:
    return {int(f[1:]): n for f, n in sums.items() if f[0] == prefix and f[1:].isdigit()}


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def window_block(sums: dict[str, int], minutes: int, threshold_ms: int) -> dict[str, Any]:
    """The API's `window` object from the summed buckets of the window."""
    g = lambda f: int(sums.get(f, 0))  # noqa: E731
    answered, expired, cancelled = g("a"), g("x"), g("c")
    abandoned = expired + cancelled
    handled = g("hn")
    return {
        "minutes": minutes, "entered": g("e"), "answered": answered, "abandoned": abandoned,
        "expired": expired, "cancelled": cancelled, "ronas": g("r"),
        "overflowedIn": g("oi"), "overflowedOut": g("oo"),
        "serviceLevel": {
            "thresholdMs": threshold_ms, "answered": answered, "answeredWithin": g("aw"),
            "abandoned": abandoned, "abandonedWithin": g("bw"),
            "sl": _ratio(g("aw"), answered), "sl2": _ratio(g("aw") + g("bw"), answered + abandoned)},
        "waitUntilAnswered": {
            "avgMs": round(g("ws") / answered) if answered else None,
            "p50Ms": percentile(_hist(sums, "w"), 0.5, sums.get("wm")),
            "p90Ms": percentile(_hist(sums, "w"), 0.9, sums.get("wm")),
            "maxMs": sums.get("wm")},
        "handleTime": {
            "avgMs": round(g("hs") / handled) if handled else None,
            "p50Ms": percentile(_hist(sums, "h"), 0.5),
            "p90Ms": percentile(_hist(sums, "h"), 0.9)},
    }


def _by(tally: dict[str, int], prefix: str) -> dict[str, int]:
    items = [(int(f[1:]), n) for f, n in tally.items() if f[0] == prefix and f[1:].isdigit() and n]
    return {str(k): n for k, n in sorted(items)}


def realtime_block(raw: dict[str, Any]) -> dict[str, Any]:
    """The API's `realtime` object from get_statistics' reply."""
    tally, oldest = raw["tally"], raw["oldestEnqueueTime"]
    return {
        "waiting": raw["waiting"], "waitingByPriority": _by(tally, "p"),
        "waitingByStep": _by(tally, "s"), "reserved": tally.get("r", 0),
        "active": tally.get("a", 0),
        "oldestWaitMs": None if oldest is None else raw["at"] - oldest,
        "oldestTaskId": raw["oldestTaskId"], "agents": raw["agents"],
        "availableAgents": raw["availableAgents"], "loggedInAgents": raw["loggedInAgents"],
    }


def queue_statistics(raw: dict[str, Any], minutes: int) -> dict[str, Any]:
    """GET /v1/queues/{id}/statistics from get_statistics' reply."""
    return {"queueId": raw["queueId"], "at": raw["at"], "realtime": realtime_block(raw),
            "window": window_block(raw["window"], minutes, raw["thresholdMs"]),
            "ewt": raw["ewt"]}


# Replay: the same counts from the stream (the rules of stats.lua's header).

@dataclass
class Observed:
    """What one queue's minute saw, as the stream tells it."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    answered_waits: list[int] = field(default_factory=list)
    abandoned_waits: list[int] = field(default_factory=list)
    handle_times: list[int] = field(default_factory=list)

    def fields(self, threshold_ms: int) -> dict[str, int]:
        """The bucket this minute should hold, counted with threshold_ms."""
        out = {k: v for k, v in self.counts.items() if v}
        w = self.answered_waits
        if w:
            out.update(a=len(w), ws=sum(w), wm=max(w))
            if within := sum(1 for x in w if x <= threshold_ms):
                out["aw"] = within
            for x in w:
                out[f"w{bin_of(x)}"] = out.get(f"w{bin_of(x)}", 0) + 1
        if within := sum(1 for x in self.abandoned_waits if x <= threshold_ms):
            out["bw"] = within
        h = self.handle_times
        if h:
            out.update(hn=len(h), hs=sum(h))
            for x in h:
                out[f"h{bin_of(x)}"] = out.get(f"h{bin_of(x)}", 0) + 1
        return {k: v for k, v in out.items() if v}


@dataclass
class Replayed:
    """Per (queue, minute), what the stream says was counted."""

    minutes: dict[tuple[str, int], Observed] = field(default_factory=lambda: defaultdict(Observed))
    # Minutes whose overflowedOut cannot be told: a task overflowed whose
    # earlier queue the stream no longer shows.
    unknown: set[int] = field(default_factory=set)
    first_minute: int | None = None  # of the first event replayed
    _queue_of: dict[str, str | None] = field(default_factory=dict)

    def at(self, queue_id: str, ms: int) -> Observed:
        return self.minutes[(queue_id, minute_of(ms))]

    def apply(self, e: Event) -> None:
        if e.type is EventType.QUEUE_DELETED:
            # Its minutes went with it.
            gone = e.data["queueId"]
            for qm in [qm for qm in self.minutes if qm[0] == gone]:
                del self.minutes[qm]
            return
        t = e.task
        if t is None:
            return
        now = t["updatedAt"]
        if self.first_minute is None:
            self.first_minute = minute_of(now)
        q = t.get("queueId")
        before = self._queue_of.get(t["id"], "?")
        self._queue_of[t["id"]] = q
        if q is None:
            return
        if e.type is EventType.NO_AGENT_AVAILABLE:
            o = self.at(q, now)
            o.counts["x"] += 1
            o.abandoned_waits.append(max(0, now - t["enqueueTime"]))
            return
        if e.type is not EventType.TASK_STATE_CHANGED:
            return
        transition, medias = e.data.get("transition"), e.data.get("mediaStateChanges") or []
        o = self.at(q, now)
        if transition == "CREATED" and t["type"]["mode"] == "QUEUE":
            o.counts["e"] += 1
        elif transition == "ACCEPTED":
            o.answered_waits.append(max(0, now - t["enqueueTime"]))
        elif transition in ("RONA", "DECLINED"):
            o.counts["r"] += 1
        elif transition == "OVERFLOWED":
            o.counts["oi"] += 1
            o.counts["e"] += 1
            if before == "?":
                self.unknown.add(minute_of(now))
            elif before is not None:
                self.at(before, now).counts["oo"] += 1
        if t["state"]["name"] in ("WRAP_UP", "CLOSED") and medias:
            answers = [m["answerTime"] for m in t["activeMedia"] if m.get("answerTime") is not None]
            if answers:
                o.handle_times.append(max(0, now - min(answers)))
            elif transition == "CLOSED":
                o.counts["c"] += 1
                o.abandoned_waits.append(max(0, now - t["enqueueTime"]))


def replay(events: Iterable[Event]) -> Replayed:
    r = Replayed()
    for e in events:
        r.apply(e)
    return r


def hour_sums(minutes: list[dict[str, str]]) -> dict[str, int]:
    """What an hour bucket holds: its minute buckets' fields summed (wm:
    the max; th left out)."""
    out: dict[str, int] = {}
    for b in minutes:
        for f, v in b.items():
            if f != "th":
                out[f] = max(out.get(f, int(v)), int(v)) if f == "wm" else out.get(f, 0) + int(v)
    return out


def compare_bucket(queue_id: str, minute: int, stored: dict[str, str],
                   observed: Observed | None, default_threshold_ms: int) -> list[str]:
    """What differs between a stored bucket and the stream's count of it."""
    have = {f: int(v) for f, v in stored.items() if f != "th" and int(v)}
    th = int(stored["th"]) if "th" in stored else default_threshold_ms
    want = observed.fields(th) if observed is not None else {}
    if have == want:
        return []
    diff = sorted(f"{f}={have.get(f, 0)}/{want.get(f, 0)}" for f in set(have) | set(want)
                  if have.get(f, 0) != want.get(f, 0))
    return [f"statistics of queue {queue_id}, minute {minute}: stored/stream differ: {' '.join(diff)}"]
