"""The webhook dispatcher (`redroute worker`, on a redis-server this test
starts) is killed with SIGKILL three times under load while the receiver
fails a fraction of requests: every event reaches every webhook whose
filters it passes at least once, and duplicates stay few."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from redroute import Engine
from redroute.backend import connect
from redroute.checks.invariants import check
from tests.support.receiver import Receiver, failing_fraction
from tests.support.redis_server import start_redis

KILLS = 3
FAIL_FRACTION = 0.2


def spawn_dispatcher(url: str) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url, "REDROUTE_LOG_LEVEL": "WARNING",
           "REDROUTE_WEBHOOKS_ALLOW_PRIVATE": "1", "REDROUTE_WEBHOOKS_TIMEOUT": "1",
           "REDROUTE_WEBHOOKS_BACKOFF_MS": "50", "REDROUTE_WEBHOOKS_MAX_BACKOFF_MS": "400",
           "REDROUTE_WEBHOOKS_CLAIM_IDLE_MS": "1000"}
    return subprocess.Popen([sys.executable, "-m", "redroute", "worker"], env=env)


@pytest.mark.slow
async def test_dispatcher_killed_three_times_under_load_delivers_every_event():
    rp = start_redis()
    receiver = await Receiver(answer=failing_fraction(FAIL_FRACTION)).start()
    procs: list[subprocess.Popen] = []
    try:
        engine = Engine(connect(rp.url), "wh")
        await engine.put_webhook("all", url=f"{receiver.base}/all", secret="s1",
                                 allow_private=True)
        await engine.put_webhook("sales-tasks", url=f"{receiver.base}/sales-tasks", secret="s2",
                                 types=["TASK_STATE_CHANGED"], queue_ids=["sales"],
                                 allow_private=True)
        await engine.put_mrd("chat")
        for q in ("sales", "support"):
            await engine.put_queue(q, mrd_id="chat")
        procs.append(spawn_dispatcher(rp.url))
        stop = asyncio.Event()

        async def load() -> None:
            n = 0
            while not stop.is_set():
                await engine.push_task(f"c-{n}", "sales" if n % 2 else "support")
                n += 1
                await asyncio.sleep(0.01)

        loader = asyncio.create_task(load())
        for _ in range(KILLS):
            await asyncio.sleep(1.5)
            procs[-1].send_signal(signal.SIGKILL)  # mid-batch, mid-attempt as likely as not
            procs[-1].wait(10)
            await asyncio.sleep(0.3)  # events pile up with no dispatcher at all
            procs.append(spawn_dispatcher(rp.url))
        await asyncio.sleep(1.0)
        stop.set()
        await loader

        events = await engine.events()
        want = {
            "/all": {e.id for e in events},
            "/sales-tasks": {e.id for e in events
                             if e.type == "TASK_STATE_CHANGED" and "sales" in e.queue_ids},
        }

        def delivered(path: str) -> set[str]:
            return set(receiver.delivered(path))

        started = time.monotonic()
        deadline = started + 60
        while time.monotonic() < deadline:
            pending = sum([(await engine.get_webhook(w)).pending for w in ("all", "sales-tasks")])
            if pending == 0 and all(want[p] <= delivered(p) for p in want):
                break
            await asyncio.sleep(0.2)
        drained = time.monotonic() - started
        await asyncio.sleep(0.5)  # a late duplicate would show up here
        requests = {p: Counter(r.json["id"] for r in receiver.at(p)) for p in want}
        accepted = {p: receiver.delivered(p) for p in want}
        failed = {w: (await engine.get_webhook(w)).failed for w in ("all", "sales-tasks")}
        pairs = sum(len(v) for v in want.values())
        sent = sum(sum(c.values()) for c in requests.values())
        answered_500 = sum(1 for r in receiver.received if r.status == 500)
        # A duplicate: an event a receiver accepted (2xx) more than once.
        duplicates = sum(n - 1 for c in accepted.values() for n in c.values())
        report = await check(engine, events=False)
        print(f"\nwebhook dispatcher killed {KILLS}x under load: {len(events)} events, "
              f"{pairs} (webhook, event) pairs, {sent} requests ({answered_500} answered 500, "
              f"{FAIL_FRACTION:.0%} asked), {duplicates} duplicates "
              f"({duplicates / pairs:.2%}), drained {drained:.1f} s after the load, "
              f"FAILED {failed}, {len(report.violations)} invariant violations")
        for p in want:
            missing = want[p] - delivered(p)
            assert not missing, f"{p}: {len(missing)} events never delivered"
            assert set(requests[p]) <= want[p], f"{p}: an event its filters exclude"
        # Each kill can repeat at most what was in flight then: attempts
        # (8 per webhook) and the batch being recorded.
        assert duplicates <= KILLS * (2 * 8 + 100), duplicates
        assert failed == {"all": 0, "sales-tasks": 0}
        assert report.ok, report.violations
        await engine.redis.aclose()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        await receiver.stop()
        rp.stop()
        shutil.rmtree(rp.dir, ignore_errors=True)
