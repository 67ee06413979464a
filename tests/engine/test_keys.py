"""Keys: fields, callables, hashes, duplicates, and the bounded-memory key index."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline import ConfigurationError, DuplicateKeyError, run_batches, stream_batches
from batchline.engine import keys as keys_module
from batchline.engine.keys import KeyIndex, canonical_key


def echo_keys(batch: Any) -> list[Any]:
    return list(batch.keys)


def test_field_callable_and_hash_keys() -> None:
    items = [{"id": "a", "v": 1}, {"id": "b", "v": 2}]
    assert run_batches(items, echo_keys, key="id").results == ["a", "b"]
    assert run_batches(items, echo_keys, key=lambda i: i["v"]).results == [1, 2]
    hashed = run_batches(items, echo_keys).results
    assert hashed == [canonical_key(items[0]), canonical_key(items[1])]
    assert canonical_key({"b": 1, "a": 2}) == canonical_key({"a": 2, "b": 1})
    assert len(hashed[0]) == 32


def test_duplicate_key_names_key_and_both_positions() -> None:
    items = [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 2}]
    with pytest.raises(DuplicateKeyError) as caught:
        run_batches(items, echo_keys, key="id", chunk_size=2)
    error = caught.value
    assert (error.key, error.first, error.second) == (2, 1, 3)
    assert "2" in str(error)
    assert "positions 1 and 3" in str(error)
    assert 'duplicates="skip"' in str(error)
    assert isinstance(error, ValueError)


def test_duplicate_inside_one_batch() -> None:
    with pytest.raises(DuplicateKeyError, match="positions 0 and 1"):
        run_batches(["x", "x"], echo_keys, chunk_size=10)


def test_skip_duplicates_keeps_the_first() -> None:
    items = [{"id": 1, "v": "first"}, {"id": 2, "v": "b"}, {"id": 1, "v": "second"}]
    seen: list[Any] = []

    def fn(batch: Any) -> list[str]:
        seen.extend(batch.items)
        return [item["v"] for item in batch.items]

    result = run_batches(items, fn, key="id", duplicates="skip", chunk_size=1)
    assert seen == items[:2]
    assert result.results == ["first", "b", "first"]  # aligned with the input
    assert result.stats.skipped == 1
    assert result.stats.total == 2


def test_missing_key_field_is_a_clear_value_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        run_batches([{"id": 1}, {"name": "x"}], echo_keys, key="id")
    message = str(caught.value)
    assert "'id'" in message
    assert "position 1" in message
    assert "name" in message  # lists the fields that are there
    assert isinstance(caught.value, ValueError)


def test_key_field_on_non_mapping_items() -> None:
    with pytest.raises(ConfigurationError, match="mapping items"):
        run_batches([1, 2], echo_keys, key="id")


def test_key_of_wrong_type() -> None:
    with pytest.raises(ConfigurationError, match=r"a key must be a str or an int"):
        run_batches([{"id": 1.5}], echo_keys, key="id")
    with pytest.raises(ConfigurationError, match="key function"):
        run_batches([1], echo_keys, key=lambda item: None)  # type: ignore[arg-type,return-value]


def test_bad_key_spec() -> None:
    with pytest.raises(ConfigurationError, match="`key`"):
        run_batches([1], echo_keys, key=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="empty string"):
        run_batches([1], echo_keys, key="")


def test_unhashable_item_without_key() -> None:
    with pytest.raises(ConfigurationError, match="canonical JSON"):
        run_batches([object()], echo_keys)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=-50, max_value=50), max_size=300))
def test_key_index_finds_first_duplicate_after_spilling(values: list[int]) -> None:
    original = keys_module._EXACT_LIMIT
    keys_module._EXACT_LIMIT = 8  # force the compact segments
    try:
        index = KeyIndex()
        seen: dict[int, int] = {}
        expected: tuple[int, int, int] | None = None
        for position, value in enumerate(values):
            if value in seen:
                expected = (value, seen[value], position)
                break
            seen[value] = position
        got: tuple[int, int, int] | None = None
        try:
            for start in range(0, len(values), 5):
                index.add_batch(list(values[start : start + 5]), start, skip=False)
        except DuplicateKeyError as error:
            got = (int(error.key), error.first, error.second)
        assert got == expected
    finally:
        keys_module._EXACT_LIMIT = original


def test_key_index_skip_after_spilling() -> None:
    original = keys_module._EXACT_LIMIT
    keys_module._EXACT_LIMIT = 4
    try:
        index = KeyIndex()
        assert index.add_batch(list(range(10)), 0, skip=True) is None
        assert index.add_batch([3, 10, 11, 10], 10, skip=True) == [1, 2]
        assert len(index) == 12
    finally:
        keys_module._EXACT_LIMIT = original


def test_stream_detects_duplicates_late_in_a_generator() -> None:
    def source() -> Any:
        yield from range(50)
        yield 7

    outcomes: list[Any] = []
    stream = stream_batches(source(), lambda b: list(b.items), chunk_size=10)
    with pytest.raises(DuplicateKeyError, match="positions 7 and 50"):
        outcomes.extend(stream)
    assert len(outcomes) >= 4  # the batches before the duplicate were delivered


def test_hash_keys_are_stable_across_versions() -> None:
    """A state file written by an earlier version resumes: the default key of an item is
    the same digest it always was."""
    assert canonical_key({"id": 1, "name": "Acme"}) == "86a275e06acc17dbaf5a23197e9c2455"
    assert canonical_key("x") == "ee8b79dab5015bd04784f08f5b0bb660"
    assert canonical_key([1, {"b": 2.5, "a": "é"}]) == "68edeb748ce377ca3244ba0fda836b95"
    assert canonical_key(None) == "941dffce4e4308ceb33e87326003257d"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_hash_key_is_the_digest_of_the_canonical_json(item: Any) -> None:
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    assert canonical_key(item) == digest
