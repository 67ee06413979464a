"""Errors of the context window array.

``ContextWindowArrayError`` is the root (the original system's name); ``ContextError`` is
the same class under batchline's earlier name. Value problems are also ``ValueError``s and
type problems ``TypeError``s, so code written against the original catches them as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchline.errors import BatchlineError, ConfigurationError


class ContextWindowArrayError(BatchlineError):
    """Root of the context window array's errors."""


ContextError = ContextWindowArrayError
"""The same class as ``ContextWindowArrayError`` (batchline's earlier name)."""


class ContextCompressedError(ContextWindowArrayError):
    """An entry was compressed: only its summary is left.

    Attributes:
        entry_id: the compressed entry.
    """

    def __init__(self, entry_id: str) -> None:
        self.entry_id = entry_id
        super().__init__(
            f"Entry {entry_id} is compressed; content is not available: only the summary of "
            f"`{entry_id}` is left. Use its summary (`get_content_or_summary()`), or add the "
            "entry again with its content."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.entry_id,))


class InvalidEntryError(ContextWindowArrayError, ConfigurationError):
    """A context entry (or a value given to one) is invalid; also a ``ValueError``."""


class EntryFieldTypeError(ContextWindowArrayError, TypeError):
    """A field of a context entry has the wrong type; also a ``TypeError``."""


class DuplicateEntryError(ContextWindowArrayError, ValueError):
    """An entry with this id is already in the store (or the index)."""


class EntryBoundsError(ContextWindowArrayError, ValueError):
    """More entries (or tokens) were requested than an implementation context allows.

    Attributes:
        requested: how many entries (or tokens) were requested.
        max_allowed: the bound.
        unit: ``"entries"`` or ``"tokens"``.
    """

    def __init__(self, requested: int, max_allowed: int, unit: str = "entries") -> None:
        label = "Entry count" if unit == "entries" else "Token count"
        super().__init__(
            f"{label} {requested} exceeds maximum allowed {max_allowed}: an implementation "
            f"context holds at most {max_allowed} {unit}. Consider splitting into batches "
            "(`split_into_batches`, or TaskBatcher so each batch fits) or using "
            "skip_validation=True."
        )
        self.requested = requested
        self.max_allowed = max_allowed
        self.unit = unit

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.requested, self.max_allowed, self.unit))


class MissingEntryError(ContextWindowArrayError, KeyError):
    """Entries that are not in the store; ``missing`` lists them all (strict variants only)."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        shown = ", ".join(f"`{m}`" for m in self.missing[:20])
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
