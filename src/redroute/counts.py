"""The engine's running totals per tenant, kept by the scripts in the hash
rr:{t}:counts: events by type, and RONA for a reservation that ended
unanswered or declined.

A script adds 1 to one field naming everything it counted, in the order
counted, each name with its multiplicity when above one:
"TASK_STATE_CHANGED*2 AGENT_RESERVED AGENT_STATE_CHANGED" (see count() in
lua/includes/base.lua). One HINCRBY per call instead of one per name; the
fields stay few, one per path through a script.
"""

from __future__ import annotations

from collections.abc import Mapping


def totals_by_name(fields: Mapping[str, str | int]) -> dict[str, int]:
    """Each name's total over every field of rr:{t}:counts."""
    out: dict[str, int] = {}
    for mix, calls in fields.items():
        n = int(calls)
        for part in mix.split():
            name, _, times = part.partition("*")
            out[name] = out.get(name, 0) + n * (int(times) if times else 1)
    return out
