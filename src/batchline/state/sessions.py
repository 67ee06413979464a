"""A run's history of sessions: each time a process drove it, from when to when, how it ended.

Kept in the run's metadata (``meta["sessions"]``), so every store records it the same
way with no table of its own: ``acquire`` opens a session, ``release`` closes it with
the run's status. A session that was never closed ended with its process (a crash or
``kill -9``); the next ``acquire`` marks it so. Pure functions over plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_SESSIONS = 50  # the first session and the latest ones are kept


def open_session(
    meta: Mapping[str, Any], *, now: float, pid: int, host: str, committed: int
) -> dict[str, Any]:
    """``meta`` with a new session started at ``now`` by ``pid`` on ``host``."""
    sessions = [dict(s) for s in meta.get("sessions", ()) if isinstance(s, Mapping)]
    if sessions and "ended" not in sessions[-1]:
        sessions[-1]["ended"] = None  # its process died holding the lease
        sessions[-1]["status"] = "lost"
    sessions.append({"started": now, "pid": pid, "host": host, "committed": committed})
    if len(sessions) > MAX_SESSIONS:
        sessions = [sessions[0], *sessions[-(MAX_SESSIONS - 1) :]]
    return {**meta, "sessions": sessions}


def close_session(meta: Mapping[str, Any], *, now: float, status: str) -> dict[str, Any]:
    """``meta`` with its latest session ended at ``now`` with ``status``."""
    sessions = [dict(s) for s in meta.get("sessions", ()) if isinstance(s, Mapping)]
    if sessions and "ended" not in sessions[-1]:
        sessions[-1]["ended"] = now
        sessions[-1]["status"] = status
    return {**meta, "sessions": sessions}
