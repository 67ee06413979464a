"""Streaming keeps memory bounded by the batches in flight, not by the input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).resolve().parents[1] / "cases" / "stream_memory.py")


@pytest.mark.slow
def test_streaming_a_million_generated_items_stays_under_100_mb(python: str) -> None:
    done = subprocess.run(
        [python, SCRIPT, "1000000", "1000"], capture_output=True, text=True, check=True, timeout=300
    )
    growth_mb = float(done.stdout.strip())
    assert growth_mb < 100, growth_mb


@pytest.mark.slow
def test_streaming_into_sqlite_stays_bounded_too(python: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [python, SCRIPT, "300000", "500", "sqlite", str(tmp_path / "m.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert float(done.stdout.strip()) < 100
