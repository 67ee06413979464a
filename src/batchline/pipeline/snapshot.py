"""The context a streamed update shows: built lazily, so streaming stays linear."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from batchline.engine import merge_outputs


class Snapshot(Mapping[str, Any]):
    """The context as it stood after a batch: built lazily, only when read.

    List fields are prefixes of the running (append-only) lists; other fields are
    merged from the batch outputs so far on first access. Nothing is copied for
    updates nobody reads, so streaming stays linear.
    """

    __slots__ = ("_base", "_cache", "_count", "_lengths", "_outputs", "_running")

    def __init__(
        self, base: Mapping[str, Any], running: dict[str, Any], outputs: list[dict[str, Any]]
    ) -> None:
        self._base = base
        self._running = running
        self._outputs = outputs
        self._count = len(outputs)
        self._lengths = {
            name: len(value) for name, value in running.items() if isinstance(value, list)
        }
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name in self._lengths:
            value: Any = self._running[name][: self._lengths[name]]
        elif name in self._running and self._count:
            value = merge_outputs(
                [out for out in self._outputs[: self._count] if name in out],
                on_conflict=_already_reported,
            ).get(name, self._base.get(name))
            if name not in self._base and value is None:
                raise KeyError(name)
        else:
            value = self._base[name]
        self._cache[name] = value
        return value

    def _names(self) -> list[str]:
        scope = [
            n
            for n in self._running
            if n in self._lengths or any(n in out for out in self._outputs[: self._count])
        ]
        return [*scope, *(n for n in self._base if n not in scope)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _already_reported(path: str, old: Any, new: Any) -> None:
    """Conflicts met again while rebuilding a snapshot were reported when first merged."""
    del path, old, new
