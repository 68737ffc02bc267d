"""Statistics over HTTP: GET /v1/queues/{queueId}/statistics and GET
/v1/statistics in the API's shape, the Client's methods, windowMinutes
refused outside 1..1440 with nothing changed, statisticsEnabled."""

from __future__ import annotations

import pytest

from tests.support.http import (  # noqa: F401
    Server,
    assert_invariants,
    call,
    full_snapshot,
    server_fixture,
)

WINDOW_KEYS = {"minutes", "entered", "answered", "abandoned", "expired", "cancelled", "ronas",
               "overflowedIn", "overflowedOut", "serviceLevel", "waitUntilAnswered", "handleTime"}
REALTIME_KEYS = {"waiting", "waitingByPriority", "waitingByStep", "reserved", "active",
                 "oldestWaitMs", "oldestTaskId", "agents", "availableAgents", "loggedInAgents"}


async def setup(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    await c.accept(t.id, t.media.id)
    await c.push_task("c2", "sales", priority=7)


async def test_queue_statistics_have_the_api_shape(server: Server) -> None:
    await setup(server)
    st, d = await call(server, "GET", "/v1/queues/sales/statistics?windowMinutes=30")
    assert st == 200
    assert set(d) == {"queueId", "at", "realtime", "window", "ewt"}
    assert set(d["realtime"]) == REALTIME_KEYS and set(d["window"]) == WINDOW_KEYS
    assert (d["window"]["minutes"], d["window"]["entered"], d["window"]["answered"]) == (30, 2, 1)
    assert d["window"]["serviceLevel"]["thresholdMs"] == 20_000
    assert (d["realtime"]["waitingByPriority"], d["realtime"]["active"]) == ({"7": 1}, 1)
    assert set(d["ewt"]) == {"ms", "method", "accuracy"}
    await assert_invariants(server.engine)


async def test_the_window_is_15_minutes_by_default(server: Server) -> None:
    await setup(server)
    assert (await server.client.queue_statistics("sales"))["window"]["minutes"] == 15


async def test_tenant_statistics_list_the_queues_and_agents(server: Server) -> None:
    await setup(server)
    d = await server.client.statistics(window_minutes=60)
    assert [q["queueId"] for q in d["queues"]] == ["sales"]
    assert d["queues"][0]["window"]["minutes"] == 60
    assert d["agents"] == {"READY": 1}


@pytest.mark.parametrize("path", ["/v1/queues/sales/statistics", "/v1/statistics"])
@pytest.mark.parametrize("query", ["windowMinutes=0", "windowMinutes=1441", "windowMinutes=x",
                                   "windowMinutes=1.5", "windowMinute=5"])
async def test_a_bad_window_is_422_and_changes_nothing(server: Server, path: str, query: str) -> None:
    await setup(server)
    before = await full_snapshot(server)
    st, p = await call(server, "GET", f"{path}?{query}")
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")
    assert query.split("=")[0] in p["detail"]
    assert await full_snapshot(server) == before


async def test_statistics_of_an_unknown_queue_are_404(server: Server) -> None:
    st, p = await call(server, "GET", "/v1/queues/nope/statistics")
    assert (st, p["code"]) == (404, "NOT_FOUND")


async def test_statistics_enabled_false_round_trips_and_stops_counting(server: Server) -> None:
    await setup(server)
    st, q = await call(server, "PUT", "/v1/queues/sales", {"mrdId": "chat", "statisticsEnabled": False})
    assert (st, q["statisticsEnabled"]) == (200, False)
    before = (await server.client.queue_statistics("sales"))["window"]["entered"]
    await server.client.push_task("c3", "sales")
    assert (await server.client.queue_statistics("sales"))["window"]["entered"] == before
    q = await server.client.put_queue("sales", mrd_id="chat")
    assert q.statistics_enabled is True and "statisticsEnabled" not in q.to_dict()
    await assert_invariants(server.engine)


async def test_statistics_enabled_must_be_a_boolean(server: Server) -> None:
    await setup(server)
    st, p = await call(server, "PUT", "/v1/queues/sales", {"mrdId": "chat", "statisticsEnabled": "no"})
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")


async def test_metrics_export_each_queue_s_figures_with_a_queue_label(server: Server) -> None:
    await setup(server)  # c1 answered at once, c2 waiting
    c = server.client
    [waiting] = await c.conversation_tasks("c2")
    await c.set_task_state(waiting.id, "CLOSED", "CANCELLED")
    text = await c.metrics()
    lines = set(text.splitlines())

    def series(name: str, value: float, **extra: str) -> str:
        labels = {"queue": "sales", "tenant": "default", **extra}  # printed in name order
        return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + f"}} {value}"

    for line in [
        series("redroute_queue_waiting", 0.0), series("redroute_queue_active", 1.0),
        series("redroute_queue_reserved", 0.0), series("redroute_queue_available_agents", 0.0),
        series("redroute_queue_entered_total", 2.0), series("redroute_queue_answered_total", 1.0),
        series("redroute_queue_answered_within_threshold_total", 1.0),
        series("redroute_queue_abandoned_total", 1.0, reason="cancelled"),
        series("redroute_queue_abandoned_total", 0.0, reason="expired"),
        series("redroute_queue_overflowed_total", 0.0, direction="out"),
        series("redroute_queue_service_level", 1.0, kind="sl"),
        series("redroute_queue_service_level", 1.0, kind="sl2"),  # left within it
        series("redroute_queue_abandoned_within_threshold_total", 1.0),
    ]:
        assert line in lines, line
    assert "# TYPE redroute_queue_entered_total counter" in lines
    assert 'redroute_queue_answer_wait_seconds{quantile="0.9",queue="sales",tenant="default"}' in text
