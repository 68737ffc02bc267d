"""GET /wallboard: the live wallboard page, served by redroute from the
package, tested over HTTP and in a real headless browser (Debian's chromium
driven by Selenium, tests/support/browser.py) against a real server on the
suite's redis-server, reading the real statistics endpoint and event stream.

Each browser test sets its scene over HTTP, as a platform would, and reads
what the page shows: the tiles by their data-queue-id, each figure by its
data-field."""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from redroute.http import Settings
from redroute.keys import TenantKeys

from ..support.browser import chromium, requests_sent
from ..support.http import Server, ThreadServer, server_fixture  # noqa: F401
from ..support.redis_server import RedisProcess

KEY = "wallboard-key-7f3a9c"  # a key that must never appear in a URL
TENANT = "acme"
EVENTS = TenantKeys.of("default").events


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


def test_with_api_keys_the_page_is_still_served_without_one(redis_server: RedisProcess
                                                                  ) -> None:
    with ThreadServer(redis_server.url, _settings(api_keys={KEY: TENANT})) as base:
        status, _ = _api(base, "GET", "/v1/queues")
        assert status == 401
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


def test_with_api_keys_the_page_asks_for_the_key(
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

        assert not [r["url"] for r in requests_sent(browser) if "not-the-key" in r["url"]]


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
