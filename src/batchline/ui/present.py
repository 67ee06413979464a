"""Formatting for the dashboard's pages: numbers, times, JSON, redaction, resume commands.

Pure functions, no I/O: the templates call them as filters.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import time
from collections.abc import Iterable, Mapping
from typing import Any

from batchline.ui.source import RunRow

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_MIN_SECRET = 4
MASK = "***"


def secret_values(
    environ: Mapping[str, str] | None = None, names: Iterable[str] = ()
) -> frozenset[str]:
    """Values of environment variables that hold secrets (by name, or listed in ``names``)."""
    env = os.environ if environ is None else environ
    listed = set(names)
    return frozenset(
        value
        for name, value in env.items()
        if (name in listed or _SECRET_NAME.search(name)) and len(value) >= _MIN_SECRET
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def pretty_json(value: Any) -> str:
    """Indented JSON for display (non-JSON values shown as their repr)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def when(stamp: float | None) -> str:
    """A local date and time, or a dash."""
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 04s``, ``5.2s``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def number(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or a dash."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def money(value: Any) -> str:
    """A cost in dollars with at least four significant digits (``$0.0001234``)."""
    if not isinstance(value, int | float):
        return "-"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = min(12, max(2, 3 - math.floor(math.log10(abs(value)))))
    return f"${value:.{decimals}f}"


def key_text(key: Any) -> str:
    """A key as users typed it: strings bare, numbers as numbers."""
    return key if isinstance(key, str) else json.dumps(key)


def resume_command(run: RunRow, state_path: str) -> str:
    """The exact command (or call) that resumes ``run``."""
    meta = run.meta
    if run.front_door == "workflow":
        workspace = meta.get("workspace")
        command = ["batchline", "resume", run.run_id]
        if isinstance(workspace, str) and workspace:
            command += ["--workspace", workspace]
        return shlex.join(command)
    return (
        f"run the same job again with run_id={run.run_id!r} and "
        f"SQLiteStateStore({state_path!r}): only missing and failed items run"
    )


def usage_of(run: RunRow) -> dict[str, Any]:
    """LLM usage of a run summed with its children's (tokens, cost)."""
    total: dict[str, Any] = {}
    for row in (run, *run.children):
        for name, value in row.usage.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[name] = total.get(name, 0) + value
    return total
