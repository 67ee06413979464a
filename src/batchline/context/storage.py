"""The SQLite side of the context store: the entries table, its search index, bound entries.

``EntryTable`` keeps every entry as a JSON row (with its token counts) and its FTS5 row,
hands out entries bound to it, and saves what is changed on them. ``CentralContextStore``
builds the original system's API on it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchline.context.entries import ContextEntry
from batchline.context.fts import FtsIndex
from batchline.context.tokens import TokenCounter, default_counter

_SCHEMA = 2  # 2: search rows keyed by the entry's rowid
_TEXT_FIELDS = frozenset({"content", "summary", "compressed", "searchable"})


class EntryTable:
    """Entries in SQLite (a file, or memory), searchable, bound to this table.

    Args:
        path: a SQLite file to persist to; None keeps the entries in memory.
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
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a crash
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, id TEXT NOT NULL"
            " UNIQUE, type TEXT NOT NULL, priority INTEGER NOT NULL, tokens INTEGER NOT NULL,"
            " summary_tokens INTEGER NOT NULL, data TEXT NOT NULL)"
        )
        self._fts = FtsIndex(self._db, "entries_fts", "entries")
        self._cache: dict[str, ContextEntry] = {}
        self._id_counter = 0
        if int(self._db.execute("PRAGMA user_version").fetchone()[0]) < _SCHEMA:
            self._reindex()

    def _reindex(self) -> None:
        """Rebuild the search index (files of earlier versions keyed it differently)."""
        with self._transaction():
            self._fts.clear()
            for entry_id in self._ids("SELECT id FROM entries ORDER BY seq"):
                entry = self.get(entry_id)
                if entry is not None:
                    self._index(entry)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA}")

    def _ids(self, sql: str, *args: object) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute(sql, args)]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self.contains(entry_id)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, entry_id: str) -> ContextEntry | None:
        """The entry, or None when absent (``require`` raises instead)."""
        with self._lock:
            cached = self._cache.get(entry_id)
            if cached is not None:
                return cached
            row = self._db.execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return None
            return self._bind(ContextEntry.from_dict(json.loads(row[0])))

    def contains(self, entry_id: str) -> bool:
        """Whether the store has ``entry_id``."""
        with self._lock:
            if entry_id in self._cache:
                return True
            return (
                self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone()
                is not None
            )

    def _delete(self, entry_id: str) -> None:
        self._fts.delete(entry_id)
        self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        entry = self._cache.pop(entry_id, None)
        if entry is not None:
            entry.__dict__.pop("_owner", None)

    # -- bound entries --------------------------------------------------------------

    def _bind(self, entry: ContextEntry) -> ContextEntry:
        object.__setattr__(entry, "_owner", self)
        self._cache[entry.id] = entry
        return entry

    def _index(self, entry: ContextEntry) -> None:
        if entry.searchable:
            self._fts.put(entry.id, entry.summary, None if entry.compressed else entry.content)
        else:
            self._fts.delete(entry.id)

    def _write(self, entry: ContextEntry, *, text: bool) -> None:
        if text:
            self._db.execute(
                "UPDATE entries SET type = ?, priority = ?, tokens = ?, summary_tokens = ?,"
                " data = ? WHERE id = ?",
                (
                    entry.entry_type.value,
                    entry.priority,
                    entry.token_count(self.count_tokens),
                    entry.summary_tokens(self.count_tokens),
                    json.dumps(entry.to_dict()),
                    entry.id,
                ),
            )
            self._index(entry)
        else:
            self._db.execute(
                "UPDATE entries SET type = ?, priority = ?, data = ? WHERE id = ?",
                (entry.entry_type.value, entry.priority, json.dumps(entry.to_dict()), entry.id),
            )

    def _entry_changed(self, entry: ContextEntry, name: str) -> None:
        """Save a change made on a bound entry (validated first)."""
        entry.__post_init__()
        with self._transaction():
            self._write(entry, text=name in _TEXT_FIELDS)
