"""Headless Chromium for the browser tests, shared by every test directory.

The ``chromium`` fixture is registered by ``tests/conftest.py``; tests that use it are marked
``browser``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: Debian's Chromium and its driver (packages ``chromium`` and ``chromium-driver``).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_PACKAGES = "chromium chromium-driver"

#: Headless, and nothing that reaches the network or the GPU behind the test's back.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Seconds selenium waits for a page load or a script.
BROWSER_TIMEOUT = 30


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    """``chromium()`` starts headless Chromium under selenium and returns the driver.

    Started from inside the test, not as a fixture value, so that a missing browser makes the
    test FAIL (naming the Debian packages) rather than error out or skip. Selenium is given
    both binaries and ``SE_OFFLINE=true``, so it never tries to download a driver.
    """
    drivers: list[Any] = []

    def start() -> Any:
        missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
        if missing:
            pytest.fail(
                f"{' and '.join(missing)} not found: the browser tests need Debian's Chromium "
                f"and its WebDriver (apt-get install {CHROMIUM_PACKAGES})"
            )
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        monkeypatch.setenv("SE_OFFLINE", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        drivers.append(driver)
        driver.set_page_load_timeout(BROWSER_TIMEOUT)
        driver.set_script_timeout(BROWSER_TIMEOUT)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
