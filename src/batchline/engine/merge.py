"""Merging partial results field by field: the one place these rules live.

Lists are concatenated in order, dicts are merged deeply, anything else is replaced by
the later value. When two different values meet (at the top level or inside nested
dicts), the later one wins and the conflict is reported: to ``on_conflict(path, old,
new)`` when the caller gives one (a front door turns it into its own warning), else as
a logged warning. Every front door that combines per-batch or per-branch outputs uses
this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("batchline.merge")

OnConflict = Callable[[str, Any, Any], None]
"""``on_conflict(path, old, new)``: ``path`` is the field, dotted for nested keys."""


def deep_merge(
    base: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    on_conflict: OnConflict | None = None,
    path: str = "",
) -> dict[str, Any]:
    """``base`` updated by ``update``; nested dicts merge, other values are replaced.

    A replaced value that differs is reported to ``on_conflict`` (when given) with its
    dotted path.
    """
    merged = dict(base)
    for name, value in update.items():
        current = merged.get(name)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[name] = deep_merge(
                current, value, on_conflict=on_conflict, path=f"{path}{name}."
            )
        else:
            if on_conflict is not None and name in merged and current != value:
                on_conflict(f"{path}{name}", current, value)
            merged[name] = value
    return merged


def merge_field(
    name: str,
    current: Any,
    value: Any,
    *,
    source: str = "",
    on_conflict: OnConflict | None = None,
) -> Any:
    """Combine two values of one field: concatenate lists, merge dicts, else last wins."""
    if isinstance(current, list) and isinstance(value, list):
        return [*current, *value]
    if isinstance(current, Mapping) and isinstance(value, Mapping):
        return deep_merge(current, value, on_conflict=on_conflict, path=f"{name}.")
    if current != value:
        if on_conflict is not None:
            on_conflict(name, current, value)
        else:
            log.warning(
                "field %r has different values to merge%s; the last one wins (%r replaces %r)",
                name,
                f" ({source})" if source else "",
                _short(value),
                _short(current),
            )
    return value


def merge_into(
    target: dict[str, Any],
    output: Mapping[str, Any],
    *,
    source: str = "",
    on_conflict: OnConflict | None = None,
) -> None:
    """Merge one partial output into ``target`` in place (lists grow: linear over many)."""
    for name, value in output.items():
        if name not in target:
            target[name] = list(value) if isinstance(value, list) else value
        elif isinstance(target[name], list) and isinstance(value, list):
            target[name].extend(value)
        else:
            target[name] = merge_field(
                name, target[name], value, source=source, on_conflict=on_conflict
            )


def merge_outputs(
    outputs: Iterable[Mapping[str, Any]],
    *,
    source: str = "",
    on_conflict: OnConflict | None = None,
) -> dict[str, Any]:
    """Merge several partial outputs in order, field by field."""
    merged: dict[str, Any] = {}
    for output in outputs:
        merge_into(merged, output, source=source, on_conflict=on_conflict)
    return merged


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
