"""Results as committed: checked for every store, encoded exactly for the stores that persist.

What a batch returned comes back the same after a resume. Plain JSON (dict with str keys,
list, str, int, float, bool, None) is stored as plain JSON, encoded once per batch. A few
more types are stored exactly, tagged as ``{"$t": TYPE, "v": ...}`` (only the batches
that hold one pay for the tagging, and a batch is decoded specially only when it was
encoded so):

- dicts whose keys are not all ``str`` (``int``, ``float``, ``bool``, ``None``, tuples,
  ...: every key keeps its type; a ``str`` key ``"1"`` stays a ``str``), and dicts that
  have a ``"$t"`` key of their own;
- ``tuple`` and ``bytes``;
- ``datetime.datetime`` (naive, or with a ``timezone`` / ``ZoneInfo`` tzinfo),
  ``datetime.date``, ``datetime.time`` (naive), ``datetime.timedelta``,
  ``decimal.Decimal``, ``uuid.UUID``.

Anything else is refused when the batch is first committed, with a ``BatchResultError``
naming the batch, the item key, the type and where in the result it sits: NaN and
infinity, sets (unordered: return ``sorted(x)``), subclasses of the types above (enums,
named tuples, ``OrderedDict``, ``Counter``, numpy scalars) and arbitrary objects. They
would otherwise come back as something else after a resume. Convert them first
(``float(x)``, ``dict(x)``, ``x._asdict()``, ``x.value``, ``model.model_dump()``).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
import zoneinfo
from collections.abc import Sequence
from typing import Any

from batchline.errors import BatchResultError
from batchline.state.keys import Key

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_EXACT = frozenset({str, int, bool, type(None)})
TAG = "$t"
_TAGGED_PREFIX = '{"$batchline":1,"results":'
encode = _ENCODER.encode
decode = json.loads


class _RefusedError(Exception):
    """A value that cannot be stored exactly; ``path`` says where it sits."""

    def __init__(self, value: Any, path: str, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.path = path
        self.reason = reason


def _is_plain(value: Any) -> bool:
    """True when plain JSON stores ``value`` exactly (no tag needed, nothing refused).

    Scalars are checked inline (no call per value): this runs for every committed result.
    """
    kind = type(value)
    if kind is dict:
        if TAG in value:
            return False
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if kind is float:
                if item - item != 0.0:  # NaN or infinity
                    return False
                continue
            if not _is_plain(item):
                return False
        return True
    if kind is list:
        for item in value:
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if kind is float:
                if item - item != 0.0:
                    return False
                continue
            if not _is_plain(item):
                return False
        return True
    if kind in _EXACT:
        return True
    if kind is float:
        return bool(value - value == 0.0)
    return False


def _all_plain(results: Sequence[Any]) -> bool:
    kinds = set(map(type, results))
    if kinds <= _EXACT:
        return True
    if kinds <= _SCALARS:
        return all(math.isfinite(r) for r in results if type(r) is float)
    return all(map(_is_plain, results))


def _tag(value: Any, path: str) -> Any:
    """``value`` as JSON-ready data, tagging what plain JSON would change; or ``_RefusedError``."""
    kind = type(value)
    if kind in _EXACT:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _RefusedError(
                value, path, f"{value!r} is not JSON (NaN and infinity are refused)"
            )
        return value
    if kind is list:
        return [_tag(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind is dict:
        if all(type(key) is str and key != TAG for key in value):
            return {key: _tag(item, f"{path}[{key!r}]") for key, item in value.items()}
        return {
            TAG: "dict",
            "v": [
                [_tag(key, f"{path} key {key!r}"), _tag(item, f"{path}[{key!r}]")]
                for key, item in value.items()
            ],
        }
    if kind is tuple:
        return {TAG: "tuple", "v": [_tag(item, f"{path}[{i}]") for i, item in enumerate(value)]}
    if kind is set or kind is frozenset:
        raise _RefusedError(
            value, path, f"a {kind.__name__} is not JSON (convert it, e.g. sorted(x) or list(x))"
        )
    if kind is bytes:
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if kind is dt.datetime:
        return {TAG: "datetime", "v": _datetime(value, path)}
    if kind is dt.date:
        return {TAG: "date", "v": value.isoformat()}
    if kind is dt.time:
        if value.tzinfo is not None:
            raise _RefusedError(value, path, "a time with a tzinfo cannot be stored exactly")
        return {TAG: "time", "v": [value.isoformat(), value.fold]}
    if kind is dt.timedelta:
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if kind is decimal.Decimal:
        return {TAG: "decimal", "v": str(value)}
    if kind is uuid.UUID:
        return {TAG: "uuid", "v": str(value)}
    base = next((b.__name__ for b in kind.__mro__[1:] if b in _STORABLE), None)
    reason = (
        f"{kind.__qualname__} is a subclass of {base}; it would come back as a plain {base}"
        if base is not None
        else f"{kind.__qualname__} is not JSON and batchline does not store it exactly"
    )
    raise _RefusedError(value, path, reason)


_STORABLE = frozenset(
    {str, int, float, list, dict, tuple, set, frozenset, bytes, dt.datetime, dt.date, dt.time}
    | {dt.timedelta, decimal.Decimal, uuid.UUID}
)


def _datetime(value: dt.datetime, path: str) -> list[Any]:
    naive = value.replace(tzinfo=None).isoformat()
    tz = value.tzinfo
    if tz is None:
        return [naive, value.fold]
    if isinstance(tz, zoneinfo.ZoneInfo):
        return [naive, value.fold, "zone", tz.key]
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        default = dt.timezone(offset).tzname(None)
        return [
            naive,
            value.fold,
            "offset",
            offset.total_seconds(),
            None if name == default else name,
        ]
    raise _RefusedError(
        value, path, f"a datetime with tzinfo {type(tz).__name__} cannot be stored exactly"
    )


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_untag(item) for item in value]
    if kind is not dict:
        return value
    tag = value.get(TAG)
    if tag is None or len(value) != 2 or "v" not in value:
        return {key: _untag(item) for key, item in value.items()}
    data = value["v"]
    if tag == "dict":
        return {_untag(key): _untag(item) for key, item in data}
    if tag == "tuple":
        return tuple(_untag(item) for item in data)
    if tag == "bytes":
        return base64.b64decode(data)
    if tag == "datetime":
        return _undatetime(data)
    if tag == "date":
        return dt.date.fromisoformat(data)
    if tag == "time":
        return dt.time.fromisoformat(data[0]).replace(fold=data[1])
    if tag == "timedelta":
        return dt.timedelta(days=data[0], seconds=data[1], microseconds=data[2])
    if tag == "decimal":
        return decimal.Decimal(data)
    if tag == "uuid":
        return uuid.UUID(data)
    raise ValueError(f"unknown tag {tag!r}")


def _undatetime(data: list[Any]) -> dt.datetime:
    value = dt.datetime.fromisoformat(data[0]).replace(fold=data[1])
    if len(data) == 2:
        return value
    if data[2] == "zone":
        return value.replace(tzinfo=zoneinfo.ZoneInfo(data[3]))
    offset = dt.timedelta(seconds=data[3])
    zone = dt.timezone(offset) if data[4] is None else dt.timezone(offset, data[4])
    return value.replace(tzinfo=zone)


def _refused(batch_number: int, key: Key, error: _RefusedError) -> BatchResultError:
    where = f" at result{error.path}" if error.path else ""
    return BatchResultError(
        f"batch {batch_number}: the result for item {key!r} is not JSON-serialisable as it "
        f"is and cannot be stored exactly{where}: "
        f"{error.reason}. Results must be JSON (dict, list, str, int, float, bool, None) or "
        "one of the types batchline stores exactly (tuple, bytes, dicts with "
        "int/float/bool/None keys, datetime, date, time, timedelta, Decimal, UUID); convert "
        "the value first (float(x), dict(x), x._asdict(), x.value, model.model_dump())."
    )


def _tag_all(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in zip(keys, results, strict=True):
        try:
            out.append(_tag(value, ""))
        except _RefusedError as exc:
            raise _refused(batch_number, key, exc) from None
        except RecursionError:
            raise BatchResultError(
                f"batch {batch_number}: the result for item {key!r} is nested too deeply (or "
                "refers to itself) to be stored as JSON. Return plain, finite data."
            ) from None
    return out


def check_json(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> None:
    """Raise ``BatchResultError`` naming the first result a durable store would not keep exactly."""
    if not _all_plain(results):
        _tag_all(batch_number, keys, results)


def unstorable(
    batch_number: int, keys: Sequence[Key], results: Sequence[Any]
) -> dict[int, BatchResultError]:
    """The results a JSON store cannot keep, by index, each with the error naming it.

    The engine calls it when a store refused a batch, to fail only the items at fault.
    """
    bad: dict[int, BatchResultError] = {}
    for index, (key, value) in enumerate(zip(keys, results, strict=True)):
        if type(value) in _EXACT or _is_plain(value):
            continue
        try:
            _tag_all(batch_number, [key], [value])
        except BatchResultError as exc:
            bad[index] = exc
    return bad


def encode_batch(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> str:
    """All results of a batch as one JSON text; ``BatchResultError`` names a refused item.

    Plain results are one JSON array. A batch holding a value plain JSON would change is
    ``{"$batchline":1,"results":[...]}`` with those values tagged; ``decode_results``
    reads both.
    """
    listed = results if isinstance(results, list) else list(results)
    if _all_plain(listed):
        return encode(listed)
    return _TAGGED_PREFIX + encode(_tag_all(batch_number, keys, listed)) + "}"


def decode_results(text: str) -> list[Any]:
    """The results of a batch as ``encode_batch`` stored them."""
    if text.startswith(_TAGGED_PREFIX):
        data: list[Any] = decode(text)["results"]
        return [_untag(value) for value in data]
    values: list[Any] = decode(text)
    return values


def encode_each(batch_number: int, keys: Sequence[Key], results: Sequence[Any]) -> list[str]:
    """Each result as JSON text (tagged where needed); ``BatchResultError`` names a bad one."""
    return [encode(value) for value in _tag_all(batch_number, keys, results)]


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
