"""GET /wallboard: the live wallboard page, served by redroute from the
package, tested over HTTP and in a real headless browser (Debian's chromium
driven by Selenium, tests/support/browser.py) against a real server on the
suite's redis-server, reading the real statistics endpoint and event stream.

Each browser test sets its scene over HTTP, as a platform would, and reads
what the page shows: the tiles by their data-queue-id, each figure by its
data-field."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from redroute import Engine
from redroute.http import Settings
from redroute.keys import TenantKeys

from ..support.browser import HEIGHT, WIDTH, chromium, console_errors, requests_sent
from ..support.http import Server, ThreadServer, server_fixture  # noqa: F401
from ..support.redis_server import RedisProcess

KEY = "wallboard-key-7f3a9c"  # a key that must never appear in a URL
TENANT = "acme"
EVENTS = TenantKeys.of("default").events

# Where the screenshot README shows is written when asked:
# REDROUTE_WALLBOARD_SCREENSHOT=docs/wallboard.png pytest tests/http/test_wallboard.py -k screenshot
SCREENSHOT_ENV = "REDROUTE_WALLBOARD_SCREENSHOT"


# Over HTTP


async def test_the_page_is_served_without_a_key_and_holds_no_data(server: Server) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/wallboard") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await r.text()
        csp = r.headers["Content-Security-Policy"]
    assert "<title>redroute wallboard</title>" in html
    # Self-contained: nothing loaded from anywhere, the script and style inline.
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", html)
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*'", csp)
    assert "unsafe-inline" not in csp


def test_with_api_keys_and_protected_ops_the_page_is_still_served_without_one(
        redis_server: RedisProcess) -> None:
    settings = _settings(api_keys={KEY: TENANT}, protect_ops=True)
    with ThreadServer(redis_server.url, settings) as base:
        assert _api(base, "GET", "/v1/queues")[0] == 401
        assert _api(base, "GET", "/healthz")[0] == 401
        with urllib.request.urlopen(base + "/wallboard", timeout=10) as r:
            assert r.status == 200 and b"redroute wallboard" in r.read()


async def test_openapi_lists_the_wallboard(server: Server) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/openapi.json") as r:
        doc = await r.json()
    assert "text/html" in doc["paths"]["/wallboard"]["get"]["responses"]["200"]["content"]


# In the browser


def _settings(**kw: Any) -> Settings:
    return Settings(sse_keepalive=0.5, require_timer_worker=False, **kw)


def _api(base: str, method: str, path: str, body: Any = None, *, key: str | None = None,
         tenant: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if tenant:
        headers["X-Tenant"] = tenant
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _ok(base: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    status, doc = _api(base, method, path, body, **kw)
    assert status in (200, 201), f"{method} {path}: {status} {doc}"
    return doc


def _center(base: str, **kw: Any) -> None:
    """A chat MRD; queue sales with agent a1 READY and a2 logged in (NOT_READY);
    queue support with no agent."""
    _ok(base, "PUT", "/v1/mrds/chat", {"maxRequests": 1}, **kw)
    for q in ("sales", "support"):
        _ok(base, "PUT", f"/v1/queues/{q}", {"mrdId": "chat", "serviceLevelThresholdMs": 20000},
            **kw)
    for a in ("a1", "a2"):
        _ok(base, "PUT", f"/v1/agents/{a}", {"queues": ["sales"]}, **kw)
    _ok(base, "POST", "/v1/agents/a1/state", {"state": "READY"}, **kw)
    _ok(base, "POST", "/v1/agents/a2/state", {"state": "LOGIN"}, **kw)


@pytest.fixture
def base(redis_server: RedisProcess) -> Iterator[str]:
    redis_server.client().flushall()
    with ThreadServer(redis_server.url, _settings()) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _wait(driver: Any, what: str, until: Any, timeout: float = 15) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(until)
    except Exception:
        raise AssertionError(f"{what} within {timeout}s; the page shows:\n"
                             f"{driver.find_element(By.TAG_NAME, 'body').text}") from None


def _figure(driver: Any, queue: str, field: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR,
                                 f'[data-queue-id="{queue}"] [data-field="{field}"]')
    return found[0].text if found else ""


def _agents(driver: Any, queue: str) -> dict[str, int]:
    chips = driver.find_elements(By.CSS_SELECTOR, f'[data-queue-id="{queue}"] .chip')
    return {c.get_attribute("data-state"): int(c.get_attribute("data-count")) for c in chips}


def _sse_clients(base: str) -> float:
    """The server's count of connected SSE clients, from /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return float(re.search(r"^redroute_sse_clients (\S+)$", text, re.MULTILINE).group(1))


