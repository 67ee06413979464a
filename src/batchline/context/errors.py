"""Errors of the context window array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchline.errors import BatchlineError, ConfigurationError


class ContextError(BatchlineError):
    """Root of the context-store errors."""


class ContextCompressedError(ContextError):
    """An entry was compressed: only its summary is left."""


class DuplicateEntryError(ContextError, ValueError):
    """An entry with this id is already in the store."""


class EntryBoundsError(ContextError, ValueError):
    """More entries (or tokens) were requested than an implementation context allows."""

    def __init__(self, requested: int, max_allowed: int, unit: str = "entries") -> None:
        super().__init__(
            f"requested {requested} {unit}, but an implementation context holds at most "
            f"{max_allowed}. Split the task, or batch tasks with TaskBatcher so each batch fits."
        )
        self.requested = requested
        self.max_allowed = max_allowed
        self.unit = unit

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.requested, self.max_allowed, self.unit))


class MissingEntryError(ContextError, KeyError):
    """Entries that are not in the store; ``missing`` lists them all."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        shown = ", ".join(repr(m) for m in self.missing[:20])
        more = f" and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
        super().__init__(
            f"{len(self.missing)} entr{'y is' if len(self.missing) == 1 else 'ies are'} not in "
            f"the store: {shown}{more}. Add them first, or drop them from the request."
        )

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.missing,))


class CyclicDependencyError(ConfigurationError):
    """Tasks depend on each other in a cycle."""
