"""Path confinement: with ``settings.confine_paths`` (or ``--confine-paths``), file tasks,
template files and outputs, and a shell step's ``cwd`` stay inside the workflow's base
directory and workspace.

A path is resolved the way the operating system will (``..`` collapsed, symlinks
followed, for the parts that exist) and must land inside one of the allowed folders:
``../../etc/passwd``, ``/etc/passwd`` and a symlink pointing out are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from batchline.workflow.errors import TaskError

__all__ = ["confine"]


def confine(path: Path, roots: Iterable[Path], *, step: str, given: object, task: str) -> Path:
    """``path`` if it resolves inside one of ``roots``, else a ``TaskError``."""
    real = Path(os.path.realpath(path))
    allowed = [Path(os.path.realpath(root)) for root in roots]
    if any(real == root or real.is_relative_to(root) for root in allowed):
        return path
    shown = " and ".join(str(root) for root in allowed)
    raise TaskError(
        f"step `{step}`: the path `{given}` resolves to {real}, outside the workflow's folders "
        f"({shown}); settings.confine_paths is on, so paths must stay inside them (no `..`, "
        "no absolute path elsewhere, no symlink out). Use a path inside, or turn "
        "confine_paths off for a trusted workflow",
        task,
    )
