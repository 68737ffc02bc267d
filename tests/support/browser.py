"""A real headless browser for the tests of web pages: Debian's chromium
driven through its chromium-driver by Selenium, both found on PATH (never
downloaded). With CI=true a missing browser or driver fails the run instead
of skipping, as a missing redis-server does."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from selenium import webdriver

from .redis_server import IN_CI

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")
WIDTH, HEIGHT = 1920, 1080  # a wall display


def _find(names: tuple[str, ...]) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def browser_paths() -> tuple[str, str]:
    """(browser, driver) on PATH; a skip, or a failure under CI, when absent."""
    browser, driver = _find(BROWSERS), _find(DRIVERS)
    missing = [what for what, path in (("chromium", browser), ("chromium-driver", driver))
               if path is None]
    if missing:
        msg = f"{' and '.join(missing)} not on PATH (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{msg}: CI tests the web pages in a real browser", pytrace=False)
        pytest.skip(msg)
    assert browser is not None and driver is not None
    return browser, driver


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium WebDriver with a 1920x1080 viewport, its console
    (`browser`) and network (`performance`) logs recorded."""
    browser, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", f"--window-size={WIDTH},{HEIGHT}", "--no-sandbox",
                "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The driver on PATH, so Selenium Manager downloads nothing.
    os.environ.setdefault("SE_AVOID_STATS", "true")
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # The page's viewport, not the window around it, is the wall's size.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The console messages of level SEVERE since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requests_sent(driver: Any) -> list[dict[str, Any]]:
    """Every request the page has sent since the last call (URL, method and
    headers), from the performance log's Network.requestWillBeSent."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.append(message["params"]["request"])
    return out
