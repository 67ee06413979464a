"""The central context store: entries by id, ranked full-text search, TTL per turn.

In memory by default; with a path it is a SQLite file that survives restarts. Search is
SQLite FTS5 with BM25 scores normalised to 0..1, kept in sync on every change.

The store copies what it is given (``add``) and hands out entries bound to it: a field
assigned or a mutator called on them (``compress()``, ``set_ttl()``, ...) is saved at once.
Methods named as in the original system behave as there (``get`` of a missing id is None,
``remove`` and ``compress`` answer with booleans); ``require`` and ``pop`` are the strict
variants that raise ``MissingEntryError``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, overload

from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import DuplicateEntryError, MissingEntryError
from batchline.context.search import StoreSearchResult
from batchline.context.storage import EntryTable


class CentralContextStore(EntryTable):
    """Every context entry, addressable by id and searchable.

    Args:
        path: a SQLite file to persist to; None keeps the store in memory.
        token_counter: counts entry tokens (default: exact offline tiktoken or estimate).
    """

    def __iter__(self) -> Iterator[ContextEntry]:
        return iter(self.get_all())

    # -- adding ---------------------------------------------------------------------

    def add(self, entry: ContextEntry) -> str:
        """Add a copy of ``entry`` and return its id.

        Raises:
            DuplicateEntryError: (a ``ValueError``) the id is taken.
        """
        stored = entry.copy()
        tokens = stored.token_count(self.count_tokens)
        summary_tokens = stored.summary_tokens(self.count_tokens)
        with self._lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "INSERT INTO entries (id, type, priority, tokens, summary_tokens, data)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            stored.id,
                            stored.entry_type.value,
                            stored.priority,
                            tokens,
                            summary_tokens,
                            json.dumps(stored.to_dict()),
                        ),
                    )
                    self._index(stored)
            except sqlite3.IntegrityError:
                raise DuplicateEntryError(
                    f"Entry with id '{stored.id}' already exists in the store ('{stored.id}' "
                    "is already taken); remove it first or use another id"
                ) from None
            self._bind(stored)
        return stored.id

    def add_all(self, entries: Iterable[ContextEntry]) -> list[str]:
        """Add several entries; their ids."""
        return [self.add(entry) for entry in entries]

    def add_command_result(
        self,
        command: str,
        result: str,
        summary: str,
        source: str = "bash",
        keep_command: bool = False,
        ttl: int | None = None,
    ) -> str:
        """Add a command's result (searchable), and the command itself only if asked.

        The command entry (``keep_command=True``) is not searchable; the result's
        ``parent_id`` points to it. Ids are generated (``ctx_000001``, ...).

        Returns:
            The result entry's id.
        """
        command_id = None
        if keep_command:
            command_id = self._new_id()
            shown = f"{command[:50]}..." if len(command) > 50 else command
            self.add(
                ContextEntry(
                    command_id,
                    EntryType.COMMAND,
                    source,
                    command,
                    f"Executed: {shown}",
                    searchable=False,
                )
            )
        result_id = self._new_id()
        self.add(
            ContextEntry(
                result_id,
                EntryType.COMMAND_RESULT,
                source,
                result,
                summary,
                parent_id=command_id,
                ttl=ttl,
            )
        )
        return result_id

    def _new_id(self) -> str:
        with self._lock:
            while True:
                self._id_counter += 1
                candidate = f"ctx_{self._id_counter:06d}"
                if not self.contains(candidate):
                    return candidate

    # -- reading --------------------------------------------------------------------

    def require(self, entry_id: str) -> ContextEntry:
        """The entry; ``MissingEntryError`` (a ``KeyError``) when absent."""
        entry = self.get(entry_id)
        if entry is None:
            raise MissingEntryError([entry_id])
        return entry

    def get_many(self, entry_ids: Sequence[str]) -> list[ContextEntry]:
        """Entries in the order asked; ``MissingEntryError`` lists every absent id."""
        found = [(entry_id, self.get(entry_id)) for entry_id in entry_ids]
        missing = [entry_id for entry_id, entry in found if entry is None]
        if missing:
            raise MissingEntryError(missing)
        return [entry for _, entry in found if entry is not None]

    def get_all(self) -> list[ContextEntry]:
        """Every entry, in the order added."""
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM entries ORDER BY seq")]
            return [entry for entry in map(self.get, ids) if entry is not None]

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
            return [entry for entry in map(self.get, ids) if entry is not None]

    def get_content(self, entry_id: str) -> str | None:
        """The entry's content; None when absent; ``ContextCompressedError`` if compressed."""
        entry = self.get(entry_id)
        return None if entry is None else entry.get_content()

    def get_summary(self, entry_id: str) -> str | None:
        """The entry's summary; None when absent."""
        entry = self.get(entry_id)
        return None if entry is None else entry.summary

    def get_compressed(self) -> list[ContextEntry]:
        """Every compressed entry."""
        return [entry for entry in self.get_all() if entry.compressed]

    def get_uncompressed(self) -> list[ContextEntry]:
        """Every entry that still has its content."""
        return [entry for entry in self.get_all() if not entry.compressed]

    def tokens(self, entry_id: str) -> int:
        """Tokens of an entry's content (its summary once compressed)."""
        with self._lock:
            row = self._db.execute(
                "SELECT tokens FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
        if row is None:
            raise MissingEntryError([entry_id])
        return int(row[0])

    def token_map(self, entry_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Tokens per entry (all entries, or the ones given that exist)."""
        with self._lock:
            rows = self._db.execute("SELECT id, tokens FROM entries").fetchall()
        tokens = {row[0]: int(row[1]) for row in rows}
        if entry_ids is None:
            return tokens
        return {entry_id: tokens[entry_id] for entry_id in entry_ids if entry_id in tokens}

    # -- removing -------------------------------------------------------------------

    @overload
    def remove(self, entry_id: str, return_entry: Literal[False] = False) -> bool: ...
    @overload
    def remove(self, entry_id: str, return_entry: Literal[True]) -> ContextEntry | None: ...

    def remove(self, entry_id: str, return_entry: bool = False) -> bool | ContextEntry | None:
        """Remove an entry: True/False whether it was there, or (``return_entry=True``)
        the removed entry or None. ``pop`` raises for a missing id instead."""
        with self._lock:
            entry = self.get(entry_id)
            if entry is None:
                return None if return_entry else False
            with self._transaction():
                self._delete(entry_id)
            return entry if return_entry else True

    def pop(self, entry_id: str) -> ContextEntry:
        """Remove and return an entry; ``MissingEntryError`` (a ``KeyError``) when absent."""
        entry = self.remove(entry_id, return_entry=True)
        if entry is None:
            raise MissingEntryError([entry_id])
        return entry

    def remove_multiple(self, entry_ids: Iterable[str]) -> int:
        """Remove the entries that exist; how many were removed."""
        with self._lock, self._transaction():
            removed = 0
            for entry_id in dict.fromkeys(entry_ids):
                if self.contains(entry_id):
                    self._delete(entry_id)
                    removed += 1
            return removed

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock, self._transaction():
            for entry in self._cache.values():
                entry.__dict__.pop("_owner", None)
            self._cache.clear()
            self._db.execute("DELETE FROM entries")
            self._fts.clear()

    # -- compression ----------------------------------------------------------------

    def compress(self, entry_id: str) -> bool:
        """Drop an entry's content, keeping its summary: True if the entry exists.

        Raises:
            InvalidEntryError: (a ``ValueError``) the entry has no summary.
        """
        entry = self.get(entry_id)
        if entry is None:
            return False
        entry.compress()  # bound: saved and re-indexed (search then sees the summary)
        return True

    def compress_multiple(self, entry_ids: Iterable[str]) -> int:
        """Compress the entries that can be (content and summary present); how many were."""
        count = 0
        for entry_id in entry_ids:
            entry = self.get(entry_id)
            if entry is not None and entry.can_compress():
                entry.compress()
                count += 1
        return count

    # -- TTL ------------------------------------------------------------------------

    def process_ttl(self) -> int:
        """Count one turn down on every entry with a TTL above 0; how many were."""
        with self._lock, self._transaction():
            changed = 0
            for entry in self.get_all():
                if entry.ttl is not None and entry.ttl > 0:
                    object.__setattr__(entry, "ttl", entry.ttl - 1)
                    self._write(entry, text=False)
                    changed += 1
            return changed

    def get_expired(self) -> list[ContextEntry]:
        """Entries whose TTL reached 0."""
        return [entry for entry in self.get_all() if entry.is_expired()]

    def cleanup_expired(self) -> int:
        """Remove the expired entries (TTL 0); how many were removed."""
        return self.remove_multiple([entry.id for entry in self.get_expired()])

    def get_expiring_soon(self, threshold: int = 2) -> list[ContextEntry]:
        """Entries with a TTL of at most ``threshold`` turns."""
        return [e for e in self.get_all() if e.ttl is not None and e.ttl <= threshold]

    def process_turn(self) -> dict[str, int]:
        """End a conversation turn: count TTLs down, then remove what expired.

        Returns:
            ``{"decremented": n, "removed": m}``.
        """
        decremented = self.process_ttl()
        removed = self.cleanup_expired()
        return {"decremented": decremented, "removed": removed}

    def extend_ttl(self, entry_id: str, additional: int) -> bool:
        """Give an entry ``additional`` more turns (a TTL of None becomes ``additional``)."""
        entry = self.get(entry_id)
        if entry is None:
            return False
        entry.set_ttl(additional if entry.ttl is None else entry.ttl + additional)
        return True

    # -- search ---------------------------------------------------------------------

    def search(
        self,
        query: str,
        max_results: int = 10,
        entry_types: Sequence[EntryType | str] | None = None,
        min_score: float = 0.0,
        include_content: bool = False,
    ) -> list[StoreSearchResult]:
        """Entries matching ``query``, best first, as summary views with scores in 0..1.

        Ranking is BM25 over summary (weighted 2x) and content; a compressed entry is found
        by its summary. ``min_score`` is a share of the best score the query could reach.
        """
        if not query or not query.strip():
            return []
        kinds = [
            (k if isinstance(k, EntryType) else EntryType.from_string(k)).value
            for k in entry_types or ()
        ]
        results = []
        with self._lock:
            for entry_id, score in self._fts.search(query, max_results, kinds, min_score):
                entry = self.get(entry_id)
                if entry is None:
                    continue
                results.append(
                    StoreSearchResult(
                        entry.id,
                        entry.entry_type,
                        entry.source,
                        entry.summary,
                        entry.content if include_content else None,
                        score,
                        list(entry.references),
                        entry.parent_id,
                        entry.compressed,
                    )
                )
        return results
