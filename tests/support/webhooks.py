"""Helpers of the webhook tests: short delivery settings and a dispatcher
running for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redroute import Engine
from redroute.webhooks.dispatcher import Dispatcher
from redroute.webhooks.model import DeliverySettings

# The contract's timings shortened; private addresses allowed, as the
# receiver listens on 127.0.0.1.
FAST = DeliverySettings(attempt_timeout=0.5, backoff_ms=50, max_backoff_ms=200, give_up_ms=60_000,
                        allow_private=True, poll_interval=0.05, claim_idle_ms=500)


@contextlib.asynccontextmanager
async def dispatching(engine: Engine, settings: DeliverySettings = FAST,
                      name: str | None = None) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(engine.redis, settings=settings, engine_factory=engine.for_tenant, name=name,
                   refresh=0.05)
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        d.stop()
        await asyncio.wait_for(task, 10)


async def contact_center(engine: Engine) -> None:
    """An MRD and two queues (sales, support)."""
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_queue("sales", mrd_id="chat")
    await engine.put_queue("support", mrd_id="chat")
