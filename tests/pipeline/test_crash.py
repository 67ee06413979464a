"""kill -9 at random moments while the list before the scope changes on every run.

A pipeline scope keyed by item: whatever the kills and however the upstream list
changes, the final result is exactly the final list (nothing lost, nothing duplicated,
removed items dropped), and an item committed by one run is never run again.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = str(Path(__file__).resolve().parents[1] / "cases" / "pipeline_crash_worker.py")
KILLS = 20


def _start(db: Path, log: Path, attempt: int, concurrency: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, str(db), str(log), str(attempt), str(concurrency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 3])
def test_kill_9_with_a_changing_upstream_list_loses_and_repeats_nothing(
    tmp_path: Path, concurrency: int
) -> None:
    rng = random.Random(concurrency)
    db, log = tmp_path / "state.db", tmp_path / "effects.log"
    kills = attempt = 0
    while kills < KILLS:
        attempt += 1
        child = _start(db, log, attempt, concurrency)
        before = len(log.read_text().split()) if log.exists() else 0
        target = before + rng.randint(1, 12)
        while child.poll() is None:
            started = len(log.read_text().split()) if log.exists() else 0
            if started >= target:
                time.sleep(rng.random() * 0.005)
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        child.wait()
        if child.returncode == -signal.SIGKILL:
            kills += 1
        assert attempt < 3 * KILLS, "the kills should land mid-run"
    attempt += 1
    final = _start(db, log, attempt, concurrency)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    items = json.loads(out.split("finished ", 1)[1])

    expected = [i for i in range(240) if i % 6 != attempt % 6]
    random.Random(attempt).shuffle(expected)
    assert [item["id"] for item in items] == expected  # the new list, in its order, once each
    runs: dict[int, list[int]] = {}
    for line in log.read_text().split():
        run, item = map(int, line.split(":"))
        runs.setdefault(item, []).append(run)
    for item in items:
        # The run whose result was kept did run it, and no later run did it again.
        assert item["run_in"] in runs[item["id"]]
        assert max(runs[item["id"]]) == item["run_in"], (item, runs[item["id"]])
