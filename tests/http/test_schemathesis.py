"""Property-based checks of the whole API against its own /openapi.json
(schemathesis): no 5xx, every status and content type documented, every
response body valid against its schema. Bounded: few examples per
operation, a fixed seed (derandomize), no example database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis as syncredis

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from redroute.http import Settings  # noqa: E402
from tests.support.http import ThreadServer  # noqa: E402
from tests.support.redis_server import RedisProcess  # noqa: E402

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _fits(value: Any) -> Any:
    """Integers beyond 64 bits (negative data) as floats: still invalid, but
    MessagePack can carry them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return float(value)
    if isinstance(value, dict):
        return {k: _fits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fits(v) for v in value]
    return value


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> bytes:
    return msgpack.packb(_fits(value), use_bin_type=True)


@pytest.fixture(scope="module")
def api(redis_server: RedisProcess) -> Iterator[str]:
    syncredis.Redis(port=redis_server.port).flushall()
    with ThreadServer(redis_server.url, Settings(sse_keepalive=1.0), timer_worker=True) as url:
        # Some configuration, so that generated requests also reach live objects
        import requests

        requests.put(f"{url}/v1/mrds/chat", json={"maxRequests": 3}, timeout=5)
        requests.put(f"{url}/v1/queues/sales", json={"mrdId": "chat"}, timeout=5)
        requests.put(f"{url}/v1/agents/a1", json={"queues": ["sales"]}, timeout=5)
        yield url


def operations(api: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    # /v1/events never ends by design; it has its own tests.
    return [r.ok() for r in schema.exclude(path="/v1/events").get_all_operations()]


# Driven through schemathesis' Python API with hypothesis' @given: its pytest
# plugin does not run on this pytest. Each operation gets its own bounded,
# derandomized run, positive (valid) and negative (invalid) data alike.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi(api: str, mode: GenerationMode) -> None:
    ops = operations(api)
    assert len(ops) >= 18
    failures: list[str] = []
    for op in ops:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case: Any) -> None:
            case.call_and_validate(base_url=api, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters)
        except (Exception, BaseExceptionGroup) as e:  # every operation's failure, not the first
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
