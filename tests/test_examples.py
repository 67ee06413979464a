"""The examples in examples/ run as the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_is_interrupted_and_resumes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--state", str(tmp_path / "demo.db")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "pressing Ctrl-C (SIGINT) on purpose" in out
    assert "interrupted by SIGINT" in out
    assert "Resume with the same store" in out
    assert "12,000 enriched, 0 failed" in out
    resumed = int(out.split(" resumed from state")[0].rsplit(", ", 1)[-1].replace(",", ""))
    assert 6000 <= resumed < 12000


def test_prospects_pipeline_runs_and_resumes(tmp_path: Path) -> None:
    state = tmp_path / "prospects.db"
    command = [
        sys.executable,
        str(EXAMPLES / "prospects.py"),
        "fintech in Berlin",
        "--state",
        str(state),
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "103 prospects for 'fintech in Berlin'" in first.stdout
    assert "3 batches, 103 companies enriched, 0 resumed, 0 failed batches" in first.stdout
    assert "batch 3/3" in first.stderr
    again = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert "103 resumed" in again.stdout
    assert first.stdout.splitlines()[:6] == again.stdout.splitlines()[:6]
