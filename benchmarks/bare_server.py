"""The HTTP baseline: a bare aiohttp handler that makes the same number of
Redis round trips as a redroute call (one EVALSHA of the no-op script, on
the same redis-py client settings redroute uses), parses the JSON body and
answers a JSON document the size of a task. What redroute's HTTP layer costs
is its throughput and latency against this one, in the same run.

    python bare_server.py --port 8081 --redis-url redis://127.0.0.1:6380/0
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

from redroute.backend import connect
from redroute.engine import default_runner
from redroute.keys import tenant_prefix
from redroute.limits import DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS

# A task document as POST /v1/tasks answers it (the same size, ~700 bytes).
TASK = {
    "id": "t-1", "requestId": "r-1", "conversationId": "c-1",
    "state": {"name": "ACTIVE", "reasonCode": None}, "assignedTo": "a17",
    "type": {"direction": "INBOUND", "mode": "QUEUE"}, "queueId": "sales", "mrdId": "chat",
    "priority": 1,
    "activeMedia": [{"id": "m-1", "mrdId": "chat", "state": "RESERVED", "queueId": "sales",
                     "enqueueTime": 1795480000000, "answerTime": None, "requestSession": {}}],
    "enqueueTime": 1795480000000, "ttlDeadline": 1795480300000, "createdAt": 1795480000000,
    "updatedAt": 1795480000123, "metadata": {},
}


def build_app(redis_url: str) -> web.Application:
    redis = connect(redis_url)
    noop = default_runner().scripts["noop"]

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        n = await redis.evalsha(noop.sha, 1, tenant_prefix("default"), DEFAULT_EVENTS_MAXLEN,
                                DEFAULT_RETENTION_MS)
        doc = dict(TASK, conversationId=body.get("conversationId", "c-1"), priority=int(n))
        return web.Response(text=json.dumps(doc, separators=(",", ":")), status=201, content_type="application/json")

    async def on_startup(app: web.Application) -> None:
        await redis.script_load(noop.source)

    async def on_cleanup(app: web.Application) -> None:
        await redis.aclose()

    app = web.Application()
    app.router.add_route("*", "/bare", handle)
    app.router.add_get("/healthz", lambda r: web.json_response({"status": "ok"}))
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis-url", required=True)
    args = ap.parse_args()
    web.run_app(build_app(args.redis_url), host=args.host, port=args.port, access_log=None,
                print=None, backlog=1024)


if __name__ == "__main__":
    main()
