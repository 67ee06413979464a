"""The asyncio twins: async batch functions, concurrency as tasks, the same contracts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from batchline import (
    Batch,
    BatchRunError,
    ConfigurationError,
    RetryPolicy,
    SQLiteStateStore,
    arun_batches,
    astream_batches,
)


def test_async_functions_run_concurrently_as_tasks() -> None:
    active = 0
    peak = 0

    async def fn(batch: Batch[int]) -> list[int]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return [i * i for i in batch.items]

    start = time.perf_counter()
    result = asyncio.run(arun_batches(range(64), fn, chunk_size=2, max_concurrency=16))
    elapsed = time.perf_counter() - start
    assert result.ok
    assert result.results == [i * i for i in range(64)]
    assert peak == 16
    assert elapsed < 32 * 0.02  # 32 batches did not run one after another


def test_sync_functions_run_on_threads() -> None:
    def fn(batch: Batch[int]) -> list[int]:
        time.sleep(0.01)
        return list(batch.items)

    result = asyncio.run(arun_batches(range(20), fn, chunk_size=2, max_concurrency=5))
    assert result.results == list(range(20))


def test_astream_yields_in_order_with_retries() -> None:
    calls: dict[int, int] = {}

    async def flaky(batch: Batch[int]) -> list[int]:
        calls[batch.number] = calls.get(batch.number, 0) + 1
        await asyncio.sleep(0.001 * (5 - batch.number % 5))
        if calls[batch.number] == 1 and batch.number % 3 == 0:
            raise TimeoutError("flaky")
        return list(batch.items)

    async def collect() -> list[Any]:
        return [
            o
            async for o in astream_batches(
                range(30),
                flaky,
                chunk_size=3,
                max_concurrency=4,
                retry=RetryPolicy(max_attempts=2, backoff=0.001),
            )
        ]

    outcomes = asyncio.run(collect())
    assert [o.batch.number for o in outcomes] == list(range(1, 11))
    assert [r for o in outcomes for r in o.results] == list(range(30))
    assert outcomes[2].attempts == 2


def test_async_stop_raises_with_partial_result() -> None:
    async def fn(batch: Batch[int]) -> list[int]:
        if batch.number == 2:
            raise RuntimeError("down")
        return list(batch.items)

    with pytest.raises(BatchRunError) as caught:
        asyncio.run(
            arun_batches(
                range(10), fn, chunk_size=2, on_error="stop", retry=RetryPolicy(max_attempts=1)
            )
        )
    assert caught.value.result is not None
    assert caught.value.result.results[:2] == [0, 1]


def test_async_resume_with_sqlite(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "a.db")
    ran: list[int] = []

    async def fn(batch: Batch[int]) -> list[int]:
        ran.extend(batch.items)
        if batch.number == 2:
            raise RuntimeError("x")
        return list(batch.items)

    asyncio.run(
        arun_batches(
            range(6), fn, chunk_size=2, store=store, run_id="a", retry=RetryPolicy(max_attempts=1)
        )
    )
    ran.clear()

    async def ok(batch: Batch[int]) -> list[int]:
        ran.extend(batch.items)
        return list(batch.items)

    result = asyncio.run(arun_batches(range(6), ok, chunk_size=2, store=store, run_id="a"))
    assert ran == [2, 3]
    assert result.results == list(range(6))
    assert result.stats.resumed == 4


def test_async_bad_arguments_raise_at_call() -> None:
    async def fn(batch: Batch[int]) -> list[int]:
        return []

    with pytest.raises(ConfigurationError, match="chunk_size"):
        astream_batches([1], fn, chunk_size=0)
