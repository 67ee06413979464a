"""Read-only copies of the values hooks receive, so a hook cannot change a run's data.

``freeze`` copies a value into immutable containers: lists and tuples become tuples,
dicts become ``FrozenDict`` (a ``dict`` that refuses changes, so ``json.dumps`` and
``isinstance(x, dict)`` still work), sets become frozensets; other mutable objects are
deep-copied. Strings, numbers, booleans and None are shared as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NoReturn

_SCALARS = (str, int, float, bool, bytes, type(None), complex)


class FrozenDict(dict[str, Any]):
    """A dict that raises ``TypeError`` on every change."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        del args, kwargs
        raise TypeError(
            "this mapping is read-only: hooks and callbacks get a frozen copy of the run's "
            "data. Build a new dict (dict(value) or {**value, ...}) to change it."
        )

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


def freeze(value: Any) -> Any:
    """An immutable copy of ``value`` (shared when it already is immutable)."""
    if isinstance(value, (*_SCALARS, FrozenDict)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return copy.deepcopy(value)


def thaw(value: Any) -> Any:
    """A plain, mutable copy of a frozen value (tuples become lists, dicts plain dicts)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value
