"""Implementation contexts: the full content of a bounded set of entries.

``build`` / ``request`` / ``request_context`` behave as in the original system: unknown ids
are skipped (and listed in ``missing_ids``), entries come in the caller's order, and a
compressed entry comes as its summary (``content`` None, ``render()`` shows the summary).
``build_strict`` / ``request_strict`` are batchline's stricter variants: every id must
exist and still have its content, and entries come in a canonical order.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import ContextCompressedError, EntryBoundsError
from batchline.context.store import CentralContextStore

DEFAULT_MAX_ENTRIES = 200
log = logging.getLogger("batchline.context")


@dataclass
class ImplementationEntryView:
    """An entry with its full content (None when compressed: then use ``summary``)."""

    id: str
    entry_type: EntryType
    source: str
    summary: str | None
    content: str | None
    references: list[str] = field(default_factory=list)
    parent_id: str | None = None
    priority: int = 0
    compressed: bool = False

    def text(self) -> str:
        """The content, or the summary of a compressed entry."""
        return self.content if self.content is not None else self.summary or ""


@dataclass
class ImplementationContext:
    """What an implementation call gets.

    Attributes:
        entries: full views, in the order requested.
        entry_count: how many.
        total_tokens: tokens of their content (summaries for compressed entries).
        entry_ids: their ids, in order.
        missing_ids: requested ids that are not in the store (skipped).
    """

    entries: list[ImplementationEntryView]
    entry_count: int
    total_tokens: int
    entry_ids: list[str]
    missing_ids: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Every entry as an ``<entry id=.. type=.. source=..>`` block, in order."""
        return "\n".join(
            f'<entry id="{e.id}" type="{e.entry_type.value}" source="{e.source}"'
            + (' compressed="true"' if e.compressed else "")
            + f">\n{e.text()}\n</entry>"
            for e in self.entries
        )


def _view(entry: ContextEntry) -> ImplementationEntryView:
    return ImplementationEntryView(
        entry.id,
        entry.entry_type,
        entry.source,
        entry.summary,
        None if entry.compressed else entry.content,
        list(entry.references),
        entry.parent_id,
        entry.priority,
        entry.compressed,
    )


