"""The working LLM's view: summaries and metadata of the store's entries, never content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.store import CentralContextStore


@dataclass
class ContextEntryView:
    """An entry as the working LLM sees it: metadata and summary; ``content`` is None."""

    id: str
    entry_type: EntryType
    source: str
    summary: str | None
    content: None = None
    references: list[str] = field(default_factory=list)
    parent_id: str | None = None
    priority: int = 0
    compressed: bool = False


@dataclass
class SearchResultView:
    """A search hit for the working LLM: the summary view plus its score (0..1)."""

    id: str
    entry_type: EntryType
    source: str
    summary: str | None
    content: None = None
    score: float = 0.0
    references: list[str] = field(default_factory=list)
    parent_id: str | None = None
    compressed: bool = False


@dataclass
class WorkingContext:
    """What the working LLM sees: summary views, highest priority first.

    Attributes:
        entries: the views.
        total_count: how many there are.
        summary_tokens: tokens of their summaries.
    """

    entries: list[ContextEntryView]
    total_count: int
    summary_tokens: int

    def render(self) -> str:
        """One line per entry: ``[id] (type) summary``."""
        return "\n".join(
            f"[{view.id}] ({view.entry_type.value}) {view.summary or ''}" for view in self.entries
        )


def _view(entry: ContextEntry) -> ContextEntryView:
    return ContextEntryView(
        entry.id,
        entry.entry_type,
        entry.source,
        entry.summary,
        None,
        list(entry.references),
        entry.parent_id,
        entry.priority,
        entry.compressed,
    )


class WorkingLLMContext:
    """Builds the summaries-only view of a store for the working (orchestrator) LLM."""

    def __init__(self, store: CentralContextStore) -> None:
        self.store = store

    def build(
        self,
        entry_types: Sequence[EntryType] | None = None,
        include_non_searchable: bool = False,
        *,
        max_entries: int | None = None,
        max_tokens: int | None = None,
    ) -> WorkingContext:
        """Summary views ordered by priority (then insertion).

        Args:
            entry_types: only these types.
            include_non_searchable: also show entries hidden from search (commands).
            max_entries: at most this many views.
            max_tokens: at most this many summary tokens (entries that do not fit are
                skipped, smaller ones after them may still fit).
        """
        entries = self.store.get_all()
        if entry_types:
            wanted = set(entry_types)
            entries = [e for e in entries if e.entry_type in wanted]
        if not include_non_searchable:
            entries = [e for e in entries if e.searchable]
        entries.sort(key=lambda e: -e.priority)  # stable: insertion order among equals
        views: list[ContextEntryView] = []
        total = 0
        for entry in entries:
            if max_entries is not None and len(views) >= max_entries:
                break
            tokens = entry.summary_tokens(self.store.count_tokens)
            if max_tokens is not None and total + tokens > max_tokens:
                continue
            views.append(_view(entry))
            total += tokens
        return WorkingContext(views, len(views), total)

    def search(
        self,
        query: str,
        max_results: int = 10,
        entry_types: Sequence[EntryType] | None = None,
        min_score: float = 0.0,
    ) -> list[SearchResultView]:
        """Entries matching ``query``, best first, as summary views with scores (0..1)."""
        if not query or not query.strip():
            return []
        return [
            SearchResultView(
                hit.entry_id,
                hit.entry_type,
                hit.source,
                hit.summary,
                None,
                hit.score,
                list(hit.references),
                hit.parent_id,
                hit.compressed,
            )
            for hit in self.store.search(query, max_results, entry_types, min_score)
        ]
