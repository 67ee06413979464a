"""Who holds a run: process identity, liveness, and when a lease may be taken over.

A lease names a process (pid, host, and its start time, so a recycled pid is not
mistaken for the holder) and carries a heartbeat. Another process may take it over
at once when the holder is dead on the same host, otherwise only after the heartbeat
has been silent for ``ttl`` seconds.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from functools import cache

DEFAULT_TTL = 30.0


@dataclass(frozen=True, slots=True)
class Holder:
    """A lease holder as recorded in the store."""

    token: str
    pid: int
    host: str
    started: str | None
    heartbeat_at: float


@cache
def host_name() -> str:
    """This machine's name, as recorded in leases."""
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux clock ticks), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Field 22 (starttime) follows the command name, which may contain spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def new_token() -> str:
    """A fresh lease token."""
    return uuid.uuid4().hex


def is_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` runs on this host and is the same process that took the lease."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is not None:
        current = process_start(pid)
        if current is not None and current != started:
            return False
    return True


def takeover_refusal(holder: Holder, now: float, ttl: float) -> str | None:
    """Why ``holder``'s lease may not be taken over, or None when it may."""
    if holder.host == host_name():
        if holder.pid == os.getpid():
            return "another call in this process is driving it"
        if not is_alive(holder.pid, holder.started):
            return None
        return "that process is alive on this host"
    silent = now - holder.heartbeat_at
    if silent > ttl:
        return None
    return f"its last heartbeat was {silent:.0f}s ago; it may be taken over after {ttl:.0f}s"
