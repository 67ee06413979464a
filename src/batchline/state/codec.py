"""Results are JSON: checked for every store, encoded for the stores that persist them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from batchline.errors import BatchResultError
from batchline.state.keys import Key

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SCALARS = frozenset({str, int, float, bool, type(None)})
encode = _ENCODER.encode
decode = json.loads


def _not_json(batch_number: int, key: Key, value: Any, error: Exception) -> BatchResultError:
    return BatchResultError(
        f"batch {batch_number}: the result for item {key!r} is not JSON-serialisable "
        f"({type(value).__name__}: {error}). Return plain data (dict, list, str, int, "
        "float, bool, None), e.g. convert objects with .model_dump() or dataclasses.asdict()."
    )


def check_json(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> None:
    """Raise ``BatchResultError`` naming the first result that is not JSON-serialisable."""
    kinds = set(map(type, results))
    if kinds <= _SCALARS:
        if float in kinds:  # NaN and infinity are not JSON
            encode_each(batch_number, keys, results)
        return
    try:
        encode(results if isinstance(results, list) else list(results))
    except (TypeError, ValueError, RecursionError):
        encode_each(batch_number, keys, results)


def unstorable(
    batch_number: int, keys: Sequence[Key], results: Sequence[Any]
) -> dict[int, BatchResultError]:
    """The results a JSON store cannot keep, by index, each with the error naming it.

    The engine calls it when a store refused a batch, to fail only the items at fault.
    """
    bad: dict[int, BatchResultError] = {}
    for index, (key, value) in enumerate(zip(keys, results, strict=True)):
        if type(value) in _SCALARS and type(value) is not float:
            continue
        try:
            encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            bad[index] = _not_json(batch_number, key, value, exc)
    return bad


def encode_batch(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> str:
    """All results of a batch as one JSON array; ``BatchResultError`` names a bad item."""
    try:
        return encode(results if isinstance(results, list) else list(results))
    except (TypeError, ValueError, RecursionError):
        encode_each(batch_number, keys, results)
        raise AssertionError("unreachable: some result failed to encode") from None


def encode_each(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> list[str]:
    """Each result as JSON text; ``BatchResultError`` names the item that cannot be encoded."""
    out: list[str] = []
    append = out.append
    for key, value in zip(keys, results, strict=True):
        try:
            append(encode(value))
        except (TypeError, ValueError, RecursionError) as exc:
            raise _not_json(batch_number, key, value, exc) from None
    return out


def encode_keys(keys: Sequence[Key]) -> str:
    """Keys as a JSON array (str and int keys keep their type)."""
    return encode(keys if isinstance(keys, list) else list(keys))


def encode_positions(positions: Sequence[int]) -> str:
    """Positions as ``"start:stop"`` for a contiguous run, else a JSON array."""
    if isinstance(positions, range) and positions.step == 1:
        return f"{positions.start}:{positions.stop}"
    return encode(list(positions))


def decode_positions(text: str) -> Sequence[int]:
    """The inverse of ``encode_positions``."""
    if text.startswith("["):
        values: list[int] = decode(text)
        return values
    start, _, stop = text.partition(":")
    return range(int(start), int(stop))
