"""Step results as JSON: what a step returns is kept in the state store and handed to
later steps, so it must be JSON data. Sets and tuples become lists (sets sorted when
their elements sort); anything else that is not JSON is an error naming the step and
where in the result it sits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from batchline.errors import TerminalError
from batchline.workflow.errors import TaskError


class NotJSONError(TaskError, TerminalError):
    """A step returned something that is not JSON data (never retried: it would again)."""


def to_json(value: Any, step: str, where: str = "result") -> Any:
    """``value`` as JSON data (see the module docstring).

    Raises:
        TaskError: a value that is not JSON (a datetime, an object, bytes ...).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _not_json(value, step, where, "a non-finite float (JSON has no NaN or Infinity)")
    if isinstance(value, Mapping):
        out = {}
        for key, child in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise _not_json(key, step, f"{where} key", "a mapping key that is not text")
            out[key if isinstance(key, str) else str(key)] = to_json(child, step, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [to_json(child, step, f"{where}[{i}]") for i, child in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = list(value)
        try:
            items = sorted(items)
        except TypeError:
            items = sorted(items, key=repr)
        return [to_json(child, step, f"{where}[{i}]") for i, child in enumerate(items)]
    raise _not_json(value, step, where, f"a {type(value).__name__}")


def lists_for_sets(value: Any) -> Any:
    """Sets (sorted when they sort) and tuples as lists, at any depth; everything else
    as it is (a batch item's result that is still not JSON then fails alone, by the
    engine's own check)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {key: lists_for_sets(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [lists_for_sets(child) for child in value]
    if isinstance(value, set | frozenset):
        items = list(value)
        try:
            items = sorted(items)
        except TypeError:
            items = sorted(items, key=repr)
        return [lists_for_sets(child) for child in items]
    return value


def _not_json(value: Any, step: str, where: str, what: str) -> NotJSONError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return NotJSONError(
        f"step `{step}` returned {what} at `{where}` ({shown}), which cannot be kept as "
        "JSON; return str, int, float, bool, None, lists and mappings (sets and tuples "
        "become lists), e.g. str(value) or value.isoformat()",
        "result",
    )


__all__ = ["NotJSONError", "lists_for_sets", "to_json"]
