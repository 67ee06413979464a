"""Fixtures for the dashboard: a server on a free loopback port, and a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchline.ui import create_app, serve

CHROMIUM = next(
    (
        p
        for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
        if p and os.path.exists(p)
    ),
    None,
)
CHROMEDRIVER = next(
    (
        p
        for p in (
            os.environ.get("CHROMEDRIVER"),
            "/usr/bin/chromedriver",
            shutil.which("chromedriver"),
        )
        if p and os.path.exists(p)
    ),
    None,
)
SCREENSHOTS = os.environ.get("BATCHLINE_UI_SCREENSHOTS")  # a folder: save the docs' screenshots


class Dashboard:
    """A running ``batchline ui`` app in a background thread."""

    def __init__(self, states: list[Path], poll: float = 0.2) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(states, poll_seconds=poll)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the dashboard did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = self.loop.run_until_complete(serve(self.app, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def dashboard_for() -> Iterator[Any]:
    started: list[Dashboard] = []

    def start(*states: Path, poll: float = 0.2) -> Dashboard:
        board = Dashboard(list(states), poll)
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "no Chromium/ChromeDriver here: install Debian's `chromium chromium-driver` "
            "(.ci/run does) to run the dashboard's browser tests"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    """Save a screenshot for docs/ui.md when BATCHLINE_UI_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))
