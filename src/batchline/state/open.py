"""Open a state store from where it lives: a file path or a PostgreSQL URL."""

from __future__ import annotations

import os

from batchline.state.base import StateStore
from batchline.state.postgres import PostgresStateStore, is_postgres_url
from batchline.state.sqlite import SQLiteStateStore


def open_store(location: str | os.PathLike[str], *, lease_ttl: float | None = None) -> StateStore:
    """``PostgresStateStore`` for ``postgresql://...`` (or ``postgres://``), else SQLite.

    Args:
        location: what ``--state`` and ``settings.state`` take: a SQLite file path or a
            PostgreSQL URL.
        lease_ttl: the store's lease TTL (None: its default).
    """
    text = os.fspath(location)
    if is_postgres_url(text):
        if lease_ttl is None:
            return PostgresStateStore(text)
        return PostgresStateStore(text, lease_ttl=lease_ttl)
    if lease_ttl is None:
        return SQLiteStateStore(text)
    return SQLiteStateStore(text, lease_ttl=lease_ttl)


__all__ = ["open_store"]
