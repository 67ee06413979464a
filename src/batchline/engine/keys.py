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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from batchline.errors import ConfigurationError, DuplicateKeyError
from batchline.state.keys import Key

# `Key` lives in state/ (the stores need it and must not import the engine); it is
# re-exported here so `from batchline.engine.keys import Key` keeps working.
__all__ = [
    "Key",
    "KeyIndex",
    "KeySpec",
    "KeysOf",
    "canonical_key",
    "content_keys",
    "key_function",
]

KeySpec = str | Callable[[Any], Key] | None
KeysOf = Callable[[Sequence[Any], int], list[Key]]

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)
# The C encoder `_CANONICAL.encode` builds anew on every call, built once (the same
# arguments, so the same text: keys never change between versions); None where the
# interpreter has no C accelerator, and `encode` is used.
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
# (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
# allow_nan), as JSONEncoder.iterencode passes them
_ENCODER_ARGS = (None, _CANONICAL.default, json.encoder.encode_basestring, None, ":", ",")
_ENCODE_CHUNKS: Callable[[Any, int], Sequence[str]] | None = (
    _C_MAKE_ENCODER(*_ENCODER_ARGS, True, False, True) if _C_MAKE_ENCODER is not None else None
)


def canonical_key(item: Any) -> str:
    """Return the default key of ``item``: a hash of its canonical JSON.

    Raises:
        ConfigurationError: the item is not JSON-serialisable, so it has no canonical form.
    """
    try:
        text = "".join(_ENCODE_CHUNKS(item, 0)) if _ENCODE_CHUNKS else _CANONICAL.encode(item)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"item {_short(item)} has no canonical JSON form ({exc}); items keyed by hash "
            "must be JSON-serialisable. Pass `key=` a field name or a callable."
        ) from exc
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def content_keys(items: Iterable[Any]) -> list[str]:
    """Keys that follow the items, not their positions: a hash of each item's canonical
    JSON, and for the n-th repeat of an identical item the same hash with ``~n`` appended.

    A front door keys a list it received from an earlier stage with these, so that a
    resume after that list changed runs the new items, drops the removed ones and
    repeats nothing.

    Raises:
        ConfigurationError: an item is not JSON-serialisable (it has no canonical form).
    """
    hashes = _digests(list(items))
    if len(set(hashes)) == len(hashes):
        return hashes  # no repeats (the common case)
    seen: dict[str, int] = {}
    keys: list[str] = []
    for key in hashes:
        count = seen.get(key, 0)
        seen[key] = count + 1
        keys.append(key if count == 0 else f"{key}~{count}")
    return keys


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
    return cast(list[Key], _digests(items))


def _digests(items: Sequence[Any]) -> list[str]:
    """``canonical_key`` of each item, inlined (a million items spend most of their key
    time here); an item without a canonical form raises through ``canonical_key``."""
    encode, digest = _ENCODE_CHUNKS, hashlib.blake2b
    if encode is None:
        return [canonical_key(item) for item in items]
    try:
        return [digest("".join(encode(item, 0)).encode(), digest_size=16).hexdigest()
                for item in items]  # fmt: skip
    except (TypeError, ValueError):
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


_KEY_TYPES = frozenset({str, int})


def _check_key_types(keys: list[Key], start: int, source: str) -> None:
    if _KEY_TYPES.issuperset(map(type, keys)):
        return
    for offset, value in enumerate(keys):
        kind = type(value)
        if kind is not str and kind is not int:
            raise ConfigurationError(
                f"{source} gave {_short(value)} ({kind.__name__}) for the item at position "
                f"{start + offset}; a key must be a str or an int."
            )


_EXACT_LIMIT = 1 << 17
_EMPTY = 0
_ZERO_STANDIN = 0x5BD1E9955BD1E995  # the hash 0 marks an empty slot, so 0 is stored as this


