"""Bearer API keys per tenant, and tenant isolation by key.

Keys come from a JSON file (`{"<key>": "<tenant>", ...}`, --api-keys-file /
REDROUTE_API_KEYS_FILE) or the environment (REDROUTE_API_KEYS=
"tenantA:key1,tenantB:key2"). With keys configured, every /v1/* request needs
`Authorization: Bearer <key>` (else 401 UNAUTHORIZED); the key decides the
tenant, and an X-Tenant header naming another tenant is a 403 FORBIDDEN.
/healthz and /metrics need a key (any tenant's) only with protect_ops;
/openapi.json and /wallboard (a page holding no data) are always open.
Without keys nothing changes.

Only SHA-256 digests of the keys are kept; a presented key is hashed and
compared with hmac.compare_digest against every configured digest, without
an early exit, so timing tells nothing about which key (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import validation as v
from ..errors import ConfigError, ValidationError
from .problem import FORBIDDEN, UNAUTHORIZED, Problem

# request[TENANT_KEY]: the authenticated tenant (a typed key on aiohttp >= 3.12)
TENANT_KEY: Any = (web.RequestKey("redroute.tenant", str) if hasattr(web, "RequestKey")
                   else "redroute.tenant")
OPS_PATHS = frozenset({"/healthz", "/metrics"})
REALM = 'Bearer realm="redroute"'


class ApiKeyError(ConfigError):
    """A malformed key configuration (bad format, bad tenant, empty key)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _check_entry(key: str, tenant: str, where: str) -> None:
    if not isinstance(key, str) or not key or key != key.strip() or any(c.isspace() for c in key):
        raise ApiKeyError(f"{where}: an API key must be a non-empty string without whitespace")
    try:
        v.check_tenant(tenant)
    except ValidationError as e:
        raise ApiKeyError(f"{where}: {e}") from None


def parse_env_keys(raw: str) -> dict[str, str]:
    """REDROUTE_API_KEYS: "tenantA:key1,tenantB:key2" -> {key: tenant}. The
    tenant ends at the first ':' (tenants cannot contain one); keys cannot
    contain ',' or whitespace."""
    out: dict[str, str] = {}
    for i, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep:
            raise ApiKeyError(f"REDROUTE_API_KEYS entry {i + 1}: expected tenant:key")
        _check_entry(key, tenant, f"REDROUTE_API_KEYS entry {i + 1}")
        _add(out, key, tenant, f"REDROUTE_API_KEYS entry {i + 1}")
    return out


def parse_keys_file(text: str, name: str = "API keys file") -> dict[str, str]:
    """The keys file: one JSON object {"<key>": "<tenant>", ...}."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ApiKeyError(f"{name}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiKeyError(f'{name}: expected a JSON object {{"<key>": "<tenant>", ...}}')
    out: dict[str, str] = {}
    for key, tenant in data.items():
        if not isinstance(tenant, str):
            raise ApiKeyError(f"{name}: the tenant of each key must be a string")
        _check_entry(key, tenant, name)
        _add(out, key, tenant, name)
    return out


def _add(out: dict[str, str], key: str, tenant: str, where: str) -> None:
    if key in out and out[key] != tenant:
        raise ApiKeyError(f"{where}: one key is given to two tenants")
    out[key] = tenant


def load_api_keys(path: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keys from the file (path, else REDROUTE_API_KEYS_FILE) and from
    REDROUTE_API_KEYS, merged; {} when neither is set."""
    env = os.environ if env is None else env
    keys: dict[str, str] = {}
    path = path or env.get("REDROUTE_API_KEYS_FILE") or None
    if path:
        with open(path, encoding="utf-8") as f:
            for k, t in parse_keys_file(f.read(), path).items():
                _add(keys, k, t, path)
    raw = env.get("REDROUTE_API_KEYS")
    if raw:
        for k, t in parse_env_keys(raw).items():
            _add(keys, k, t, "REDROUTE_API_KEYS")
    return keys


@dataclass(frozen=True)
class KeyRing:
    """Digests of the configured keys, each with its tenant."""

    entries: tuple[tuple[bytes, str], ...]

    @classmethod
    def from_map(cls, keys: Mapping[str, str]) -> KeyRing:
        return cls(tuple((_digest(k), t) for k, t in keys.items()))

    def tenant_for(self, presented: str) -> str | None:
        """The tenant of a presented key, or None. Every entry is compared
        (constant time, no early exit)."""
        d = _digest(presented)
        found: str | None = None
        for digest, tenant in self.entries:
            if hmac.compare_digest(d, digest):
                found = tenant
        return found


def _bearer(request: web.Request) -> str | None:
    raw = request.headers.get("Authorization")
    if raw is None:
        return None
    scheme, _, token = raw.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _unauthorized(detail: str, error: str | None = None) -> Problem:
    challenge = REALM + (f', error="{error}"' if error else "")
    return Problem(401, UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(ring: KeyRing, *, protect_ops: bool = False) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    """The middleware; place it inside the one that renders Problems."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        api = path == "/v1" or path.startswith("/v1/")
        if not api and not (protect_ops and path in OPS_PATHS):
            return await handler(request)  # /openapi.json, /wallboard, open ops, unknown paths
        token = _bearer(request)
        if token is None:
            raise _unauthorized("an API key is required: Authorization: Bearer <key>")
        tenant = ring.tenant_for(token)
        if tenant is None:
            raise _unauthorized("the API key is not valid", "invalid_token")
        if api:
            asked = request.headers.get("X-Tenant")
            if asked is not None and not hmac.compare_digest(
                    asked.encode("utf-8", "surrogatepass"), tenant.encode()):
                raise Problem(403, FORBIDDEN, "the API key does not give access to this tenant")
            request[TENANT_KEY] = tenant
        return await handler(request)

    return authenticate


def security_components() -> dict[str, object]:
    return {"bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "A tenant's API key; it selects the tenant "
                                          "(X-Tenant may be omitted, or must name it)."}}
