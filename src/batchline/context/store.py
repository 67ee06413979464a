"""The central context store: entries by id, ranked full-text search, TTL per turn.

In memory by default; with a path it is a SQLite file that survives restarts. Search
is SQLite FTS5 with BM25 ranking, kept in sync on add, remove, compress and expiry.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import DuplicateEntryError, MissingEntryError
from batchline.context.tokens import TokenCounter, default_counter

_WORDS = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class StoreSearchResult:
    """One search hit, best first: higher ``score`` is better (negated BM25)."""

    entry_id: str
    score: float
    summary: str | None
    content: str | None = None


class CentralContextStore:
    """Every context entry, addressable by id and searchable.

    Args:
        path: a SQLite file to persist to; None keeps the store in memory.
        token_counter: counts entry tokens (default: exact offline tiktoken or estimate).
    """

    def __init__(
        self, path: str | Path | None = None, *, token_counter: TokenCounter | None = None
    ) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count_tokens = token_counter or default_counter()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path) if self.path else ":memory:",
            check_same_thread=False,
            isolation_level=None,
        )
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS entries (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                priority INTEGER NOT NULL,
                tokens INTEGER NOT NULL,
                summary_tokens INTEGER NOT NULL,
                data TEXT NOT NULL
            );
            CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(
                id UNINDEXED, summary, content, tokenize = 'porter unicode61'
            );
            """
        )
        self._cache: dict[str, ContextEntry] = {}

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self.contains(entry_id)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- entries --------------------------------------------------------------------

    def add(self, entry: ContextEntry) -> ContextEntry:
        """Add an entry; ``DuplicateEntryError`` if its id is taken."""
        tokens = entry.token_count(self.count_tokens)
        summary_tokens = entry.summary_tokens(self.count_tokens)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO entries (id, type, priority, tokens, summary_tokens, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        entry.id,
                        entry.entry_type.value,
                        entry.priority,
                        tokens,
                        summary_tokens,
                        json.dumps(entry.to_dict()),
                    ),
                )
                if entry.searchable:
                    self._db.execute(
                        "INSERT INTO entries_fts (id, summary, content) VALUES (?, ?, ?)",
                        (entry.id, entry.summary or "", entry.content or ""),
                    )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise DuplicateEntryError(
                    f"an entry with id {entry.id!r} is already in the store; remove it first "
                    "or use another id"
                ) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._cache[entry.id] = entry
        return entry

    def add_all(self, entries: Iterable[ContextEntry]) -> None:
        """Add several entries."""
        for entry in entries:
            self.add(entry)

    def get(self, entry_id: str) -> ContextEntry:
        """One entry; ``MissingEntryError`` (a ``KeyError``) when absent."""
        with self._lock:
            cached = self._cache.get(entry_id)
            if cached is not None:
                return cached
            row = self._db.execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                raise MissingEntryError([entry_id])
            entry = ContextEntry.from_dict(json.loads(row[0]))
            self._cache[entry_id] = entry
            return entry

    def get_many(self, entry_ids: Sequence[str]) -> list[ContextEntry]:
        """Entries in the order asked; ``MissingEntryError`` lists every absent id."""
        missing = [entry_id for entry_id in entry_ids if not self.contains(entry_id)]
        if missing:
            raise MissingEntryError(missing)
        return [self.get(entry_id) for entry_id in entry_ids]

    def contains(self, entry_id: str) -> bool:
        """Whether the store has ``entry_id``."""
        with self._lock:
            if entry_id in self._cache:
                return True
            return (
                self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone()
                is not None
            )

    def remove(self, entry_id: str) -> ContextEntry:
        """Remove and return an entry; ``MissingEntryError`` when absent."""
        entry = self.get(entry_id)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            self._db.execute("DELETE FROM entries_fts WHERE id = ?", (entry_id,))
            self._db.execute("COMMIT")
            self._cache.pop(entry_id, None)
        return entry

    def get_all(self) -> list[ContextEntry]:
        """Every entry, in the order added."""
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM entries ORDER BY seq")]
        return [self.get(entry_id) for entry_id in ids]

    def get_by_type(self, entry_type: EntryType | str) -> list[ContextEntry]:
        """Entries of one type, in the order added."""
        kind = (
            entry_type if isinstance(entry_type, EntryType) else EntryType.from_string(entry_type)
        )
        with self._lock:
            ids = [
                row[0]
                for row in self._db.execute(
                    "SELECT id FROM entries WHERE type = ? ORDER BY seq", (kind.value,)
                )
            ]
        return [self.get(entry_id) for entry_id in ids]

    def tokens(self, entry_id: str) -> int:
        """Tokens of an entry's content (summary once compressed)."""
        with self._lock:
            row = self._db.execute(
                "SELECT tokens FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
        if row is None:
            raise MissingEntryError([entry_id])
        return int(row[0])

    def token_map(self, entry_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Tokens per entry (all entries, or the ones given)."""
        with self._lock:
            rows = self._db.execute("SELECT id, tokens FROM entries").fetchall()
        tokens = {row[0]: int(row[1]) for row in rows}
        if entry_ids is None:
            return tokens
        return {entry_id: tokens[entry_id] for entry_id in entry_ids if entry_id in tokens}

    def compress(self, entry_id: str) -> ContextEntry:
        """Drop an entry's content, keeping its summary (search then sees the summary only)."""
        entry = self.get(entry_id).compress()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE entries SET data = ?, tokens = ? WHERE id = ?",
                (json.dumps(entry.to_dict()), entry.token_count(self.count_tokens), entry_id),
            )
            self._db.execute(
                "UPDATE entries_fts SET content = '', summary = ? WHERE id = ?",
                (entry.summary or "", entry_id),
            )
            self._db.execute("COMMIT")
            self._cache[entry_id] = entry
        return entry

    def process_turn(self) -> list[str]:
        """Count one turn down on every entry with a TTL; remove and return the expired."""
        expired: list[str] = []
        for entry in self.get_all():
            if entry.ttl is None:
                continue
            remaining = entry.ttl - 1
            if remaining <= 0:
                self.remove(entry.id)
                expired.append(entry.id)
                continue
            entry.ttl = remaining
            with self._lock:
                self._db.execute(
                    "UPDATE entries SET data = ? WHERE id = ?",
                    (json.dumps(entry.to_dict()), entry.id),
                )
        return expired

    # -- search ---------------------------------------------------------------------

    def search(
        self,
        query: str,
        max_results: int = 10,
        entry_types: Sequence[EntryType | str] | None = None,
        min_score: float = 0.0,
        include_content: bool = False,
    ) -> list[StoreSearchResult]:
        """Entries matching ``query``, best first (BM25 over summary and content)."""
        words = _WORDS.findall(query.lower())
        if not words or max_results < 1:
            return []
        match = " OR ".join(f'"{word}"' for word in dict.fromkeys(words))
        kinds = [
            (k if isinstance(k, EntryType) else EntryType.from_string(k)).value
            for k in entry_types or ()
        ]
        sql = (
            "SELECT f.id, -bm25(entries_fts, 2.0, 1.0) AS score FROM entries_fts AS f"
            " JOIN entries AS e ON e.id = f.id WHERE entries_fts MATCH ?"
        )
        args: list[object] = [match]
        if kinds:
            sql += f" AND e.type IN ({','.join('?' * len(kinds))})"
            args += kinds
        sql += " ORDER BY score DESC, e.seq LIMIT ?"
        args.append(max_results * 4 if min_score > 0 else max_results)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        results = []
        for entry_id, score in rows:
            if score < min_score:
                continue
            entry = self.get(entry_id)
            results.append(
                StoreSearchResult(
                    entry_id,
                    float(score),
                    entry.summary,
                    entry.content if include_content else None,
                )
            )
            if len(results) == max_results:
                break
        return results
