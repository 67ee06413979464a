"""The dashboard in a real headless Chromium.

Runs page, a run with failures, filters, an item, and live progress while a run writes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from .builders import SECRET, engine_run, failing_batches, workflow_run
from .conftest import screenshot

pytestmark = pytest.mark.browser


def _by(name: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, name)


def _wait(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ui")
    engine_state = folder / "engine.db"
    engine_run(engine_state)
    failing_batches(engine_state)
    return [engine_state, workflow_run(folder / "wf")]


def test_runs_page_lists_every_front_doors_runs(
    browser: Any, dashboard_for: Any, states: list[Path]
) -> None:
    board = dashboard_for(*states)
    browser.get(board.url + "/")
    rows = browser.find_elements(_by("CSS_SELECTOR"), "table#runs tr.run")
    ids = {row.get_attribute("data-run-id") for row in rows}
    assert {"enrich-nov", "flaky"} <= ids
    workflow = [
        row
        for row in rows
        if row.find_element(_by("TAG_NAME"), "td").text not in {"enrich-nov", "flaky"}
    ]
    assert workflow, "the workflow run is listed"
    children = browser.find_elements(_by("CSS_SELECTOR"), "table#runs tr.child")
    assert any(child.get_attribute("data-run-id").endswith("/tag") for child in children)
    screenshot(browser, "runs")
    # filter by status: only failed runs stay
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(_by("ID"), "status-filter")).select_by_value("failed")
    browser.find_element(_by("CSS_SELECTOR"), "#run-filters button").click()
    _wait(browser, lambda d: "status=failed" in d.current_url)
    statuses = {
        badge.text
        for badge in browser.find_elements(_by("CSS_SELECTOR"), "table#runs tr.run .badge")
    }
    assert statuses == {"failed"}


def test_run_with_failures_filter_and_open_an_item(
    browser: Any, dashboard_for: Any, states: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.support.ui import Select

    monkeypatch.setenv("SERVICE_TOKEN", SECRET)  # the server redacts the values of secret env vars
    board = dashboard_for(*states)
    browser.get(board.url + "/")
    browser.find_element(_by("LINK_TEXT"), "enrich-nov").click()
    _wait(browser, lambda d: d.find_elements(_by("ID"), "failures"))
    assert browser.find_element(_by("ID"), "run-failed").text == "67"
    assert browser.find_element(_by("ID"), "failure-count").text == "67"
    assert "enrich-nov" in browser.find_element(_by("ID"), "resume-command").text
    _wait(browser, lambda d: d.find_elements(_by("CSS_SELECTOR"), "#chart canvas"))
    screenshot(browser, "run")
    Select(browser.find_element(_by("ID"), "error-type")).select_by_value("KeyError")
    browser.find_element(_by("ID"), "apply-error-type").click()
    _wait(browser, lambda d: "error_type=KeyError" in d.current_url)
    rows = browser.find_elements(_by("CSS_SELECTOR"), "#failures tr.failure")
    assert len(rows) == 24
    assert {row.get_attribute("data-error-type") for row in rows} == {"KeyError"}
    assert all("sk-test" not in row.text for row in rows)  # the secret in the message is redacted
    rows[0].find_element(_by("CSS_SELECTOR"), "a.item-link").click()
    _wait(browser, lambda d: d.find_elements(_by("ID"), "item-error-type"))
    assert browser.find_element(_by("ID"), "item-key-value").text == "11"
    assert browser.find_element(_by("ID"), "item-error-type").text == "KeyError"
    assert "missing field in 11" in browser.find_element(_by("ID"), "item-error").text
    screenshot(browser, "item")


def test_item_browser_pages_and_search(
    browser: Any, dashboard_for: Any, states: list[Path]
) -> None:
    board = dashboard_for(*states)
    browser.get(board.url + "/items?s=0&id=enrich-nov")
    first = [a.text for a in browser.find_elements(_by("CSS_SELECTOR"), "#items a.item-link")]
    assert first[:3] == ["0", "1", "2"]
    assert len(first) == 50
    browser.find_element(_by("ID"), "next-page").click()
    _wait(browser, lambda d: "page=2" in d.current_url)
    second = [a.text for a in browser.find_elements(_by("CSS_SELECTOR"), "#items a.item-link")]
    assert second[0] == "50"
    box = browser.find_element(_by("ID"), "item-key")
    box.send_keys("42")
    box.submit()
    _wait(browser, lambda d: "q=42" in d.current_url)
    links = browser.find_elements(_by("CSS_SELECTOR"), "#items a.item-link")
    assert [a.text for a in links] == ["42"]
    links[0].click()
    _wait(browser, lambda d: d.find_elements(_by("ID"), "item-status"))
    assert browser.find_element(_by("ID"), "item-status").text == "failed"  # 42 = 6 x 7


SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from batchline import SQLiteStateStore, run_batches

    def work(batch):
        time.sleep(0.25)
        return [item + 1 for item in batch.items]

    with SQLiteStateStore(sys.argv[1]) as store:
        run_batches(list(range(400)), work, chunk_size=10, store=store, run_id="live-run")
    """
)


