"""The access log: one record per request on the `redroute.access` logger,
with method, path, status, duration, tenant and remote address as fields."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .auth import TENANT_KEY


class AccessLog(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s", request.method, request.path, response.status, extra={
            "method": request.method, "path": request.path, "status": response.status,
            "duration_ms": round(time * 1000, 3),
            "tenant": request.get(TENANT_KEY) or request.headers.get("X-Tenant", "default"),
            "remote": request.remote,
        })