class KeyIndex:
    """Remembers every key of a run and finds duplicates, in bounded memory.

    Up to 131,072 keys are held exactly in a dict (key -> position). Past that, keys
    move into an open-addressing table of 64-bit hashes and 32-bit positions kept in
    flat arrays (12 bytes a slot, at most half full), so a million keys cost
    about 25 MB instead of about 130 MB. Two different keys with the same 64-bit hash
    (odds about 1 in 30 million for a million keys) would be reported as duplicates,
    never missed.
    """

    __slots__ = ("_calls", "_count", "_exact", "_hashes", "_mask", "_positions")

    def __init__(self) -> None:
        # Exact phase: a set of keys, plus each add_batch call's keys by start position,
        # so a first position can be found (by a scan) when a duplicate is reported.
        self._exact: set[Key] | None = set()
        self._calls: dict[int, list[Key]] = {}
        self._hashes = array("q")
        self._positions = array("i")
        self._mask = 0
        self._count = 0

    def __len__(self) -> int:
        return len(self._exact) if self._exact is not None else self._count

    def add_batch(self, keys: list[Key], start: int, *, skip: bool) -> list[int] | None:
        """Record ``keys`` (positions ``start``, ``start + 1``, ...).

        Returns None when every key is new. Otherwise, with ``skip``, returns the
        offsets (within ``keys``) of the keys to keep; without it raises
        ``DuplicateKeyError`` naming the key and both positions.
        """
        exact = self._exact
        if exact is None:
            return self._add_hashed(keys, start, skip)
        self._calls[start] = keys
        if exact.isdisjoint(keys) and len(set(keys)) == len(keys):
            exact.update(keys)
            if len(exact) >= _EXACT_LIMIT:
                self._spill()
            return None
        keep: list[int] = []
        for offset, key in enumerate(keys):
            if key not in exact:
                exact.add(key)
                keep.append(offset)
            elif not skip:
                raise DuplicateKeyError(key, self._first_position(key), start + offset)
        if len(exact) >= _EXACT_LIMIT:
            self._spill()
        return keep

    def _first_position(self, key: Key) -> int:
        for start, keys in self._calls.items():
            if key in keys:
                return start + keys.index(key)
        raise AssertionError("a recorded key has no position")  # pragma: no cover

    def _spill(self) -> None:
        self._exact = None
        total = sum(len(keys) for keys in self._calls.values())
        self._resize(4 * total)
        for start, keys in self._calls.items():
            for offset, key in enumerate(keys):
                self._insert(_hash64(key), start + offset)  # a repeat keeps the first
        self._calls = {}

    def _add_hashed(self, keys: list[Key], start: int, skip: bool) -> list[int] | None:
        # The probe loop of `_insert`, inlined: a million keys spend most of their
        # bookkeeping here, and a method call per key costs as much as the probe.
        self._reserve(self._count + len(keys), start + len(keys))
        hashes, positions, mask = self._hashes, self._positions, self._mask
        keep: list[int] = []
        clean = True
        added = 0
        for offset, key in enumerate(keys):
            code = key if type(key) is int and -_INT64 <= key <= _INT64 else hash(key)
            if code == _EMPTY:
                code = _ZERO_STANDIN
            slot = code & mask
            while True:
                found = hashes[slot]
                if found == _EMPTY:
                    hashes[slot] = code
                    positions[slot] = start + offset
                    added += 1
                    keep.append(offset)
                    break
                if found == code:
                    if not skip:
                        self._count += added
                        raise DuplicateKeyError(key, int(positions[slot]), start + offset)
                    clean = False
                    break
                slot = (slot + 1) & mask
        self._count += added
        return None if clean else keep

    def _reserve(self, count: int, last_position: int) -> None:
        """Room for ``count`` codes (at most half full), and positions up to
        ``last_position`` (past 2**31 items the positions widen to 64 bits)."""
        if last_position > 0x7FFFFFFF and self._positions.typecode == "i":
            self._positions = array("q", self._positions)
        if 2 * count > len(self._hashes):
            self._resize(max(2 * len(self._hashes), 2 * count))

    def _insert(self, code: int, position: int) -> int | None:
        """Add ``code`` at ``position``; return the earlier position if it was there."""
        self._reserve(self._count + 1, position)
        hashes, mask = self._hashes, self._mask
        slot = code & mask
        while True:
            found = hashes[slot]
            if found == _EMPTY:
                hashes[slot] = code
                self._positions[slot] = position
                self._count += 1
                return None
            if found == code:
                return int(self._positions[slot])
            slot = (slot + 1) & mask

    def _resize(self, size: int) -> None:
        capacity = 1 << max(4, (size - 1).bit_length())
        old_hashes, old_positions = self._hashes, self._positions
        hashes = self._hashes = array("q", bytes(8 * capacity))
        positions = self._positions = array(
            old_positions.typecode, bytes(old_positions.itemsize * capacity)
        )
        mask = self._mask = capacity - 1
        for code, position in zip(old_hashes, old_positions, strict=True):
            if code != _EMPTY:  # the codes are distinct: find a free slot, nothing else
                slot = code & mask
                while hashes[slot] != _EMPTY:
                    slot = (slot + 1) & mask
                hashes[slot] = code
                positions[slot] = position


_INT64 = (1 << 63) - 1


def _hash64(key: Key) -> int:
    code = key if type(key) is int and -_INT64 <= key <= _INT64 else hash(key)
    return code if code != _EMPTY else _ZERO_STANDIN
