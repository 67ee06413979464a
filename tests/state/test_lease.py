"""Leases: one driver per run, even across processes; dead holders are taken over."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from batchline import (
    MemoryStateStore,
    RunActiveError,
    SQLiteStateStore,
    StateError,
    run_batches,
    stream_batches,
)

HOLDER = str(Path(__file__).resolve().parents[1] / "cases" / "hold_lease.py")


def test_second_driver_in_same_process_is_refused(db_path: Path) -> None:
    for store in (MemoryStateStore(), SQLiteStateStore(db_path)):
        stream = stream_batches(
            range(10), lambda b: list(b.items), chunk_size=2, store=store, run_id="r"
        )
        next(stream)
        with pytest.raises(RunActiveError, match="this process"):
            run_batches(range(10), lambda b: list(b.items), store=store, run_id="r")
        rest = list(stream)
        assert len(rest) == 4
        # Released at the end: the run can be driven again.
        assert run_batches(range(10), lambda b: list(b.items), store=store, run_id="r").ok


def test_live_process_holding_the_run_is_named(db_path: Path, python: str) -> None:
    SQLiteStateStore(db_path).close()
    child = subprocess.Popen(
        [python, HOLDER, str(db_path), "r", "hold"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(RunActiveError) as caught:
            run_batches([1], lambda b: [1], store=SQLiteStateStore(db_path), run_id="r")
        assert caught.value.pid == child.pid
        assert f"process {child.pid}" in str(caught.value)
    finally:
        child.kill()
        child.wait()
    # Killed: its lease is taken over at once.
    assert run_batches([1], lambda b: [1], store=SQLiteStateStore(db_path), run_id="r").ok


def test_crashed_holder_is_taken_over_at_once(db_path: Path, python: str) -> None:
    subprocess.run([python, HOLDER, str(db_path), "r", "die"], check=True, capture_output=True)
    result = run_batches(
        [1, 2], lambda b: list(b.items), store=SQLiteStateStore(db_path), run_id="r"
    )
    assert result.ok


def _fake_remote_holder(db_path: Path, heartbeat_age: float) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE runs SET lease_token = 'remote', lease_pid = 4242, lease_host = 'elsewhere',"
            " heartbeat_at = ? WHERE run_id = 'r'",
            (time.time() - heartbeat_age,),
        )


def test_remote_holder_is_respected_until_its_heartbeat_expires(db_path: Path) -> None:
    store = SQLiteStateStore(db_path, lease_ttl=30)
    run_batches([1], lambda b: [1], store=store, run_id="r")
    _fake_remote_holder(db_path, heartbeat_age=1)
    with pytest.raises(RunActiveError, match=r"process 4242 on elsewhere.*heartbeat"):
        run_batches([1], lambda b: [1], store=store, run_id="r")
    _fake_remote_holder(db_path, heartbeat_age=60)
    assert run_batches([1, 2], lambda b: list(b.items), store=store, run_id="r").ok


def test_a_driver_that_lost_its_lease_stops_writing(db_path: Path) -> None:
    store = SQLiteStateStore(db_path)
    stream = stream_batches(
        range(6), lambda b: list(b.items), chunk_size=2, store=store, run_id="r"
    )
    next(stream)
    _fake_remote_holder(db_path, heartbeat_age=0)  # someone else took the run over
    with pytest.raises(StateError, match="taken over"):
        list(stream)


def test_error_pickles() -> None:
    import pickle

    error = RunActiveError("r", 5, "h", "alive")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.run_id, copy.pid, copy.host, str(copy)) == ("r", 5, "h", str(error))
