"""Resume: committed items never run again; failed ones do unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchline import (
    Batch,
    MemoryStateStore,
    RetryPolicy,
    SQLiteStateStore,
    StateStore,
    run_batches,
    stream_batches,
)
from batchline.state import PostgresStateStore, open_store

NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    """The state-store contract, run against every store."""
    if request.param == "memory":
        return MemoryStateStore()
    if request.param == "postgres":
        return PostgresStateStore(request.getfixturevalue("postgres_dsn"))
    return SQLiteStateStore(tmp_path / "runs.db")


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"c{i}", "n": i} for i in range(n)]


def test_resume_runs_only_missing_and_failed(store: StateStore) -> None:
    seen: list[str] = []

    def flaky(batch: Batch[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(batch.keys)  # type: ignore[arg-type]
        if batch.number in (2, 4):
            raise RuntimeError(f"batch {batch.number} down")
        return [{"double": item["n"] * 2} for item in batch.items]

    first = run_batches(
        items(10), flaky, chunk_size=2, key="id", store=store, run_id="r", retry=NO_RETRY
    )
    assert first.stats.failed == 4
    assert len(seen) == 10
    seen.clear()

    def healthy(batch: Batch[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(batch.keys)  # type: ignore[arg-type]
        return [{"double": item["n"] * 2} for item in batch.items]

    second = run_batches(items(10), healthy, chunk_size=2, key="id", store=store, run_id="r")
    assert seen == ["c2", "c3", "c6", "c7"]
    assert second.ok
    assert second.stats.resumed == 6
    assert second.results == [{"double": i * 2} for i in range(10)]

    seen.clear()
    third = run_batches(items(10), healthy, chunk_size=2, key="id", store=store, run_id="r")
    assert seen == []
    assert third.stats.resumed == 10
    assert third.results == second.results


def test_retry_failed_false_keeps_failures(store: StateStore) -> None:
    def fails_two(batch: Batch[dict[str, Any]]) -> list[int]:
        if batch.number == 2:
            raise RuntimeError("permanent")
        return [item["n"] for item in batch.items]

    run_batches(
        items(6), fails_two, chunk_size=2, key="id", store=store, run_id="r", retry=NO_RETRY
    )
    calls: list[int] = []

    def record(batch: Batch[dict[str, Any]]) -> list[int]:
        calls.append(batch.number)
        return [item["n"] for item in batch.items]

    result = run_batches(
        items(6), record, chunk_size=2, key="id", store=store, run_id="r", retry_failed=False
    )
    assert calls == []
    assert result.results == [0, 1, None, None, 4, 5]
    assert result.failures[0].batch_number == 2
    assert result.failures[0].message == "permanent"
    assert result.failures[0].keys == ("c2", "c3")


def test_resumed_outcomes_are_marked(store: StateStore) -> None:
    run_batches(
        items(4), lambda b: [1] * len(b.items), chunk_size=2, key="id", store=store, run_id="r"
    )
    outcomes = list(
        stream_batches(
            items(5), lambda b: [2] * len(b.items), chunk_size=2, key="id", store=store, run_id="r"
        )
    )
    assert [(o.resumed, o.resumed_items) for o in outcomes] == [(True, 2), (True, 2), (False, 0)]
    assert [r for o in outcomes for r in o.results] == [1, 1, 1, 1, 2]


def test_changed_input_runs_only_new_items(store: StateStore) -> None:
    run_batches(
        items(5),
        lambda b: [i["n"] for i in b.items],
        chunk_size=2,
        key="id",
        store=store,
        run_id="r",
    )
    ran: list[str] = []

    def fn(batch: Batch[dict[str, Any]]) -> list[int]:
        ran.extend(batch.keys)  # type: ignore[arg-type]
        return [-item["n"] for item in batch.items]

    more = [{"id": "new", "n": 99}, *items(5)]
    result = run_batches(more, fn, chunk_size=2, key="id", store=store, run_id="r")
    assert ran == ["new"]
    assert result.results == [-99, 0, 1, 2, 3, 4]


def test_runs_are_listed_and_items_read_back(store: StateStore) -> None:
    def fn(batch: Batch[dict[str, Any]]) -> list[int]:
        if batch.number == 3:
            raise ValueError("bad")
        return [item["n"] for item in batch.items]

    run_batches(items(6), fn, chunk_size=2, key="id", store=store, run_id="one", retry=NO_RETRY)
    run_batches(items(2), fn, chunk_size=2, key="id", store=store, run_id="two")
    runs = {info.run_id: info for info in store.list_runs()}
    assert set(runs) == {"one", "two"}
    assert (runs["one"].status, runs["one"].succeeded, runs["one"].failed) == ("failed", 4, 2)
    assert runs["one"].total_items == 6
    assert runs["one"].active_pid is None
    assert runs["two"].status == "completed"
    assert runs["one"].meta["key"] == "id"
    records = list(store.iter_items("one"))
    assert [r.key for r in records] == [f"c{i}" for i in range(6)]
    assert [r.status for r in records] == ["done"] * 4 + ["failed"] * 2
    assert records[0].result == 0
    assert records[4].error_type == "ValueError"
    assert [r.key for r in store.iter_items("one", "failed")] == ["c4", "c5"]
    assert store.get_run("two").succeeded == 2


def test_unknown_run_is_a_clear_error(store: StateStore) -> None:
    from batchline import StateError

    run_batches([1], lambda b: [1], store=store, run_id="exists")
    with pytest.raises(StateError, match=r"no run 'nope'.*exists"):
        store.get_run("nope")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_failed_then_succeeded_item_is_no_longer_failed(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    location = (
        request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "s.db")
    )
    store = open_store(location)
    run_batches([1, 2], lambda b: 1 / 0, store=store, run_id="r", retry=NO_RETRY)
    run_batches([1, 2], lambda b: list(b.items), store=store, run_id="r")
    info = store.get_run("r")
    assert (info.succeeded, info.failed, info.status) == (2, 0, "completed")
    assert [r.status for r in store.iter_items("r")] == ["done", "done"]
    store.close()
    reopened = open_store(location)
    assert [r.result for r in reopened.iter_items("r")] == [1, 2]


def test_resume_with_hash_keys_and_generator(store: StateStore) -> None:
    data = [{"name": f"n{i}"} for i in range(30)]
    run_batches(
        data[:20], lambda b: [d["name"] for d in b.items], chunk_size=7, store=store, run_id="g"
    )
    ran: list[Any] = []

    def fn(batch: Batch[dict[str, str]]) -> list[str]:
        ran.extend(batch.items)
        return [d["name"] for d in batch.items]

    outcomes = list(stream_batches((d for d in data), fn, chunk_size=7, store=store, run_id="g"))
    assert [r for o in outcomes for r in o.results] == [d["name"] for d in data]
    assert [d["name"] for d in ran] == [f"n{i}" for i in range(20, 30)]
