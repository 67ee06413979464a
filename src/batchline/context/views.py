"""The two views of the store: summaries for the working LLM, full content for implementation."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import EntryBoundsError, MissingEntryError
from batchline.context.store import CentralContextStore


@dataclass(frozen=True, slots=True)
class WorkingContext:
    """What the working LLM sees: summaries, highest priority first."""

    entries: tuple[tuple[str, str, str], ...]
    summary_tokens: int

    def render(self) -> str:
        """One line per entry: ``[id] (type) summary``."""
        return "\n".join(
            f"[{entry_id}] ({kind}) {summary}" for entry_id, kind, summary in self.entries
        )


class WorkingLLMContext:
    """Builds the summaries-only view of a store."""

    def __init__(self, store: CentralContextStore) -> None:
        self.store = store

    def build(
        self,
        entry_types: Sequence[EntryType] | None = None,
        max_entries: int | None = None,
        max_tokens: int | None = None,
    ) -> WorkingContext:
        """Summaries ordered by priority (then insertion), within the limits given."""
        entries = self.store.get_all()
        if entry_types:
            wanted = set(entry_types)
            entries = [e for e in entries if e.entry_type in wanted]
        order = {entry.id: index for index, entry in enumerate(entries)}
        entries.sort(key=lambda e: (-e.priority, order[e.id]))
        chosen: list[tuple[str, str, str]] = []
        total = 0
        for entry in entries:
            if max_entries is not None and len(chosen) >= max_entries:
                break
            tokens = entry.summary_tokens(self.store.count_tokens)
            if max_tokens is not None and total + tokens > max_tokens:
                continue
            chosen.append((entry.id, entry.entry_type.value, entry.summary or ""))
            total += tokens
        return WorkingContext(tuple(chosen), total)


@dataclass(frozen=True, slots=True)
class ImplementationContext:
    """Full content of a bounded set of entries, in canonical order."""

    entries: tuple[ContextEntry, ...]
    total_tokens: int

    @property
    def entry_count(self) -> int:
        """How many entries it holds."""
        return len(self.entries)

    @property
    def entry_ids(self) -> tuple[str, ...]:
        """The ids, in canonical order."""
        return tuple(entry.id for entry in self.entries)

    def render(self) -> str:
        """Every entry as a ``<entry id=.. source=..>`` block, in canonical order."""
        return "\n".join(
            f'<entry id="{e.id}" type="{e.entry_type.value}" source="{e.source}">\n'
            f"{e.get_content()}\n</entry>"
            for e in self.entries
        )


class ImplementationLLMContext:
    """Hands out bounded implementation contexts and tracks which entries are in use.

    Args:
        store: the context store.
        max_entries: most entries one context may hold.
        max_tokens: most tokens one context may hold (None: no token bound).
    """

    def __init__(
        self, store: CentralContextStore, max_entries: int = 200, max_tokens: int | None = None
    ) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"`max_entries` is {max_entries!r}; expected an integer >= 1")
        self.store = store
        self.max_entries = max_entries
        self.max_tokens = max_tokens
        self._in_use: Counter[str] = Counter()
        self._lock = threading.Lock()

    def is_in_use(self, entry_id: str) -> bool:
        """Whether any open context holds ``entry_id``."""
        with self._lock:
            return self._in_use[entry_id] > 0

    @contextmanager
    def request(
        self, entry_ids: Sequence[str], order: Sequence[str] | None = None
    ) -> Iterator[ImplementationContext]:
        """A context holding ``entry_ids`` (deduplicated); released on exit, also on errors.

        Entries come in canonical order: ``order`` if given (e.g. a batch's most-shared
        first), else sorted by id, so equal requests give byte-equal prompts.

        Raises:
            EntryBoundsError: more entries or tokens than allowed (``requested``, ``max_allowed``).
            MissingEntryError: ids not in the store, all listed.
        """
        unique = list(dict.fromkeys(entry_ids))
        if len(unique) > self.max_entries:
            raise EntryBoundsError(len(unique), self.max_entries)
        missing = [entry_id for entry_id in unique if not self.store.contains(entry_id)]
        if missing:
            raise MissingEntryError(missing)
        if order is not None:
            rank = {entry_id: index for index, entry_id in enumerate(order)}
            unique.sort(key=lambda entry_id: (rank.get(entry_id, len(rank)), entry_id))
        else:
            unique.sort()
        entries = tuple(self.store.get(entry_id) for entry_id in unique)
        for entry in entries:
            entry.get_content()  # a compressed entry cannot serve an implementation call
        tokens = sum(self.store.tokens(entry.id) for entry in entries)
        if self.max_tokens is not None and tokens > self.max_tokens:
            raise EntryBoundsError(tokens, self.max_tokens, unit="tokens")
        with self._lock:
            self._in_use.update(unique)
        try:
            yield ImplementationContext(entries, tokens)
        finally:
            with self._lock:
                self._in_use.subtract(unique)
                for entry_id in unique:
                    if self._in_use[entry_id] <= 0:
                        del self._in_use[entry_id]
