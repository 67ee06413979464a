"""The response cache: a SQLite file shared by every run of a workspace.

Keyed by a hash of the model, messages, parameters and schema. Only successful answers
are stored. Identical requests in flight at the same time are sent once: the others wait
for the first (across threads and event loops).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def request_key(body: dict[str, Any]) -> str:
    """A stable hash of a request body (everything that changes the answer)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """Answers by request key, in SQLite (WAL), plus in-flight de-duplication."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, "
            "response TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self._pending: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """A stored answer, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, response: dict[str, Any]) -> None:
        """Store a successful answer."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, response, created_at)"
                " VALUES (?, ?, ?, ?)",
                (key, model, json.dumps(response), time.time()),
            )

    def claim(self, key: str) -> concurrent.futures.Future[dict[str, Any]] | None:
        """None if this caller should send the request (and later ``settle``), else the
        future of the identical request already in flight."""
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                return pending
            self._pending[key] = concurrent.futures.Future()
            return None

    def settle(
        self, key: str, response: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        """Wake the callers waiting on ``key`` with the answer (or the error)."""
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None:
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert response is not None
            future.set_result(response)

    @staticmethod
    async def wait(future: concurrent.futures.Future[dict[str, Any]]) -> dict[str, Any]:
        """Await another caller's identical request."""
        return await asyncio.wrap_future(future)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
