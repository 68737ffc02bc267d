"""`redroute webhooks`: list webhooks, list FAILED deliveries, retry one,
against the suite's redis-server."""

from __future__ import annotations

import json
import subprocess
import sys

import redis.asyncio as aioredis

from redroute import Engine
from tests.support.redis_server import RedisProcess


def run(server: RedisProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redroute", "webhooks", *args, "--redis-url",
                           server.url, "--tenant", "acme"], capture_output=True, text=True,
                          timeout=60)


async def test_webhooks_list_deliveries_and_retry(redis_server: RedisProcess):
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    engine = Engine(redis, "acme")
    await engine.put_webhook("wh-1", url="https://hooks.example.com/in", secret="cli-secret-9")
    await engine.put_webhook("wh-2", url="https://hooks.example.com/in", secret="cli-secret-9",
                             enabled=False)
    # A delivery whose event is lost (nothing to resend) and one that can be.
    await engine.record_lost_events("gap-1-0-2-0", None, 2**62, "lost to retention")
    event_id = await redis.xadd(engine.events_key, {"type": "AGENT_STATE_CHANGED",
                                                    "data": '{"agent": {"id": "a"}}'})
    await redis.hset(engine.keys.webhook_dlv("wh-1"), event_id, json.dumps({
        "id": event_id, "eventId": event_id, "type": "AGENT_STATE_CHANGED", "status": "FAILED",
        "attempts": 3, "createdAt": 1, "failedAt": 2, "body": "{}", "fm": f"{2:015d}|{event_id}"}))
    await redis.zadd(engine.keys.webhook_failed("wh-1"), {f"{2:015d}|{event_id}": 0})

    listed = run(redis_server, "list")
    assert listed.returncode == 0, listed.stderr
    hooks = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(h["id"], h["enabled"]) for h in hooks] == [("wh-1", True), ("wh-2", False)]
    assert "cli-secret-9" not in listed.stdout + listed.stderr

    failed = run(redis_server, "deliveries", "wh-1")
    assert failed.returncode == 0, failed.stderr
    assert [json.loads(line)["id"] for line in failed.stdout.splitlines()] == [event_id,
                                                                              "gap-1-0-2-0"]
    retried = run(redis_server, "retry", "wh-1", event_id)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] == "PENDING"
    again = run(redis_server, "retry", "wh-1", "gap-1-0-2-0")
    assert again.returncode == 1 and "INVALID_TRANSITION" in again.stderr
    missing = run(redis_server, "deliveries", "nope")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    assert (await engine.get_webhook("wh-1")).pending == 1
    await redis.aclose()
