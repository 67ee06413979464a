"""KeyboardInterrupt, SystemExit and GeneratorExit from user code stop a run like a signal."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from batchline import (
    Batch,
    ItemFailed,
    MemoryStateStore,
    RetryPolicy,
    RunInterrupted,
    SQLiteStateStore,
    arun_batches,
    run_batches,
)
from batchline.engine import ItemNotRun

ITEMS = list(range(20))


def _raiser(kind: type[BaseException], on_batch: int) -> Any:
    def work(batch: Batch[int]) -> list[int]:
        if batch.number == on_batch:
            raise kind("stop here")
        return [i * 10 for i in batch.items]

    return work


@pytest.mark.parametrize("concurrency", [1, 2, 4])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, GeneratorExit])
def test_interrupt_from_a_batch_stops_the_run_and_records_no_failure(
    sqlite_store: SQLiteStateStore, concurrency: int, kind: type[BaseException]
) -> None:
    with pytest.raises(RunInterrupted) as caught:
        run_batches(
            ITEMS,
            _raiser(kind, 3),
            chunk_size=2,
            store=sqlite_store,
            run_id="r",
            max_concurrency=concurrency,
            progress=False,
        )
    assert kind.__name__ in str(caught.value)
    assert "run_id='r'" in str(caught.value)
    info = sqlite_store.get_run("r")
    assert info.status == "interrupted"
    assert info.failed == 0  # never recorded as a failed batch
    assert 0 < info.succeeded < len(ITEMS)
    assert caught.value.result is not None
    assert caught.value.result.failures == []
    # The resume runs the rest, the interrupted batch included.
    done = run_batches(
        ITEMS, _raiser(kind, 0), chunk_size=2, store=sqlite_store, run_id="r", progress=False
    )
    assert done.ok
    assert done.results == [i * 10 for i in ITEMS]
    assert done.stats.resumed == info.succeeded


@pytest.mark.parametrize("concurrency", [1, 3])
def test_system_exit_from_a_batch_saves_the_run_then_exits(
    sqlite_store: SQLiteStateStore, concurrency: int
) -> None:
    with pytest.raises(SystemExit) as caught:
        run_batches(
            ITEMS,
            _raiser(SystemExit, 2),
            chunk_size=2,
            store=sqlite_store,
            run_id="r",
            max_concurrency=concurrency,
            progress=False,
        )
    assert str(caught.value) == "stop here"
    info = sqlite_store.get_run("r")
    assert (info.status, info.failed, info.active_pid) == ("interrupted", 0, None)


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("is_async", [True, False])
def test_async_drivers_stop_the_same_way(concurrency: int, is_async: bool) -> None:
    store = MemoryStateStore()
    plain = _raiser(KeyboardInterrupt, 3)

    async def async_work(batch: Batch[int]) -> list[int]:
        await asyncio.sleep(0)
        return plain(batch)

    with pytest.raises(RunInterrupted):
        asyncio.run(
            arun_batches(
                ITEMS,
                async_work if is_async else plain,
                chunk_size=2,
                store=store,
                run_id="a",
                max_concurrency=concurrency,
                progress=False,
            )
        )
    info = store.get_run("a")
    assert (info.status, info.failed) == ("interrupted", 0)
    assert 0 < info.succeeded < len(ITEMS)


def test_in_flight_batches_finish_and_commit_when_one_batch_interrupts(
    sqlite_store: SQLiteStateStore,
) -> None:
    release = threading.Event()
    started: list[int] = []

    def work(batch: Batch[int]) -> list[int]:
        started.append(batch.number)
        if batch.number == 1:
            release.wait(5)  # in flight while batch 2 interrupts
        if batch.number == 2:
            try:
                raise KeyboardInterrupt
            finally:
                release.set()
        return list(batch.items)

    with pytest.raises(RunInterrupted):
        run_batches(
            ITEMS,
            work,
            chunk_size=2,
            store=sqlite_store,
            run_id="r",
            max_concurrency=2,
            progress=False,
        )
    assert sorted(started) == [1, 2]  # nothing new started after the interrupt
    records = list(sqlite_store.iter_items("r"))
    assert [r.key for r in records] == [r.key for r in records if r.batch_number == 1]
    assert len(records) == 2
    assert all(r.status == "done" for r in records)


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("hook_name", ["on_batch_start", "on_batch_complete", "on_batch_error"])
def test_hooks_raising_interrupts_stop_gracefully_and_other_errors_are_harmless(
    concurrency: int, hook_name: str
) -> None:
    def interrupting(*_: Any) -> None:
        raise KeyboardInterrupt

    def failing(*_: Any) -> None:
        raise ValueError("a bug in a hook")

    def work(batch: Batch[int]) -> list[int]:
        if batch.number == 2:
            raise ValueError("bad batch")
        return list(batch.items)

    store = MemoryStateStore()
    harmless = run_batches(
        ITEMS,
        work,
        chunk_size=2,
        store=store,
        run_id="ok",
        max_concurrency=concurrency,
        retry=RetryPolicy.none(),
        progress=False,
        **{hook_name: failing},
    )
    assert len(harmless.failures) == 1  # only the bad batch; the hook's bug changes nothing
    with pytest.raises(RunInterrupted) as caught:
        run_batches(
            ITEMS,
            work,
            chunk_size=2,
            store=store,
            run_id="stop",
            max_concurrency=concurrency,
            retry=RetryPolicy.none(),
            progress=False,
            **{hook_name: interrupting},
        )
    assert "KeyboardInterrupt" in str(caught.value)
    info = store.get_run("stop")
    assert info.status == "interrupted"
    assert info.succeeded + info.failed < len(ITEMS)


def test_items_not_run_stay_pending_and_the_rest_commit(sqlite_store: SQLiteStateStore) -> None:
    def work(batch: Batch[int]) -> list[Any]:
        return [
            ItemNotRun() if item == 3 else ItemFailed("boom") if item == 2 else item
            for item in batch.items
        ]

    with pytest.raises(RunInterrupted):
        run_batches(range(6), work, chunk_size=6, store=sqlite_store, run_id="r", progress=False)
    records = {r.key: r.status for r in sqlite_store.iter_items("r")}
    assert sorted(records.values()) == ["done"] * 4 + ["failed"]
    assert len(records) == 5  # the item not run is neither done nor failed
    done = run_batches(
        range(6),
        lambda b: list(b.items),
        chunk_size=6,
        store=sqlite_store,
        run_id="r",
        progress=False,
    )
    assert done.results == [0, 1, 2, 3, 4, 5]
    assert done.stats.resumed == 4
