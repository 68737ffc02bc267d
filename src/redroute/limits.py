"""The limits and defaults of the API, in one place.

The Engine validates with the ranges, the HTTP schemas, the Python client
and the Engine's keyword arguments take their defaults from here. The
defaults a script needs on its own (the RONA timeout of a task with no
queue, how long a PUSH prefers its preferred agent) are the constants of
lua/includes/config.lua of the same names, which tests/engine/test_limits.py
checks against this module.
"""

from __future__ import annotations

DAY_MS = 24 * 3600 * 1000

# Ranges, inclusive: (lowest, highest).
MAX_REQUESTS = (1, 1000)  # an MRD's maxRequests and an agent's overrides
WRAP_UP_TIMEOUT_MS = (1, DAY_MS)
AGENT_REQUEST_TTL_MS = (1, 7 * DAY_MS)
AGENT_SLA_MS = (1, DAY_MS)  # the RONA timeout
SERVICE_LEVEL_THRESHOLD_MS = (0, 7 * DAY_MS)
STEP_TIMEOUT_MS = (1, 7 * DAY_MS)  # how long a request stays on a queue step
ROUTE_TO_LAST_AGENT_MS = (1, DAY_MS)  # how long a queue prefers the last agent
PREFERRED_AGENT_TIMEOUT_MS = (1, DAY_MS)  # how long a PUSH prefers its preferredAgentId
PRIORITY = (0, 100)  # higher is served first
MAX_PRIORITY = PRIORITY[1]
MAX_AGENT_QUEUES = 256  # queues one agent may list
MAX_JSON_BYTES = 64 * 1024  # client JSON: metadata, requestSession, attributes
PAGE_LIMIT = (1, 1000)  # ?limit= of a list
MAX_SECRET_BYTES = 1024  # a webhook's signing secret
MAX_WEBHOOK_QUEUES = 256  # queues one webhook's filter may list
# Routing policies. priorityUnitMs: a queue without it counts as 10^10 ms per
# priority point (routing.lua, wait_common); a larger unit would outrank
# strict priority and lose 2^53 precision.
PRIORITY_UNIT_MS = (1, 10**10)
MAX_WAITING = (0, 1_000_000)  # a queue's maxWaiting
OVERFLOW_AFTER_MS = (1, 7 * DAY_MS)  # how long a task waits before it overflows
MAX_BLOCKS = 64  # MRDs one MRD's blocks may name
WINDOW_MINUTES = (1, 1440)  # a statistics window; minute buckets live as long

# Defaults.
DEFAULT_MAX_REQUESTS = 1
DEFAULT_WRAP_UP_TIMEOUT_MS = 60_000
DEFAULT_AGENT_REQUEST_TTL_MS = 300_000
DEFAULT_AGENT_SLA_MS = 30_000
DEFAULT_SERVICE_LEVEL_THRESHOLD_MS = 20_000
DEFAULT_PRIORITY = 1
DEFAULT_PREFERRED_AGENT_TIMEOUT_MS = 30_000
DEFAULT_WINDOW_MINUTES = 15  # ?windowMinutes= of the statistics when absent
DEFAULT_PAGE_LIMIT = 100  # ?limit= of a list when absent
DEFAULT_EVENTS_MAXLEN = 1_000_000  # approximate MAXLEN of each tenant's event stream
DEFAULT_RETENTION_MS = DAY_MS  # closed tasks stay readable this long
