"""Item keys: how an item is named, and how duplicates are found in bounded memory.

A key is a ``str`` or an ``int``: a field of the item (``key="id"``), what a callable
returns, or, by default, the BLAKE2b-128 hex digest of the item's canonical JSON
(sorted keys, compact separators, UTF-8). Keys are compared exactly, so ``1`` and
``"1"`` are different keys.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchline.errors import ConfigurationError, DuplicateKeyError

Key = str | int
KeySpec = str | Callable[[Any], Key] | None
KeysOf = Callable[[Sequence[Any], int], list[Key]]

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def canonical_key(item: Any) -> str:
    """Return the default key of ``item``: a hash of its canonical JSON.

    Raises:
        ConfigurationError: the item is not JSON-serialisable, so it has no canonical form.
    """
    try:
        text = _CANONICAL.encode(item)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"item {_short(item)} has no canonical JSON form ({exc}); items keyed by hash "
            "must be JSON-serialisable. Pass `key=` a field name or a callable."
        ) from exc
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_function(spec: KeySpec) -> KeysOf:
    """Build ``keys_of(items, start)`` for a key spec; ``start`` is the first item's position.

    The returned function raises ``ConfigurationError`` naming the item position when
    a key cannot be found or has the wrong type.
    """
    if spec is None:
        return _hash_keys
    if isinstance(spec, str):
        if not spec:
            raise ConfigurationError(
                "`key` is an empty string; expected a field name, a callable item -> str, "
                "or None to key items by a hash of their JSON."
            )
        return _field_keys(spec)
    if callable(spec):
        return _callable_keys(spec)
    raise ConfigurationError(
        f"`key` is {_short(spec)} ({type(spec).__name__}); expected a field name (str), "
        "a callable item -> str, or None to key items by a hash of their JSON."
    )


def _hash_keys(items: Sequence[Any], start: int) -> list[Key]:
    del start
    return [canonical_key(item) for item in items]


def _field_keys(field: str) -> KeysOf:
    def keys_of(items: Sequence[Any], start: int) -> list[Key]:
        try:
            keys: list[Key] = [item[field] for item in items]
        except (KeyError, TypeError, IndexError):
            _raise_field_problem(items, start, field)
        _check_key_types(keys, start, f"field {field!r}")
        return keys

    return keys_of


def _raise_field_problem(items: Sequence[Any], start: int, field: str) -> None:
    for offset, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigurationError(
                f"`key={field!r}` needs mapping items, but the item at position "
                f"{start + offset} is {type(item).__name__} {_short(item)}. Pass `key=` a "
                "callable, or key=None to key items by a hash of their JSON."
            )
        if field not in item:
            fields = ", ".join(sorted(map(str, item))) or "none"
            raise ConfigurationError(
                f"key field {field!r} is missing from the item at position {start + offset} "
                f"(its fields: {fields}). Add the field to every item or choose another `key=`."
            )
    raise AssertionError("unreachable: every item had the key field")  # pragma: no cover


def _callable_keys(func: Callable[[Any], Key]) -> KeysOf:
    name = getattr(func, "__name__", type(func).__name__)

    def keys_of(items: Sequence[Any], start: int) -> list[Key]:
        keys = [func(item) for item in items]
        _check_key_types(keys, start, f"key function {name}")
        return keys

    return keys_of


def _check_key_types(keys: list[Key], start: int, source: str) -> None:
    for offset, value in enumerate(keys):
        kind = type(value)
        if kind is not str and kind is not int:
            raise ConfigurationError(
                f"{source} gave {_short(value)} ({kind.__name__}) for the item at position "
                f"{start + offset}; a key must be a str or an int."
            )


_EXACT_LIMIT = 1 << 17


class KeyIndex:
    """Remembers every key of a run and finds duplicates, in bounded memory.

    Up to 131,072 keys are held exactly in a dict (key -> position). Past that, keys
    move into sorted 64-bit hash segments (16 bytes per key, merged like an LSM tree),
    so 1,000,000 keys cost about 16 MB instead of about 100 MB. A 64-bit hash can
    collide (odds about 1 in 30 million for a million keys); such a collision would be
    reported as a duplicate, never missed.
    """

    __slots__ = ("_exact", "_segments")

    def __init__(self) -> None:
        self._exact: dict[Key, int] = {}
        self._segments: list[tuple[array[int], array[int]]] = []

    def __len__(self) -> int:
        return len(self._exact) + sum(len(hashes) for hashes, _ in self._segments)

    def add_batch(self, keys: list[Key], start: int, *, skip: bool) -> list[int] | None:
        """Record ``keys`` (positions ``start``, ``start + 1``, ...).

        Returns None when every key is new. Otherwise, with ``skip``, returns the
        offsets (within ``keys``) of the keys to keep; without it raises
        ``DuplicateKeyError``. Nothing is recorded for a batch that raises.
        """
        exact = self._exact
        fresh = exact.keys().isdisjoint(keys) and len(set(keys)) == len(keys)
        if fresh and self._segments:
            fresh = not any(self._segment_position(key) is not None for key in keys)
        if fresh:
            exact.update(zip(keys, range(start, start + len(keys)), strict=True))
            self._maybe_spill()
            return None
        keep: list[int] = []
        local: dict[Key, int] = {}
        for offset, key in enumerate(keys):
            first = exact.get(key)
            if first is None:
                first = local.get(key)
            if first is None and self._segments:
                first = self._segment_position(key)
            if first is None:
                local[key] = start + offset
                keep.append(offset)
            elif not skip:
                raise DuplicateKeyError(key, first, start + offset)
        exact.update(local)
        self._maybe_spill()
        return keep

    def _segment_position(self, key: Key) -> int | None:
        code = _hash64(key)
        for hashes, positions in self._segments:
            at = bisect_left(hashes, code)
            if at < len(hashes) and hashes[at] == code:
                return positions[at]
        return None

    def _maybe_spill(self) -> None:
        if len(self._exact) < _EXACT_LIMIT:
            return
        pairs = sorted((_hash64(key), position) for key, position in self._exact.items())
        self._exact = {}
        self._segments.append(_segment(pairs))
        # Merge equal-sized neighbours so lookups touch O(log n) segments.
        while len(self._segments) > 1 and len(self._segments[-2][0]) <= len(self._segments[-1][0]):
            newer = self._segments.pop()
            older = self._segments.pop()
            merged = sorted([*zip(older[0], older[1], strict=True), *zip(*newer, strict=True)])
            self._segments.append(_segment(merged))


def _segment(pairs: list[tuple[int, int]]) -> tuple[array[int], array[int]]:
    return array("q", (h for h, _ in pairs)), array("q", (p for _, p in pairs))


_INT64 = (1 << 63) - 1


def _hash64(key: Key) -> int:
    if type(key) is int and -_INT64 <= key <= _INT64:
        return key
    return hash(key)
