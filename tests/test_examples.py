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
