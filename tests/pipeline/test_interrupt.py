"""Ctrl-C and SIGTERM stop a pipeline with a ``RunInterrupted`` naming the user's run_id.

Real processes, real signals: the pipeline runs in a subprocess, the test sends the
signal once a batch is committed, then resumes and checks that every item's side
effect happened exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CASE = Path(__file__).resolve().parent.parent / "cases" / "pipeline_interrupt.py"


def start(tmp_path: Path, concurrency: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(CASE),
            str(tmp_path / "state.db"),
            "prospects-nov",
            str(tmp_path / "effects.log"),
            str(concurrency),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("signum", "concurrency", "branch"),
    [(signal.SIGINT, 1, ""), (signal.SIGTERM, 2, ""), (signal.SIGINT, 2, "1")],
)
def test_signal_interrupts_a_pipeline_and_the_resume_runs_each_item_once(
    tmp_path: Path, signum: int, concurrency: int, branch: str
) -> None:
    # branch: the scope runs inside a parallel branch (off the main thread).
    process = start(tmp_path, concurrency, IN_BRANCH=branch)
    assert process.stdout is not None
    first_line = process.stdout.readline()  # the first committed batch
    assert first_line.startswith("batch "), first_line
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (first_line, out, err)
    line = next(line for line in out.splitlines() if line.startswith("INTERRUPTED"))
    assert line.startswith("INTERRUPTED PipelineInterrupted: pipeline run 'prospects-nov'")
    assert signal.Signals(signum).name in line
    assert "run_id='prospects-nov' to resume" in line
    assert "prospects-nov/scope" not in line  # the user's run id, not an internal one
    assert "PipelineBatchError" not in out + err
    assert "failed batch" not in line
    assert "StopRun" not in out

    started = (tmp_path / "effects.log").read_text().split()
    assert len(started) < 12  # no new batch started after the signal
    resumed = start(tmp_path, concurrency, IN_BRANCH=branch)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert f"DONE {list(range(12))} 12 ok=True".replace(" ", "") in out.replace(" ", "")
    effects = (tmp_path / "effects.log").read_text().split()
    assert sorted(map(int, effects)) == list(range(12))  # each side effect exactly once


def test_a_signal_between_scopes_lets_the_step_finish_and_starts_nothing_new(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, 1, SLOW_DISCOVER="1")
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "discovering"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert "interrupted by SIGINT after 0 items; it stopped during agent `Discover`" in out
    assert "batch 1 done" not in out
    assert not (tmp_path / "effects.log").exists()  # the scope never started
    assert "the pipeline finishes the step in flight" in err  # one line, no logging set up
