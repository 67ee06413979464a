"""Memory: peak RSS growth while streaming 1,000,000 generated items."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from .common import Row

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "cases" / "stream_memory.py"


def run() -> list[Row]:
    """Stream a million items with the memory store and with SQLite."""
    rows = []
    memory = subprocess.run(
        [sys.executable, str(SCRIPT), "1000000", "1000"], capture_output=True, text=True, check=True
    )
    rows.append(
        Row(
            "memory: stream 1,000,000 items",
            "batchline, memory store",
            f"+{float(memory.stdout):.0f} MB peak RSS",
            "target < 100 MB",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        durable = subprocess.run(
            [sys.executable, str(SCRIPT), "1000000", "1000", "sqlite", str(Path(tmp) / "m.db")],
            capture_output=True,
            text=True,
            check=True,
        )
    rows.append(
        Row(
            "memory: stream 1,000,000 items",
            "batchline, SQLite store",
            f"+{float(durable.stdout):.0f} MB peak RSS",
            "target < 100 MB",
        )
    )
    return rows
