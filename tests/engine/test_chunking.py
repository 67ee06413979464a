"""Chunking: batch boundaries, the plan's purity, and lazily read inputs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline import Batch, run_batches, stream_batches


def double(batch: Batch[int]) -> list[int]:
    return [2 * item for item in batch.items]


def test_empty_input_runs_nothing_and_succeeds() -> None:
    calls: list[Any] = []
    result = run_batches([], lambda b: calls.append(b) or [], chunk_size=10)
    assert calls == []
    assert result.ok
    assert result.results == []
    assert result.stats.total == 0
    assert result.stats.batches == 0
    assert list(stream_batches([], double)) == []


@pytest.mark.parametrize(
    ("count", "chunk", "sizes"),
    [
        (1, 10, [1]),
        (10, 10, [10]),
        (9, 10, [9]),
        (11, 10, [10, 1]),
        (21, 10, [10, 10, 1]),
    ],
)
def test_batch_sizes_at_the_boundaries(count: int, chunk: int, sizes: list[int]) -> None:
    outcomes = list(stream_batches(range(count), double, chunk_size=chunk))
    assert [len(o.batch.items) for o in outcomes] == sizes
    assert [o.batch.number for o in outcomes] == list(range(1, len(sizes) + 1))
    assert [o.batch.index for o in outcomes] == list(range(len(sizes)))
    assert all(o.batch.total == len(sizes) for o in outcomes)
    assert [o.batch.is_last for o in outcomes] == [False] * (len(sizes) - 1) + [True]
    assert [r for o in outcomes for r in o.results] == [2 * i for i in range(count)]


def test_hundred_thousand_items() -> None:
    result = run_batches(range(100_000), double, chunk_size=1000)
    assert result.ok
    assert result.stats.batches == 100
    assert result.results == [2 * i for i in range(100_000)]


def test_generator_input_is_read_lazily_and_knows_its_last_batch() -> None:
    pulled: list[int] = []

    def source() -> Any:
        for i in range(25):
            pulled.append(i)
            yield i

    stream = stream_batches(source(), double, chunk_size=10)
    first = next(stream)
    assert first.batch.total is None  # unknown until the generator ends
    assert len(pulled) <= 20  # one batch of look-ahead, not the whole input
    rest = list(stream)
    assert rest[-1].batch.is_last
    assert rest[-1].batch.total == 3


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(), unique=True, max_size=200),
    chunk=st.integers(min_value=1, max_value=50),
)
def test_plan_is_a_pure_function_of_keys_and_chunk_size(keys: list[int], chunk: int) -> None:
    items = [{"id": k} for k in keys]

    def plan() -> list[tuple[int, list[int]]]:
        return [
            (o.batch.number, list(o.batch.keys))
            for o in stream_batches(items, lambda b: b.keys, chunk_size=chunk, key="id")
        ]

    first = plan()
    assert first == plan()
    flat = [k for _, ks in first for k in ks]
    assert flat == keys
    assert all(len(ks) == chunk for _, ks in first[:-1])
