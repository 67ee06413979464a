"""Signals with real processes: the first stops gracefully, the second abandons at once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from batchline import SQLiteStateStore

WORKER = str(Path(__file__).resolve().parents[1] / "cases" / "signal_worker.py")
ITEMS = 40


def _start(python: str, db: Path, log: Path, driver: str, concurrency: int, sleep: float) -> Any:
    return subprocess.Popen(
        [python, WORKER, str(db), "sig", driver, str(concurrency), str(sleep), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(log: Path, word: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(word)]


def _wait_for(log: Path, word: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_lines(log, word)) < count:
        assert time.monotonic() < deadline, f"never saw {count} {word!r} lines"
        time.sleep(0.01)


def _interrupted(returncode: int) -> bool:
    # An uncaught RunInterrupted ends a script with exit status 130, as Ctrl-C does (Python
    # itself gives a KeyboardInterrupt *subclass* status 1; batchline's hook makes it 130).
    return returncode == 130


@pytest.mark.parametrize(
    ("driver", "concurrency"),
    [("sync", 1), ("sync", 4), ("async", 4), ("async-threads", 4)],
)
def test_second_signal_abandons_the_work_in_flight_at_once(
    tmp_path: Path, python: str, driver: str, concurrency: int
) -> None:
    db, log = tmp_path / "state.db", tmp_path / "run.log"
    # Batches that would take 5 minutes: only abandoning them ends the run.
    child = _start(python, db, log, driver, concurrency, 300)
    _wait_for(log, "start", concurrency)
    child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    while "received" not in (err := child.stderr.readline()) and time.monotonic() < deadline:  # type: ignore[union-attr]
        pass
    assert "SIGINT received: finishing the work in flight" in err
    assert "send SIGINT again to abandon" in err
    child.send_signal(signal.SIGINT)
    _, rest = child.communicate(timeout=20)  # far less than the 300 s the batches take
    assert _interrupted(child.returncode), rest
    assert "RunInterrupted" in rest
    assert "abandoned" in rest
    started = _lines(log, "start")
    assert len(started) == concurrency, "no batch starts after the first signal"
    assert _lines(log, "end") == []

    store = SQLiteStateStore(db)
    info = store.get_run("sig")
    assert (info.status, info.succeeded, info.failed, info.active_pid) == (
        "interrupted",
        0,
        0,
        None,
    )
    store.close()
    resumed = _start(python, db, tmp_path / "resume.log", driver, concurrency, 0)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip() == f"finished {ITEMS}"
    assert len(_lines(tmp_path / "resume.log", "end")) == ITEMS // 2


@pytest.mark.parametrize(("driver", "concurrency"), [("sync", 3), ("async", 3)])
def test_first_signal_finishes_and_commits_the_work_in_flight(
    tmp_path: Path, python: str, driver: str, concurrency: int
) -> None:
    db, log = tmp_path / "state.db", tmp_path / "run.log"
    child = _start(python, db, log, driver, concurrency, 0.4)
    _wait_for(log, "start", concurrency + 1)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert _interrupted(child.returncode), err
    told = [line for line in err.splitlines() if line.startswith("batchline:")]
    assert len(told) == 1, err  # exactly one line, with no logging configured
    assert "SIGTERM received" in told[0]
    started, ended = _lines(log, "start"), _lines(log, "end")
    assert sorted(started) == sorted(ended), "everything started finished"
    store = SQLiteStateStore(db)
    info = store.get_run("sig")
    assert info.status == "interrupted"
    assert info.succeeded == 2 * len(ended)  # and was committed
    assert info.failed == 0
    assert info.succeeded < ITEMS
