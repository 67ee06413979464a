"""The engine's public contract: run sessions, per-item outcomes, final stream stats."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from batchline import (
    MemoryStateStore,
    RunActiveError,
    RunInterrupted,
    SQLiteStateStore,
    StateError,
    StopRun,
)
from batchline.engine import (
    Batch,
    ItemFailed,
    ItemResults,
    RetryPolicy,
    RunSession,
    arun_items,
    astream_batches,
    child_run_id,
    is_child_of,
    resume_id,
    run_batches,
    run_items,
    run_label,
    split_run_id,
    stream_batches,
)
from batchline.errors import ConfigurationError


def test_child_run_ids_have_one_convention() -> None:
    child = child_run_id("nightly", "process")
    assert child == "nightly/process"
    assert split_run_id(child) == ("nightly", "process")
    assert split_run_id("nightly") == ("nightly", None)
    assert split_run_id("wf/step/with/slash") == ("wf", "step/with/slash")
    assert is_child_of(child, "nightly")
    assert not is_child_of("nightly-2/x", "nightly")
    assert run_label(child) == "run 'nightly' (stage 'process')"
    assert run_label("nightly") == "run 'nightly'"
    assert resume_id(child) == "nightly"
    with pytest.raises(ConfigurationError, match="child run name"):
        child_run_id("nightly", "")


def test_session_commits_and_releases_with_the_final_status(db_path: Path) -> None:
    store = SQLiteStateStore(db_path)
    with RunSession(store, "wf", meta={"kind": "test"}) as session:
        assert not session.resumed
        session.record("step:a", {"status": "completed"}, position=0)
        session.record("step:b", {"status": "completed"}, position=1, attempts=2)
        with pytest.raises(RunActiveError):
            RunSession(store, "wf").open()  # one driver per run
    assert store.get_run("wf").status == "completed"
    assert [r.key for r in store.iter_items("wf")] == ["step:a", "step:b"]

    again = RunSession(store, "wf")
    with again:
        assert again.resumed
        assert again.committed_items == 2
    interrupted = RunSession(store, "wf")
    with pytest.raises(KeyboardInterrupt), interrupted:
        raise KeyboardInterrupt
    assert store.get_run("wf").status == "interrupted"
    with pytest.raises(StopRun), RunSession(store, "wf"):
        raise StopRun("budget")
    assert store.get_run("wf").status == "stopped"
    with pytest.raises(ValueError, match="x"), RunSession(store, "wf"):
        raise ValueError("x")
    assert store.get_run("wf").status == "failed"
    closed = RunSession(store, "wf")
    with pytest.raises(StateError, match="not open"):
        closed.record("k", 1, position=0)
    store.close()


def test_session_heartbeat_keeps_the_lease_and_reports_losing_it(db_path: Path) -> None:
    store = SQLiteStateStore(db_path, lease_ttl=0.3)
    session = RunSession(store, "r").open()

    def heartbeat_at() -> float:
        with sqlite3.connect(db_path) as db:
            return float(db.execute("SELECT heartbeat_at FROM runs").fetchone()[0])

    first = heartbeat_at()
    deadline = time.monotonic() + 30
    while heartbeat_at() == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert heartbeat_at() > first  # the session beats on its own
    with sqlite3.connect(db_path) as db:  # someone else took the run over
        db.execute("UPDATE runs SET lease_token = 'other'")
    lost: StateError | None = None
    deadline = time.monotonic() + 30
    while lost is None and time.monotonic() < deadline:
        try:
            session.record("k", 1, position=0)
        except StateError as exc:
            lost = exc
        time.sleep(0.05)
    assert lost is not None, "a session that lost its lease kept writing"
    assert "taken over" in str(lost)
    session.close("failed")
    store.close()


def test_item_results_fail_only_the_unstorable_item(db_path: Path) -> None:
    def fn(batch: Batch[int]) -> ItemResults:
        out = ItemResults()
        for item in batch.items:
            if item == 2:
                out.append({1, 2})  # a set: not JSON
            elif item == 4:
                out.append(float("nan"))  # not JSON either
            elif item == 5:
                out.append(ItemFailed(ValueError("bad item"), attempts=3))
            elif item == 7:
                out.append(TimeoutError("no answer"))  # an exception in place of a result
            else:
                out.append(item * 10)
        return out

    store = SQLiteStateStore(db_path)
    result = run_batches(range(8), fn, key=lambda i: i, chunk_size=8, store=store, run_id="r")
    assert result.results == [0, 10, None, 30, None, None, 60, None]
    assert sorted(result.failed_keys) == [2, 4, 5, 7]
    by_key = {r.key: r for r in store.iter_items("r")}
    assert by_key[2].error_type == "BatchResultError"
    assert "not JSON" in (by_key[2].message or "")
    assert (by_key[5].error_type, by_key[5].attempts) == ("ValueError", 3)
    assert (by_key[7].error_type, by_key[7].message) == ("TimeoutError", "no answer")
    assert by_key[6].status == "done"
    assert result.stats.succeeded == 4
    assert result.stats.failed == 4
    store.close()


def test_run_items_retries_items_one_by_one() -> None:
    calls: dict[int, int] = {}

    def flaky(item: int) -> int:
        calls[item] = calls.get(item, 0) + 1
        if item == 1 and calls[item] < 3:
            raise ConnectionError("flaky")
        if item == 2:
            raise ValueError("always")
        return item

    policy = RetryPolicy(max_attempts=3, backoff=0, jitter=0)
    outcomes = run_items([0, 1, 2], flaky, policy, wrap=lambda value, attempts: [value, attempts])
    assert outcomes[:2] == [[0, 1], [1, 3]]
    assert isinstance(outcomes[2], ItemFailed)
    assert outcomes[2].attempts == 3
    assert outcomes.failed == [2]

    async def twice(item: int) -> int:
        await asyncio.sleep(0)
        if item == 2:
            raise ValueError("no")
        return item * 2

    async_outcomes = asyncio.run(arun_items([1, 2, 3], twice, policy, concurrency=2))
    assert async_outcomes[0] == 2
    assert async_outcomes[2] == 6
    assert isinstance(async_outcomes[1], ItemFailed)


def test_stream_batches_hands_back_the_engines_final_stats() -> None:
    store = MemoryStateStore()
    stream = stream_batches(
        range(10),
        lambda b: [None if i == 3 else i for i in b.items],
        chunk_size=4,
        store=store,
        run_id="s",
        retry=RetryPolicy.none(),
    )
    outcomes = list(stream)
    assert len(outcomes) == 3
    assert stream.finished
    assert stream.run_id == "s"
    stats = stream.stats
    assert (stats.total, stats.succeeded, stats.failed, stats.batches) == (10, 10, 0, 3)
    assert stats.duration > 0

    # A resumed run: the engine counts the resumed items too.
    again = stream_batches(
        range(10), lambda b: list(b.items), chunk_size=4, store=store, run_id="s"
    )
    list(again)
    assert (again.stats.resumed, again.stats.succeeded) == (10, 10)

    async def consume() -> Any:
        stream = astream_batches(
            range(5), lambda b: [ItemFailed("no")] * len(b.items), chunk_size=2
        )
        async for _ in stream:
            pass
        return stream

    done = asyncio.run(consume())
    assert (done.stats.total, done.stats.failed, done.stats.batches) == (5, 5, 3)
    assert len(done.failures) == 3


def test_a_closed_stream_releases_and_counts_what_ran(db_path: Path) -> None:
    store = SQLiteStateStore(db_path)
    stream = stream_batches(
        range(9), lambda b: list(b.items), chunk_size=3, store=store, run_id="c"
    )
    next(stream)
    stream.close()
    assert stream.finished
    assert stream.stats.succeeded == 3
    assert store.get_run("c").status == "interrupted"
    store.close()


def test_interrupts_of_a_child_run_name_the_users_run() -> None:
    def stop_now(batch: Batch[int]) -> list[int]:
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as caught:
        run_batches(range(4), stop_now, chunk_size=2, run_id=child_run_id("nightly", "step"))
    message = str(caught.value)
    assert message.startswith("run 'nightly' (stage 'step') interrupted")
