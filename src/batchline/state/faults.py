"""Storage faults as errors that say what happened to which file, and what to do.

A SQLite state file can fill its disk, be read-only, be locked by a writer that stopped,
be damaged, or be somebody else's database. Each becomes a ``StateFileError`` (a
``StateError``) naming the file, the run and the remedy. The remedy never says to move
or delete the file: a WAL database keeps committed batches in its ``-wal`` file until a
checkpoint, and separating the two loses them.
"""

from __future__ import annotations

import os
import sqlite3

from batchline.errors import StateError

_KEEP = (
    "Keep FILE, FILE-wal and FILE-shm together (never move or delete one of them alone: "
    "committed batches may still live in the -wal file)."
)


class StateFileError(StateError):
    """The state file cannot be used as asked; ``reason`` says why.

    ``reason`` is one of ``full``, ``read-only``, ``locked``, ``damaged``, ``foreign``,
    ``unreadable``. Nothing committed before the fault is lost.
    """

    def __init__(self, message: str, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.path, self.reason))


def _run(run_id: str | None) -> str:
    return f" for run {run_id!r}" if run_id else ""


def classify(error: sqlite3.Error) -> str:
    """Which fault a sqlite3 error is (``full``, ``read-only``, ``locked``, ``damaged``...)."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "read-only"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return "damaged"
    if "not a database" in text:
        return "damaged"
    if (
        name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))
        or "unable to open" in text
    ):
        return "unreadable"
    if name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return "io"
    return "other"


def state_error(
    error: sqlite3.Error,
    path: str,
    *,
    doing: str,
    run_id: str | None = None,
    timeout: float | None = None,
) -> StateFileError:
    """A ``StateFileError`` for ``error``, raised while ``doing`` something with ``path``."""
    reason = classify(error)
    if reason in ("unreadable", "io", "other") and _read_only_place(path):
        reason = "read-only"
    elif reason == "io" and _no_room(path):
        reason = "full"  # a write failed for want of space (or of a file-size limit)
    head = (
        f"cannot open state file {path}"
        if doing == "open"
        else f"cannot {doing}{_run(run_id)} in state file {path}"
    )
    keep = _KEEP.replace("FILE", path)
    if reason == "full":
        text = (
            f"{head}: the disk holding it is full ({error}). "
            "Everything committed before is safe. Free some space (or raise the quota or the "
            "file size limit, `ulimit -f`), then resume the same run_id: only the missing "
            "items run. " + keep
        )
    elif reason == "read-only":
        text = (
            f"{head}: the file is read-only ({error}). batchline needs "
            "to write the file and create FILE-wal and FILE-shm beside it. Make the file and "
            "its folder writable (or remount the file system read-write), or point `store=` "
            "at a writable path for a new run. Listing and showing runs works on a read-only "
            "file (`batchline runs --state PATH`). " + keep
        ).replace("FILE", path)
    elif reason == "locked":
        waited = f" for {timeout:g} s" if timeout is not None else ""
        text = (
            f"{head}: the file stayed locked by another process's write "
            f"transaction; batchline waited{waited} for that writer to commit or roll back. "
            f"A stopped (Ctrl-Z, SIGSTOP) or hung process may hold it: find it with "
            f"`fuser {path}` or `lsof {path}`, then resume it (`fg`, `kill -CONT PID`) or "
            "stop it. Pass `timeout=` to SQLiteStateStore to wait longer. " + keep
        )
    elif reason == "damaged":
        text = (
            f"{head}: the file is damaged ({error}). Restore it from a "
            f"backup, or salvage it with `sqlite3 {path} .recover | sqlite3 recovered.db` "
            "and point `store=` at the recovered file. " + keep
        )
    elif reason == "unreadable":
        text = (
            f"{head}: it cannot be opened ({error}). Check the "
            "path, that its folder exists, and the permissions on the file and its folder."
        )
    else:
        text = f"{head}: {error}. " + keep
    return StateFileError(text, path, reason)


def _no_room(path: str) -> bool:
    """Whether writes to ``path`` may fail for space: a nearly full disk or a size limit."""
    try:
        import resource  # noqa: PLC0415 - Unix only

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            return True
    except (ImportError, OSError, ValueError):
        pass
    try:
        stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20


def _read_only_place(path: str) -> bool:
    """Whether the file (or, for a new file, its folder) cannot be written."""
    target = path if os.path.exists(path) else os.path.dirname(path) or "."
    try:
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    folder = os.path.dirname(os.path.abspath(path))
    return not os.access(target, os.W_OK) or not os.access(folder, os.W_OK)


def foreign_file(path: str, tables: list[str]) -> StateFileError:
    """The error for a SQLite file that holds someone else's tables."""
    shown = ", ".join(f"`{name}`" for name in tables[:8])
    more = f" and {len(tables) - 8} more" if len(tables) > 8 else ""
    return StateFileError(
        f"{path} is a SQLite database with other tables ({shown}{more}), not a batchline "
        "state file; batchline will not add its tables to it. Point `store=` (or --state) "
        "at a new file, e.g. .batchline/state.db.",
        path,
        "foreign",
    )


def damaged_row(path: str, run_id: str, batch: int, error: Exception) -> StateFileError:
    """The error for a stored batch whose row cannot be decoded."""
    return StateFileError(
        f"state file {path}: the stored results of batch {batch} of run {run_id!r} are damaged "
        f"({type(error).__name__}: {error}); the other batches are intact. Restore the file "
        "from a backup, or run the input under a new run_id (the damaged batch's items run "
        "again there), or forget this run with `store.delete_run(run_id)` and run it again.",
        path,
        "damaged",
    )


__all__ = ["StateFileError", "classify", "damaged_row", "foreign_file", "state_error"]