def test_live_progress_advances_while_a_run_writes(
    browser: Any, dashboard_for: Any, tmp_path: Path
) -> None:
    state = tmp_path / "live.db"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RUN)
    writer = subprocess.Popen([sys.executable, str(script), str(state)])
    try:
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        board = dashboard_for(state, poll=0.2)
        _wait(
            browser,
            lambda d: (
                (d.get(board.url + "/run?s=0&id=live-run") or True)
                and d.find_elements(_by("ID"), "live")
            ),
        )
        start = int(browser.find_element(_by("ID"), "run-succeeded").text.replace(",", ""))
        # no reload: the page's own event stream moves the numbers
        _wait(
            browser,
            lambda d: (
                int(d.find_element(_by("ID"), "run-succeeded").text.replace(",", "")) >= start + 30
            ),
        )
        screenshot(browser, "live")
        url = browser.current_url
        writer.wait(timeout=60)
        _wait(
            browser,
            lambda d: d.find_element(_by("ID"), "run-status").text == "completed",
            timeout=30,
        )
        assert browser.current_url == url
        assert browser.find_element(_by("ID"), "run-succeeded").text == "400"
    finally:
        writer.kill()
        writer.wait()


STOPPABLE_RUN = textwrap.dedent(
    """
    import sys, time
    from batchline import RunInterrupted, SQLiteStateStore, run_batches

    def work(batch):
        time.sleep(0.05)
        return [{"n": item, "double": item * 2} for item in batch.items]

    try:
        with SQLiteStateStore(sys.argv[1]) as store:
            run_batches(list(range(300)), work, chunk_size=10, store=store, run_id="stop-and-go")
    except RunInterrupted:
        sys.exit(130)
    """
)


def test_an_interrupted_and_resumed_run_shows_its_history_and_every_item(
    browser: Any, dashboard_for: Any, tmp_path: Path
) -> None:
    import signal

    from batchline import SQLiteStateStore

    state = tmp_path / "state.db"
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE_RUN)
    first = subprocess.Popen([sys.executable, str(script), str(state)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if state.exists():
            with SQLiteStateStore(state) as store:
                if any(r.run_id == "stop-and-go" and r.succeeded >= 60 for r in store.list_runs()):
                    break
    first.send_signal(signal.SIGINT)
    assert first.wait(60) == 130
    subprocess.run([sys.executable, str(script), str(state)], check=True, timeout=120)

    board = dashboard_for(state)
    browser.get(board.url + "/run?s=0&id=stop-and-go")
    sessions = browser.find_elements(_by("CSS_SELECTOR"), "#sessions tr.session")
    assert [row.get_attribute("class").split()[-1] for row in sessions] == [
        "interrupted",
        "completed",
    ]
    assert browser.find_element(_by("ID"), "run-succeeded").text == "300"
    screenshot(browser, "history")
    browser.find_element(_by("ID"), "browse-items").click()
    _wait(browser, lambda d: d.find_elements(_by("ID"), "pager"))
    assert "(300 items)" in browser.find_element(_by("ID"), "pager").text
    keys: list[str] = []
    while True:
        keys += [a.text for a in browser.find_elements(_by("CSS_SELECTOR"), "#items a.item-link")]
        following = browser.find_elements(_by("ID"), "next-page")
        if not following:
            break
        following[0].click()
    assert len(keys) == 300
    assert len(set(keys)) == 300