def _tile_shows(driver: Any, queue: str, field: str, text: str, what: str) -> None:
    _wait(driver, f"{queue}'s {field} showing {text!r} ({what})",
          lambda d: _figure(d, queue, field) == text)


def test_the_page_loads_with_no_console_errors_and_a_tile_per_queue(base: str, browser: Any
                                                                   ) -> None:
    _center(base)
    browser.get(base + "/wallboard")
    _wait(browser, "a tile per queue",
          lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile")) == 2)
    assert [t.get_attribute("data-queue-id")
            for t in browser.find_elements(By.CSS_SELECTOR, ".tile")] == ["sales", "support"]
    _wait(browser, "the live status", lambda d: d.find_element(By.ID, "status").text == "LIVE")
    assert _figure(browser, "sales", "waiting") == "0"
    assert _agents(browser, "sales") == {"READY": 1, "NOT_READY": 1}
    assert _agents(browser, "support") == {}
    assert _figure(browser, "support", "sl") == "—"  # nothing answered in the window
    assert console_errors(browser) == []


def test_a_team_board_shows_the_queues_its_url_names(base: str, browser: Any) -> None:
    _center(base)
    browser.get(base + "/wallboard?queues=support,gone")
    _wait(browser, "the tiles", lambda d: d.find_element(By.ID, "status").text == "LIVE")
    assert [t.get_attribute("data-queue-id")
            for t in browser.find_elements(By.CSS_SELECTOR, ".tile")] == ["support"]


def test_the_tenant_is_the_x_tenant_header_the_page_url_names(base: str, browser: Any) -> None:
    _center(base)  # the default tenant's
    _ok(base, "PUT", "/v1/mrds/voice", {}, tenant=TENANT)
    _ok(base, "PUT", "/v1/queues/acme-voice", {"mrdId": "voice"}, tenant=TENANT)
    browser.get(base + f"/wallboard?tenant={TENANT}")
    _wait(browser, "the tenant's tile", lambda d: _figure(d, "acme-voice", "waiting") == "0")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tile")) == 1
    assert browser.find_element(By.ID, "tenant").text == f"tenant {TENANT}"
    assert {r["headers"].get("X-Tenant") for r in requests_sent(browser)
            if "/v1/" in r["url"]} == {TENANT}


def test_a_pushed_task_changes_the_tile_without_a_reload(base: str, browser: Any) -> None:
    _center(base)
    browser.get(base + "/wallboard")
    _wait(browser, "the live status", lambda d: d.find_element(By.ID, "status").text == "LIVE")
    _tile_shows(browser, "support", "waiting", "0", "nothing pushed")
    browser.execute_script("window.notReloaded = true;")

    _ok(base, "POST", "/v1/tasks", {"conversationId": "c-1", "queueId": "support"})
    _tile_shows(browser, "support", "waiting", "1", "a task pushed to a queue without agents")
    # a2 joins support and becomes ready: the task is reserved to it at once.
    _ok(base, "PUT", "/v1/agents/a2", {"queues": ["sales", "support"]})
    _ok(base, "POST", "/v1/agents/a2/state", {"state": "READY"})
    _wait(browser, "the task reserved", lambda d: _figure(d, "support", "waiting") == "0"
          and _agents(d, "support") == {"BUSY": 1})

    assert browser.execute_script("return window.notReloaded === true;")
    sent = requests_sent(browser)
    assert [r["url"] for r in sent if r["url"].endswith("/wallboard")] == [base + "/wallboard"]
    assert any(r["url"] == base + "/v1/events" for r in sent), "the page follows the events"
    assert console_errors(browser) == []


def test_with_api_keys_the_page_asks_for_the_key_and_no_url_holds_it(
        redis_server: RedisProcess, browser: Any, caplog: pytest.LogCaptureFixture) -> None:
    redis_server.client().flushall()
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    with ThreadServer(redis_server.url, _settings(api_keys={KEY: TENANT})) as base:
        _center(base, key=KEY)
        browser.get(base + "/wallboard")
        _wait(browser, "the key asked for",
              lambda d: d.find_element(By.ID, "login").get_attribute("open") is not None)
        assert browser.find_element(By.ID, "status").text == "API KEY NEEDED"
        assert browser.find_elements(By.CSS_SELECTOR, ".tile") == []

        browser.find_element(By.ID, "key-input").send_keys("not-the-key")
        browser.find_element(By.ID, "key-submit").click()
        _wait(browser, "a wrong key refused", lambda d: "not valid" in d.find_element(
            By.ID, "login-error").text)

        browser.find_element(By.ID, "key-input").send_keys(KEY)
        browser.find_element(By.ID, "key-submit").click()
        _wait(browser, "the tenant's tiles", lambda d: _figure(d, "sales", "waiting") == "0")
        _wait(browser, "the live status", lambda d: d.find_element(By.ID, "status").text == "LIVE")
        _ok(base, "POST", "/v1/tasks", {"conversationId": "c-1", "queueId": "support"}, key=KEY)
        _tile_shows(browser, "support", "waiting", "1", "the event stream read with the key")

        sent = requests_sent(browser)
        api_calls = [r for r in sent if "/v1/" in r["url"]]
        assert {r["url"].split("?")[0] for r in api_calls} >= {base + "/v1/statistics",
                                                                base + "/v1/events"}
        assert not [r["url"] for r in sent if KEY in r["url"]]
        assert [r for r in api_calls if r["headers"].get("Authorization") == f"Bearer {KEY}"]
        assert KEY not in browser.current_url
        logged = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
        assert any("/v1/statistics" in line for line in logged), "the access log was read"
        assert not [line for line in logged if KEY in line]
        # Before the key was typed: 401s, and nothing else went wrong.
        assert all("401" in e for e in console_errors(browser))


def test_the_event_stream_parser_reads_lines_split_anywhere(base: str, browser: Any) -> None:
    browser.get(base + "/wallboard")
    chunks = ["retry: 2000\n\nid: 1-0\r\nevent: TASK_STATE_CHANGED\r", "\ndata: {\"a\"",
              ":1}\r\n\r", "\n: keep-alive\n\nevent: STREAM_GAP\ndata: x\ndata: y\n\n",
              "id: 2-0\nevent: AGENT_RESERVED\ndata:z\n\ndata: unfinished"]
    got = browser.execute_async_script("""
        const [chunks, done] = arguments, out = [], enc = new TextEncoder();
        const body = new ReadableStream({start(c) {
            chunks.forEach((x) => c.enqueue(enc.encode(x))); c.close(); }});
        window.redrouteWallboard.readEvents(body, (e) => out.push(e)).then(() => done(out));
    """, chunks)
    assert got == [
        {"type": None, "id": None, "retry": 2000, "data": ""},
        {"type": "TASK_STATE_CHANGED", "id": "1-0", "retry": None, "data": '{"a":1}'},
        {"type": "STREAM_GAP", "id": "1-0", "retry": None, "data": "x\ny"},  # no id: kept
        {"type": "AGENT_RESERVED", "id": "2-0", "retry": None, "data": "z"},
    ]  # an event the stream ends before its blank line is never dispatched


def test_a_dropped_event_stream_resumes_after_its_last_event_id(redis_server: RedisProcess,
                                                                 browser: Any) -> None:
    # A queue of one entry per SSE client: an operation publishing several
    # events at once drops the page's stream as too slow (http/sse.py).
    redis_server.client().flushall()
    with ThreadServer(redis_server.url, _settings(sse_queue_size=1)) as base:
        _center(base)
        browser.get(base + "/wallboard")
        _wait(browser, "the event stream open", lambda d: _sse_clients(base) == 1)
        _ok(base, "POST", "/v1/agents/a2/state", {"state": "NOT_READY"})  # one event
        (first, _), = redis_server.client().xrevrange(EVENTS, count=1)
        _wait(browser, "the event received", lambda d: d.find_element(
            By.ID, "status").get_attribute("data-last-event-id") == first)

        requests_sent(browser)  # the requests so far, read and left behind
        # a1 is offered the task: several events in one step, the stream dropped
        _ok(base, "POST", "/v1/tasks", {"conversationId": "c-1", "queueId": "sales"})
        (last, _), = redis_server.client().xrevrange(EVENTS, count=1)
        resumed = _wait(browser, "a reconnection after the drop", lambda d: [
            r for r in requests_sent(d) if r["url"] == base + "/v1/events"])
        assert resumed[0]["headers"].get("Last-Event-ID") == first
        _wait(browser, "the events published meanwhile caught up", lambda d: d.find_element(
            By.ID, "status").get_attribute("data-last-event-id") == last)


# Six queues, their agents (READY or logged in NOT_READY) and the pushes
# each 30-second step brings to each queue.
SCENE = {"sales-chat": (["READY"] * 4 + ["LOGIN"], 2), "support-chat": (["READY"] * 2, 2),
         "billing-chat": (["READY", "LOGIN"], 1), "vip-chat": (["READY"] * 2, 1),
         "returns-chat": (["READY"] * 3 + ["LOGIN"] * 2, 1), "tech-chat": (["READY"] * 3, 3)}


def _advance(redis_url: str, ms: int) -> None:
    """The tenant's clock, moved forward as the engine's tests move it."""
    async def go() -> None:
        redis = aioredis.from_url(redis_url, decode_responses=True)
        await Engine(redis, "default").advance_clock(ms)
        await redis.aclose()
    asyncio.run(go())


def _work(base: str, agent: str) -> None:
    """The agent accepts its reserved task, or ends the one it handled."""
    for task in _ok(base, "GET", f"/v1/agents/{agent}/tasks")["tasks"]:
        for media in task["activeMedia"]:
            nxt = {"RESERVED": {"state": "ACTIVE", "agentId": agent},
                   "ACTIVE": {"state": "CLOSED"}}.get(media["state"])
            if nxt:
                _ok(base, "PUT", f"/v1/tasks/{task['id']}/media/{media['id']}/state", nxt)


def test_a_screenshot_of_a_busy_center_at_wall_size(redis_server: RedisProcess, base: str,
                                                    browser: Any, tmp_path: Path) -> None:
    """The scene README shows: eight minutes of a busy center on the test
    clock, every figure from the real statistics."""
    _ok(base, "PUT", "/v1/mrds/chat", {"maxRequests": 1})
    agents = []
    for q, (states, _) in SCENE.items():
        _ok(base, "PUT", f"/v1/queues/{q}", {"mrdId": "chat", "serviceLevelThresholdMs": 20000})
        for n, state in enumerate(states):
            agents.append(f"{q}-{n}")
            _ok(base, "PUT", f"/v1/agents/{agents[-1]}", {"queues": [q]})
            _ok(base, "POST", f"/v1/agents/{agents[-1]}/state", {"state": state})
    browser.get(base + "/wallboard")
    _wait(browser, "every tile", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile")) == 6
          and d.find_element(By.ID, "status").text == "LIVE")
    for step in range(16):
        samples = _samples(browser)
        _advance(redis_server.url, 30_000)
        for q, (_, pushes) in SCENE.items():
            for n in range(pushes + (step % 3 == 0 and q == "tech-chat")):
                _ok(base, "POST", "/v1/tasks", {"conversationId": f"{q}-{step}-{n}",
                                                "queueId": q})
        for agent in agents:
            _work(base, agent)
        _wait(browser, "the step drawn", lambda d, before=samples: _samples(d) > before)
    path = tmp_path / "wallboard.png"
    assert browser.save_screenshot(str(path))
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG's IHDR
    assert (width, height) == (WIDTH, HEIGHT)
    assert console_errors(browser) == []
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(path, os.environ[SCREENSHOT_ENV])


def _samples(driver: Any) -> int:
    spark = driver.find_element(By.CSS_SELECTOR, '[data-queue-id="tech-chat"] .spark')
    return int(spark.get_attribute("data-samples") or 0)
