"""What a batch returned comes back exactly after a resume, or is refused at first commit."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import subprocess
import sys
import uuid
import zoneinfo
from collections import Counter, OrderedDict, namedtuple
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline import Batch, MemoryStateStore, SQLiteStateStore, run_batches
from batchline.state.codec import decode_results, encode_batch

Point = namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


EXACT: list[Any] = [
    {1: "a", 2.5: "b", False: "c", None: "d", "1": "e"},  # every key keeps its type
    {"1": "a", "2": "b"},  # str keys that look like numbers stay str
    {(1, 2): "pair", (3, (4,)): "nested"},
    (1, "two", (3.0, None)),
    [(1, 2), {"k": (3,)}],
    b"\x00bytes\xff",
    dt.datetime(2026, 11, 22, 13, 45, 1, 123456),
    dt.datetime(2026, 11, 22, 13, 45, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 22, 13, 45, tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST")),
    dt.datetime(2026, 3, 29, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    dt.date(2026, 11, 22),
    dt.time(13, 45, 1),
    dt.timedelta(days=2, seconds=5, microseconds=7),
    decimal.Decimal("1.10"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {"$t": "tuple", "v": [1]},  # a user dict that looks like a tag stays a dict
    {"nested": {"deep": [{1: (2,)}]}},
    "plain",
    12,
    -0.5,
    None,
]


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (
            list(map(type, a)) == list(map(type, b))
            and all(_same(a[k], b[k]) for k in a)
            and list(a) == list(b)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold and repr(a) == repr(b)
    return bool(a == b)


def test_codec_round_trips_every_supported_type() -> None:
    text = encode_batch(1, list(range(len(EXACT))), EXACT)
    back = decode_results(text)
    for before, after in zip(EXACT, back, strict=True):
        assert _same(before, after), (before, after)


def test_plain_json_batches_stay_plain_arrays() -> None:
    assert encode_batch(1, [0, 1], [{"a": 1}, [1, "x"]]) == '[{"a":1},[1,"x"]]'


def test_results_come_back_exactly_after_a_resume_in_a_new_process(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SQLiteStateStore(db)
    first = run_batches(
        EXACT,
        lambda b: list(b.items),
        key=repr,
        chunk_size=4,
        store=store,
        run_id="r",
        progress=False,
    )
    assert first.ok
    store.close()
    script = f"""
import pickle, sys
from batchline import SQLiteStateStore, run_batches
items = pickle.loads(sys.stdin.buffer.read())
result = run_batches(items, lambda b: 1 / 0, key=repr, chunk_size=4,
                     store=SQLiteStateStore({str(db)!r}), run_id="r", progress=False)
assert result.stats.resumed == len(items), result.stats
sys.stdout.buffer.write(pickle.dumps(result.results))
"""
    import pickle

    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(EXACT),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    for before, after in zip(EXACT, pickle.loads(done.stdout), strict=True):  # noqa: S301 - our own child
        assert _same(before, after), (before, after)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (Point(1, 2), "Point is a subclass of tuple"),
        (OrderedDict(a=1), "OrderedDict is a subclass of dict"),
        (Counter("ab"), "Counter is a subclass of dict"),
        (Level.LOW, "Level is a subclass of int"),
        (Color.RED, "Color is not JSON"),
        (object(), "object is not JSON"),
        ({1, 2}, "a set is not JSON"),
        ({"k": frozenset({1})}, "at result['k']"),
        ({"k": [1, float("inf")]}, "at result['k'][1]"),
        (dt.time(1, tzinfo=dt.UTC), "time with a tzinfo"),
    ],
)
@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_values_that_would_change_are_refused_at_first_commit(
    tmp_path: Path, value: Any, needle: str, store_kind: str
) -> None:
    store: Any = (
        MemoryStateStore() if store_kind == "memory" else SQLiteStateStore(tmp_path / "x.db")
    )

    def work(batch: Batch[int]) -> list[Any]:
        return [value if item == 3 else item for item in batch.items]

    result = run_batches(
        range(6),
        work,
        key=lambda i: f"item-{i}",
        chunk_size=3,
        store=store,
        run_id="r",
        progress=False,
    )
    (failure,) = result.failures
    assert failure.error_type == "BatchResultError"
    assert failure.batch_number == 2
    assert "'item-3'" in failure.message
    assert needle in failure.message
    assert result.results[:3] == [0, 1, 2]


def test_memory_and_sqlite_give_the_same_results(tmp_path: Path) -> None:
    for store in (MemoryStateStore(), SQLiteStateStore(tmp_path / "m.db")):
        run_batches(
            EXACT,
            lambda b: list(b.items),
            key=repr,
            chunk_size=5,
            store=store,
            run_id="r",
            progress=False,
        )
        again = run_batches(
            EXACT, lambda b: 1 / 0, key=repr, chunk_size=5, store=store, run_id="r", progress=False
        )
        assert again.stats.resumed == len(EXACT)
        assert all(map(_same, EXACT, again.results))


def test_pipeline_scope_results_keep_their_types_across_a_resume(tmp_path: Path) -> None:
    from batchline.pipeline import Agent, Pipeline

    calls: list[int] = []

    class Discover(Agent):
        def run(self, context: Any) -> dict[str, Any]:
            return {"ids": list(range(6))}

    class Score(Agent):
        def run(self, context: Any) -> dict[str, Any]:
            calls.append(len(context["ids"]))
            return {
                "ids": [(i, str(i)) for i in context["ids"]],
                "scores": {i: dt.date(2026, 1, i + 1) for i in context["ids"]},
            }

    Scoped = Score.triggers_batching(chunk_size=2, over="ids")
    store = SQLiteStateStore(tmp_path / "p.db")
    first = Pipeline(Discover >> Scoped, store=store, run_id="p").run()
    second = Pipeline(Discover >> Scoped, store=store, run_id="p").run()
    assert calls == [2, 2, 2]  # the second run loaded every batch
    assert second.stats.resumed == 6
    for result in (first, second):
        assert result.context["ids"] == [(i, str(i)) for i in range(6)]
        assert result.context["scores"] == {i: dt.date(2026, 1, i + 1) for i in range(6)}


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_keys = st.one_of(_scalars, st.tuples(st.integers(), st.text(max_size=3)))
_values = st.recursive(
    st.one_of(_scalars, st.binary(max_size=5), st.dates(), st.decimals(allow_nan=False)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=12,
)


@given(st.lists(_values, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_any_supported_value_round_trips_with_its_types(results: list[Any]) -> None:
    back = decode_results(encode_batch(1, list(range(len(results))), results))
    assert len(back) == len(results)
    for before, after in zip(results, back, strict=True):
        assert _same(before, after), (before, after)