class ImplementationLLMContext:
    """Hands out bounded implementation contexts and tracks which entries are in use.

    In-use tracking is reference-counted and thread-safe: two open contexts sharing an
    entry keep it in use until both are released.

    Args:
        store: the context store.
        max_entries: most entries one context may hold.
        max_tokens: most tokens one context may hold (None: no token bound).
    """

    def __init__(
        self,
        store: CentralContextStore,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_tokens: int | None = None,
    ) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"`max_entries` is {max_entries!r}; expected an integer >= 1")
        self.store = store
        self.max_entries = max_entries
        self.max_tokens = max_tokens
        self._in_use: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._total_requests = 0
        self._total_releases = 0

    # -- bounds ---------------------------------------------------------------------

    def validate_bounds(self, entry_ids: Sequence[str]) -> bool:
        """Whether ``entry_ids`` (deduplicated) fit the entry bound."""
        return len(dict.fromkeys(entry_ids)) <= self.max_entries

    def get_bounds_info(self) -> dict[str, Any]:
        """``max_entries``, ``max_tokens`` and whether the entry bound is the default."""
        return {
            "max_entries": self.max_entries,
            "max_tokens": self.max_tokens,
            "default": self.max_entries == DEFAULT_MAX_ENTRIES,
        }

    def split_into_batches(self, entry_ids: Sequence[str]) -> list[list[str]]:
        """``entry_ids`` cut into consecutive lists within the entry bound."""
        ids = list(entry_ids)
        return [ids[i : i + self.max_entries] for i in range(0, len(ids), self.max_entries)]

    # -- building -------------------------------------------------------------------

    def build(
        self,
        entry_ids: Sequence[str],
        decompress: bool = False,
        skip_validation: bool = False,
    ) -> ImplementationContext:
        """A context holding ``entry_ids`` in the order given (duplicates dropped).

        Unknown ids are skipped and listed in ``missing_ids``; a compressed entry comes
        with ``content`` None and its summary. ``decompress`` is accepted for the
        original's signature: content dropped by compression cannot come back.

        Raises:
            EntryBoundsError: more entries (or tokens) than allowed, unless
                ``skip_validation``.
        """
        del decompress
        unique = list(dict.fromkeys(entry_ids))
        if not skip_validation and len(unique) > self.max_entries:
            raise EntryBoundsError(len(unique), self.max_entries)
        entries = []
        missing = []
        for entry_id in unique:
            entry = self.store.get(entry_id)
            if entry is None:
                missing.append(entry_id)
            else:
                entries.append(entry)
        if missing:
            log.warning(
                "implementation context: %d requested entr%s not in the store, skipped: %s",
                len(missing),
                "y is" if len(missing) == 1 else "ies are",
                ", ".join(missing[:20]),
            )
        return self._context(entries, missing, check_tokens=not skip_validation)

    def build_strict(
        self, entry_ids: Sequence[str], order: Sequence[str] | None = None
    ) -> ImplementationContext:
        """Like ``build`` but every entry must exist and have its content.

        Entries come in ``order`` if given (e.g. a batch's most-shared first), else
        sorted by id, so equal requests give byte-equal prompts.

        Raises:
            EntryBoundsError: more entries or tokens than allowed.
            MissingEntryError: ids not in the store, all listed.
            ContextCompressedError: an entry was compressed.
        """
        unique = list(dict.fromkeys(entry_ids))
        if len(unique) > self.max_entries:
            raise EntryBoundsError(len(unique), self.max_entries)
        if order is not None:
            rank = {entry_id: index for index, entry_id in enumerate(order)}
            unique.sort(key=lambda entry_id: (rank.get(entry_id, len(rank)), entry_id))
        else:
            unique.sort()
        entries = self.store.get_many(unique)
        for entry in entries:
            if entry.compressed:
                raise ContextCompressedError(entry.id)
        return self._context(entries, [], check_tokens=True)

    def _context(
        self, entries: list[ContextEntry], missing: list[str], *, check_tokens: bool
    ) -> ImplementationContext:
        tokens = sum(self.store.tokens(entry.id) for entry in entries)
        if check_tokens and self.max_tokens is not None and tokens > self.max_tokens:
            raise EntryBoundsError(tokens, self.max_tokens, unit="tokens")
        views = [_view(entry) for entry in entries]
        return ImplementationContext(
            views, len(views), tokens, [view.id for view in views], missing
        )

    # -- in use ---------------------------------------------------------------------

    def is_in_use(self, entry_id: str) -> bool:
        """Whether an open request holds ``entry_id``."""
        with self._lock:
            return self._in_use[entry_id] > 0

    def get_active_entries(self) -> set[str]:
        """The ids currently in use."""
        with self._lock:
            return {entry_id for entry_id, count in self._in_use.items() if count > 0}

    def request_context(
        self, entry_ids: Sequence[str], skip_validation: bool = False
    ) -> ImplementationContext:
        """``build`` and mark the entries in use until ``release_context``."""
        context = self.build(entry_ids, skip_validation=skip_validation)
        self._acquire(context.entry_ids)
        return context

    def release_context(self, entry_ids: Sequence[str] | None = None) -> None:
        """Release entries (one hold each), or every held entry when None."""
        with self._lock:
            if entry_ids is None:
                released = sum(1 for count in self._in_use.values() if count > 0)
                self._in_use.clear()
            else:
                released = 0
                for entry_id in entry_ids:
                    if self._in_use[entry_id] > 0:
                        self._in_use[entry_id] -= 1
                        released += 1
                    if self._in_use[entry_id] <= 0:
                        del self._in_use[entry_id]
            self._total_releases += released

    def get_usage_stats(self) -> dict[str, int]:
        """``active_count``, ``total_requests`` and ``total_releases`` (in entries)."""
        with self._lock:
            return {
                "active_count": sum(1 for count in self._in_use.values() if count > 0),
                "total_requests": self._total_requests,
                "total_releases": self._total_releases,
            }

    def _acquire(self, entry_ids: Sequence[str]) -> None:
        with self._lock:
            self._in_use.update(entry_ids)
            self._total_requests += len(entry_ids)

    @contextmanager
    def request(
        self, entry_ids: Sequence[str], skip_validation: bool = False
    ) -> Iterator[ImplementationContext]:
        """``request_context`` as a ``with`` block: always released, also on errors."""
        context = self.request_context(entry_ids, skip_validation=skip_validation)
        try:
            yield context
        finally:
            self.release_context(context.entry_ids)

    @contextmanager
    def request_strict(
        self, entry_ids: Sequence[str], order: Sequence[str] | None = None
    ) -> Iterator[ImplementationContext]:
        """``build_strict`` as a ``with`` block: always released, also on errors."""
        context = self.build_strict(entry_ids, order)
        self._acquire(context.entry_ids)
        try:
            yield context
        finally:
            self.release_context(context.entry_ids)
