"""Crash safety in every front door: SIGKILL 20 times at random moments, resume, count.

The engine directly (tests/engine/test_crash.py has more engine cases), a workflow batch
step driven through the `batchline` CLI, and a pipeline scope: 0 items lost, 0
duplicated in the output, every result right, and only the work in flight at each kill
run again.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from batchline import SQLiteStateStore

KILLS = 20
CASES = Path(__file__).resolve().parent / "cases"


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _kill_20_times(
    start: Callable[[], subprocess.Popen[str]], log: Path, total: int, seed: int
) -> tuple[subprocess.Popen[str], int]:
    """Start, SIGKILL at a random point of progress, again, 20 times; then let it finish."""
    rng = random.Random(seed)
    kills = 0
    while True:
        child = start()
        if kills == KILLS:
            return child, kills
        before = len(_lines(log))
        target = before + rng.randint(1, max(2, total // (KILLS * 2)))
        while child.poll() is None and len(_lines(log)) < target:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.returncode == -signal.SIGKILL:
            kills += 1
        else:  # finished before the kill landed: nothing left to kill
            return child, kills


WORKFLOW = """name: crashy
settings: {{workspace: ws, max_concurrency: 4}}
steps:
  - name: work
    task: batch
    inputs:
      items: "{{{{ range({items}) | list }}}}"
      chunk_size: 3
      task:
        task: python
        inputs:
          code: |
            import time
            with open("started.log", "a") as log:
                log.write(f"{{batch['item']}}\\n")
            time.sleep(0.005)
            result = batch['item'] * 2
"""


@pytest.mark.slow
def test_workflow_batch_step_survives_20_kills(tmp_path: Path) -> None:
    items = 240
    (tmp_path / "wf.yaml").write_text(WORKFLOW.format(items=items))
    log = tmp_path / "started.log"

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchline.cli",
                "run",
                "wf.yaml",
                "--resume",
                "-q",
                "--format",
                "json",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    last, kills = _kill_20_times(start, log, items, seed=10)
    assert kills == KILLS
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    result = json.loads(out)
    stats = result["steps"]["work"]["result"]["stats"]
    assert result["steps"]["work"]["result"]["results"] == [2 * i for i in range(items)]
    assert (stats["processed"], stats["failed"]) == (items, 0)
    store = SQLiteStateStore(tmp_path / "ws" / "state.db", read_only=True)
    runs = [info.run_id for info in store.list_runs()]
    assert len(runs) == 2, runs  # one workflow run (resumed 20 times) and its batch step
    (sub_run,) = [r for r in runs if r.endswith("/work")]
    records = list(store.iter_items(sub_run))
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)) == items  # 0 lost, 0 duplicated
    assert all(r.status == "done" and r.result[0] == 2 * r.position for r in records)
    started = Counter(_lines(log))
    assert set(started) == {str(i) for i in range(items)}
    # Only items in flight at a kill ran again: 4 chunks of 3 at most, per kill.
    assert sum(started.values()) - items <= KILLS * 4 * 3


@pytest.mark.slow
def test_pipeline_scope_survives_20_kills(tmp_path: Path) -> None:
    items = 300
    db, log = tmp_path / "p.db", tmp_path / "started.log"

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                str(CASES / "scope_crash_worker.py"),
                str(db),
                str(log),
                str(items),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    last, kills = _kill_20_times(start, log, items, seed=11)
    assert kills == KILLS
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    output = json.loads(out)
    assert output["ids"] == [2 * i for i in range(items)]  # 0 lost, 0 duplicated, in order
    assert output["seen"] == list(range(items))
    store = SQLiteStateStore(db, read_only=True)
    (scope_run,) = [i.run_id for i in store.list_runs() if "/scope-" in i.run_id]
    keys = [r.key for r in store.iter_items(scope_run)]
    assert len(keys) == len(set(keys)) == items
    started = Counter(_lines(log))
    assert set(started) == {str(i) for i in range(items)}
    assert sum(started.values()) - items <= KILLS * 2 * 3 * 3


@pytest.mark.slow
def test_engine_survives_20_kills(tmp_path: Path) -> None:
    items, chunk, concurrency = 8000, 10, 4
    db, log = tmp_path / "e.db", tmp_path / "started.log"

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                str(CASES / "crash_worker.py"),
                str(db),
                "crash",
                str(items),
                str(chunk),
                str(concurrency),
                str(log),
                "7",
                "0.004",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    last, kills = _kill_20_times(start, log, items, seed=12)
    assert kills == KILLS
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    assert out.strip() == f"finished {items}"
    store = SQLiteStateStore(db, read_only=True)
    records = list(store.iter_items("crash"))
    assert [r.key for r in records] == list(range(items))  # 0 lost, 0 duplicated
    assert all(r.status == "done" and r.result == 2 * r.key for r in records)
    started = Counter(_lines(log))
    assert sum(started.values()) - items <= KILLS * 2 * concurrency * chunk
