"""Where workflow runs keep their state, so ``batchline resume RUN_ID`` works from any folder.

``batchline run`` appends the absolute path of the SQLite state file it used to a small
list in the user's state folder (``$XDG_STATE_HOME/batchline/state-files``, by default
``~/.local/state/batchline/state-files``; ``BATCHLINE_REGISTRY`` names another file, and an
empty value turns the list off). ``batchline resume`` looks for the run in the state files
near the current folder first, then in that list. Only paths are written; a list that
cannot be written (a read-only home) is silently skipped: it is a convenience, never needed
for correctness.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_FILE = "state.db"
_MAX_ENTRIES = 500


def registry_path() -> Path | None:
    """The list's file, or None when ``BATCHLINE_REGISTRY`` is set empty."""
    given = os.environ.get("BATCHLINE_REGISTRY")
    if given is not None:
        return Path(given).expanduser() if given else None
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "batchline" / "state-files"


def remember_state_file(path: str | Path) -> None:
    """Add ``path`` (a SQLite state file) to the list; older duplicates and files that no
    longer exist are dropped, and the list keeps the latest 500."""
    target = registry_path()
    if target is None:
        return
    entry = str(Path(path).resolve())
    try:
        known = target.read_text(encoding="utf-8").splitlines() if target.exists() else []
        kept = [line for line in known if line and line != entry and Path(line).exists()]
        kept = [*kept, entry][-_MAX_ENTRIES:]
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        temporary.write_text("\n".join(kept) + "\n", encoding="utf-8")
        temporary.replace(target)
    except OSError:
        return


def candidate_state_files(start: Path | None = None) -> list[Path]:
    """State files a run may be in, nearest first: ``.batchline/state.db`` and
    ``*/state.db`` in ``start`` (the current folder), ``.batchline/state.db`` in each parent
    folder, ``*/.batchline/state.db`` one level down, then the remembered list (latest
    first). Only files that exist are returned, each once."""
    here = (start or Path.cwd()).resolve()
    found: list[Path] = [here / ".batchline" / STATE_FILE]
    found += sorted(here.glob(f"*/{STATE_FILE}"))
    found += sorted(here.glob(f"*/.batchline/{STATE_FILE}"))
    found += [parent / ".batchline" / STATE_FILE for parent in here.parents]
    target = registry_path()
    if target is not None and target.exists():
        try:
            lines = target.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        found += [Path(line) for line in reversed(lines) if line]
    unique: list[Path] = []
    for path in found:
        if path.is_file() and path.resolve() not in unique:
            unique.append(path.resolve())
    return unique


__all__ = ["candidate_state_files", "registry_path", "remember_state_file"]
