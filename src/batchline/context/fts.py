"""Full-text search on SQLite FTS5 with BM25 scores normalised to 0..1.

FTS5's ``bm25()`` is unbounded and its scale depends on the corpus: a word most entries
contain gets an IDF of 1e-6, so every score collapses to ~1e-6 and a ``min_score`` of 0.1
finds nothing. Here a score is the BM25 of an entry divided by the most BM25 any entry
could reach for that query in that corpus, ``(k1 + 1) * sum(idf(term))``. It is in
``[0, 1)``, ranks exactly as BM25 does, and reads the same in every store: the share of
the query's evidence the entry carries (a full match of every query word scores about
0.45-0.8, a match of one word in three about a third of that).

Both ``CentralContextStore`` and the standalone ``VectorSearchIndex`` search through
``FtsIndex``, so a ``min_score`` means the same in both.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Sequence

_WORDS = re.compile(r"\w+", re.UNICODE)
_K1 = 1.2  # FTS5's bm25() constants
_SUMMARY_WEIGHT, _CONTENT_WEIGHT = 2.0, 1.0


def words(text: str) -> list[str]:
    """Every word of ``text``, lower-cased."""
    return _WORDS.findall(text.lower())


def query_terms(query: str) -> list[str]:
    """The distinct words of ``query``, lower-cased, in order."""
    return list(dict.fromkeys(_WORDS.findall(query.lower())))


# Table names below are constants chosen by this package (never user input), hence the
# string-built SQL marked S608; every value goes through a ``?`` parameter.


class FtsIndex:
    """An FTS5 table ``<name>(id UNINDEXED, summary, content)`` on a connection.

    An entry's FTS row has the rowid of its row in ``kinds_table`` (column ``seq``), so
    re-indexing and deleting are lookups, never scans.

    Args:
        db: the connection (the caller serialises access to it).
        name: the FTS5 table's name.
        kinds_table: a table with columns ``seq`` (integer primary key), ``id`` (unique)
            and ``type``, holding every indexed entry.
    """

    def __init__(self, db: sqlite3.Connection, name: str, kinds_table: str) -> None:
        self.db = db
        self.name = name
        self.kinds_table = kinds_table
        db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5("
            "id UNINDEXED, summary, content, tokenize = 'porter unicode61')"
        )
        self.rows = int(db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])  # noqa: S608

    def _seq(self, entry_id: str) -> int | None:
        sql = f"SELECT seq FROM {self.kinds_table} WHERE id = ?"  # noqa: S608
        row = self.db.execute(sql, (entry_id,)).fetchone()
        return None if row is None else int(row[0])

    def put(self, entry_id: str, summary: str | None, content: str | None) -> None:
        """Index (or re-index) an entry (its row in ``kinds_table`` must exist)."""
        seq = self._seq(entry_id)
        if seq is None:
            raise KeyError(entry_id)
        self._delete_row(seq)
        self.db.execute(
            f"INSERT INTO {self.name} (rowid, id, summary, content) VALUES (?, ?, ?, ?)",  # noqa: S608
            (seq, entry_id, summary or "", content or ""),
        )
        self.rows += 1

    def delete(self, entry_id: str) -> None:
        """Drop an entry from the index (before its ``kinds_table`` row goes)."""
        seq = self._seq(entry_id)
        if seq is not None:
            self._delete_row(seq)

    def _delete_row(self, seq: int) -> None:
        sql = f"DELETE FROM {self.name} WHERE rowid = ?"  # noqa: S608
        self.rows -= max(self.db.execute(sql, (seq,)).rowcount, 0)

    def clear(self) -> None:
        """Drop every entry."""
        self.db.execute(f"DELETE FROM {self.name}")  # noqa: S608
        self.rows = 0

    def search(
        self,
        query: str,
        limit: int,
        kinds: Sequence[str] = (),
        min_score: float = 0.0,
    ) -> list[tuple[str, float]]:
        """``(entry_id, score)`` best first, score in ``[0, 1)``, at most ``limit``."""
        terms = query_terms(query)
        if not terms or limit < 1 or self.rows == 0:
            return []
        phrases = [f'"{term}"' for term in terms]
        best = 0.0
        for phrase in phrases:
            hits = int(
                self.db.execute(
                    f"SELECT COUNT(*) FROM {self.name} WHERE {self.name} MATCH ?",  # noqa: S608
                    (phrase,),
                ).fetchone()[0]
            )
            idf = math.log((self.rows - hits + 0.5) / (hits + 0.5))
            best += (_K1 + 1.0) * (idf if idf > 0 else 1e-6)
        sql = (
            f"SELECT f.id, -bm25({self.name}, {_SUMMARY_WEIGHT}, {_CONTENT_WEIGHT}) AS score"  # noqa: S608
            f" FROM {self.name} AS f"
        )
        if kinds:
            sql += f" JOIN {self.kinds_table} AS k ON k.seq = f.rowid"
        sql += f" WHERE {self.name} MATCH ?"
        args: list[object] = [" OR ".join(phrases)]
        if kinds:
            sql += f" AND k.type IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        sql += " ORDER BY score DESC, f.rowid LIMIT ?"
        args.append(limit)
        results = []
        for entry_id, raw in self.db.execute(sql, args):
            score = min(float(raw) / best, 1.0)
            if score < min_score:
                break  # best first: the rest score lower still
            results.append((str(entry_id), score))
        return results
