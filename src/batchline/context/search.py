"""Search results and ``VectorSearchIndex``, a standalone ranked index of entries.

The index keeps its own in-memory SQLite FTS5 table and scores like the store does
(BM25 normalised to 0..1, see ``batchline.context.fts``), so results and ``min_score``
mean the same whether one searches an index or a store.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import DuplicateEntryError
from batchline.context.fts import FtsIndex, words


@dataclass
class SearchResult:
    """One hit of ``VectorSearchIndex.search``, best first.

    Attributes:
        entry_id: the entry.
        score: relevance in ``[0, 1]`` (higher is better).
        entry_type: the entry's type.
        source, summary, references, parent_id, compressed: the entry's metadata.
    """

    entry_id: str
    score: float
    entry_type: EntryType
    source: str = ""
    summary: str | None = None
    references: list[str] = field(default_factory=list)
    parent_id: str | None = None
    compressed: bool = False


@dataclass
class StoreSearchResult:
    """One hit of ``CentralContextStore.search``: the entry's summary view and its score.

    ``content`` is None unless the search asked for ``include_content=True``.
    """

    entry_id: str
    entry_type: EntryType
    source: str
    summary: str | None
    content: str | None
    score: float
    references: list[str] = field(default_factory=list)
    parent_id: str | None = None
    compressed: bool = False


def _searchable_text(entry: ContextEntry) -> tuple[str | None, str | None]:
    return entry.summary, None if entry.compressed else entry.content


class VectorSearchIndex:
    """A ranked full-text index of entries (FTS5 + BM25, scores in 0..1).

    Entries with ``searchable=False`` are skipped. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE docs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " type TEXT NOT NULL, meta TEXT NOT NULL)"
        )
        self._fts = FtsIndex(self._db, "docs_fts", "docs")
        self._words: dict[str, Counter[str]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._words)

    def contains(self, entry_id: str) -> bool:
        """Whether ``entry_id`` is indexed."""
        with self._lock:
            return entry_id in self._words

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self.contains(entry_id)

    def add(self, entry: ContextEntry) -> str:
        """Index an entry and return its id (a non-searchable entry is skipped).

        Raises:
            DuplicateEntryError: (a ``ValueError``) the id is already indexed.
        """
        if not entry.searchable:
            return entry.id
        with self._lock:
            if entry.id in self._words:
                raise DuplicateEntryError(
                    f"Entry with id '{entry.id}' already exists in index; use update(entry) "
                    "to re-index it, or remove it first"
                )
            self._put(entry)
        return entry.id

    def update(self, entry: ContextEntry) -> None:
        """Re-index an entry (or drop it when it is no longer searchable)."""
        with self._lock:
            self.remove(entry.id)
            if entry.searchable:
                self._put(entry)

    def remove(self, entry_id: str) -> None:
        """Drop an entry (nothing when absent)."""
        with self._lock:
            if self._words.pop(entry_id, None) is None:
                return
            self._db.execute("BEGIN")
            self._fts.delete(entry_id)
            self._db.execute("DELETE FROM docs WHERE id = ?", (entry_id,))
            self._db.execute("COMMIT")

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._db.execute("DELETE FROM docs")
            self._fts.clear()
            self._words.clear()

    def _put(self, entry: ContextEntry) -> None:
        summary, content = _searchable_text(entry)
        meta = {
            "source": entry.source,
            "summary": entry.summary,
            "references": list(entry.references),
            "parent_id": entry.parent_id,
            "compressed": entry.compressed,
        }
        self._db.execute("BEGIN")
        self._db.execute(
            "INSERT INTO docs (id, type, meta) VALUES (?, ?, ?)",
            (entry.id, entry.entry_type.value, json.dumps(meta)),
        )
        self._fts.put(entry.id, summary, content)
        self._db.execute("COMMIT")
        self._words[entry.id] = Counter(words(f"{summary or ''} {content or ''}"))

    def get_vector(self, entry_id: str) -> list[float] | None:
        """The entry's unit-length term-frequency vector over the sorted vocabulary.

        Kept for code written against the original index (which returned a numpy array);
        search itself does not use it. None when the entry is not indexed.
        """
        with self._lock:
            words = self._words.get(entry_id)
            if words is None:
                return None
            vocabulary = sorted(set().union(*self._words.values()))
        norm = math.sqrt(sum(count * count for count in words.values())) or 1.0
        return [words.get(term, 0) / norm for term in vocabulary]

    def search(
        self,
        query: str,
        max_results: int = 10,
        entry_types: Sequence[EntryType] | None = None,
        min_score: float = 0.0,
    ) -> list[SearchResult]:
        """Entries matching ``query``, best first, each with its score and metadata."""
        if not query or not query.strip():
            return []
        kinds = [
            (k if isinstance(k, EntryType) else EntryType.from_string(k)).value
            for k in entry_types or ()
        ]
        with self._lock:
            hits = self._fts.search(query, max_results, kinds, min_score)
            results = []
            for entry_id, score in hits:
                kind, meta_text = self._db.execute(
                    "SELECT type, meta FROM docs WHERE id = ?", (entry_id,)
                ).fetchone()
                meta = json.loads(meta_text)
                results.append(
                    SearchResult(
                        entry_id,
                        score,
                        EntryType(kind),
                        meta["source"],
                        meta["summary"],
                        list(meta["references"]),
                        meta["parent_id"],
                        bool(meta["compressed"]),
                    )
                )
        return results
