"""The dashboard's read model: agrees with the store, pages in input order, never writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batchline import SQLiteStateStore, run_batches
from batchline.errors import StateError
from batchline.ui import StateSource

from .builders import engine_run, failing_batches


def test_counts_match_the_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine_run(path)
    failing_batches(path)
    source = StateSource(path)
    with SQLiteStateStore(path) as store:
        expected = {info.run_id: (info.succeeded, info.failed) for info in store.list_runs()}
    assert {run.run_id: (run.succeeded, run.failed) for run in source.runs()} == expected
    assert expected["enrich-nov"] == (233, 67)


def test_resumed_failures_are_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    calls = {"n": 0}

    def flaky(batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if batch.number == 2 and calls["n"] < 5:
            raise ValueError("not yet")
        return list(batch.items)

    for _ in range(2):  # the second run resumes and retries the failed batch
        with SQLiteStateStore(path) as store:
            run_batches(list(range(30)), flaky, chunk_size=10, store=store, run_id="r")
    run = StateSource(path).run("r")
    assert (run.succeeded, run.failed, run.pending) == (30, 0, 0)


def test_pages_follow_input_order_and_cover_every_item(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine_run(path)
    source = StateSource(path)
    with SQLiteStateStore(path) as store:
        expected = [(r.key, r.status, r.result) for r in store.iter_items("enrich-nov")]
    seen = []
    first = source.items("enrich-nov", page=1, per_page=17)
    for page in range(1, first.pages + 1):
        listing = source.items("enrich-nov", page=page, per_page=17)
        assert len(listing.rows) <= 17
        seen += [(row.key, row.status, row.result) for row in listing.rows]
    assert seen == expected
    done = source.items("enrich-nov", status="done", per_page=1000)
    assert all(row.status == "done" for row in done.rows)
    assert done.total == sum(1 for _, status, _ in expected if status == "done")


def test_failures_filter_by_error_type(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine_run(path)
    source = StateSource(path)
    kinds = dict(source.error_types(["enrich-nov"]))
    assert kinds == {"ValueError": 43, "KeyError": 24}
    page = source.failures(["enrich-nov"], error_type="KeyError", per_page=100)
    assert page.total == 24
    assert {row.error_type for row in page.rows} == {"KeyError"}
    assert all(row.key % 11 == 0 for row in page.rows)


def test_key_search_keeps_key_types(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStateStore(path) as store:
        run_batches(["a", "b"], lambda b: list(b.items), key=lambda s: s, store=store, run_id="s")
        run_batches(
            [{"id": 12}, {"id": 120}, {"id": 7}],
            lambda b: list(b.items),
            key="id",
            store=store,
            run_id="i",
        )
    source = StateSource(path)
    assert source.find_keys("i", "12") == [12]
    assert source.find_keys("s", "a") == ["a"]
    assert source.item("i", 12) is not None
    assert source.item("i", "12") is None  # "12" and 12 are different keys
    item = source.item("i", 120)
    assert item is not None
    assert item.result == {"id": 120}


def test_never_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine_run(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    source = StateSource(path)
    source.runs()
    source.items("enrich-nov", page=3)
    source.series("enrich-nov")
    list(source.iter_export("enrich-nov"))
    source.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file at"):
        StateSource(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"junk\.db"):
        StateSource(junk)
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (t TEXT)")
    with pytest.raises(StateError, match="not a batchline state file"):
        StateSource(other)
