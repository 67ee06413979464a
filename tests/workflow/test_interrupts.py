"""Ctrl-C in a terminal, for real: SIGINT to the whole process group of `batchline run`.

The first signal lets the shell items in flight finish (their commands run in a session
of their own, so the terminal's SIGINT does not kill them) and commits them; the second
kills them and commits nothing of theirs. Each item's side effect happens exactly once
across the interrupted run and its resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from batchline import SQLiteStateStore

ITEMS = 12
WORKFLOW = f"""name: sidefx
settings: {{workspace: ws, max_concurrency: 4}}
steps:
  - name: list
    task: echo
    inputs: {{value: "{{{{ range({ITEMS}) | list }}}}"}}
  - name: work
    task: batch
    inputs:
      items: "{{{{ steps.list.result }}}}"
      chunk_size: 3
      retry: {{max_attempts: 3, delay: 0}}
      task:
        task: shell
        inputs:
          command: >-
            echo {{{{ batch.item }}}} >> started.txt; sleep $(cat nap.txt);
            echo {{{{ batch.item }}}} >> done.txt
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    # A session of its own, like a shell's job: killpg reaches batchline and only it.
    return subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait_lines(path: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_lines(path)) < count:
        assert time.monotonic() < deadline, f"{path.name} never had {count} lines"
        time.sleep(0.01)


def _resume(tmp_path: Path, err: str) -> subprocess.CompletedProcess[str]:
    command = err.split("Resume with: ", 1)[1].strip().splitlines()[0]
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", *command.split()[1:], "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sub_run(tmp_path: Path) -> tuple[str, int, int]:
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    try:
        (info,) = [i for i in store.list_runs() if i.run_id.endswith("/work")]
        return info.status, info.succeeded, info.failed
    finally:
        store.close()


@pytest.mark.slow
def test_ctrl_c_lets_shell_items_finish_and_each_side_effect_happens_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "nap.txt").write_text("0.6")
    child = _cli(tmp_path, "run", "wf.yaml")
    _wait_lines(tmp_path / "started.txt", 4)
    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    told = [line for line in err.splitlines() if "SIGINT received" in line]
    assert len(told) == 1, err
    started, done = _lines(tmp_path / "started.txt"), _lines(tmp_path / "done.txt")
    assert sorted(started) == sorted(done), "every command in flight finished"
    assert 0 < len(done) < ITEMS
    status, succeeded, failed = _sub_run(tmp_path)
    assert (succeeded, failed) == (len(done), 0)  # committed, nothing failed
    assert status == "interrupted"

    (tmp_path / "nap.txt").write_text("0")
    resumed = _resume(tmp_path, err)
    assert resumed.returncode == 0, resumed.stderr
    stats = json.loads(resumed.stdout)["steps"]["work"]["result"]["stats"]
    assert (stats["resumed"], stats["processed"], stats["failed"]) == (len(done), ITEMS, 0)
    counts = Counter(_lines(tmp_path / "done.txt"))
    assert counts == Counter(str(i) for i in range(ITEMS))  # exactly once each


@pytest.mark.slow
def test_second_ctrl_c_kills_the_shell_items_and_commits_nothing_of_theirs(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    # A sleep length of this test's own, so that pgrep below cannot see another process's
    # commands (the suite may run twice on this machine at once).
    nap = f"299.{os.getpid() % 100_000:05d}"
    (tmp_path / "nap.txt").write_text(nap)
    child = _cli(tmp_path, "run", "wf.yaml")
    _wait_lines(tmp_path / "started.txt", 4)
    os.killpg(child.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while "SIGINT received" not in child.stderr.readline():  # type: ignore[union-attr]
        assert time.monotonic() < deadline
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=20)  # the commands would sleep 299 s
    assert child.returncode == 130, err
    assert _lines(tmp_path / "done.txt") == []
    in_flight = _lines(tmp_path / "started.txt")
    assert len(in_flight) == 4  # nothing started after the first signal
    status, succeeded, failed = _sub_run(tmp_path)
    assert (status, succeeded, failed) == ("interrupted", 0, 0)
    # The killed commands' process groups are gone.
    assert subprocess.run(["pgrep", "-f", f"sleep {nap}"], check=False).returncode == 1

    (tmp_path / "nap.txt").write_text("0")
    resumed = _resume(tmp_path, err)
    assert resumed.returncode == 0, resumed.stderr
    counts = Counter(_lines(tmp_path / "done.txt"))
    assert counts == Counter(str(i) for i in range(ITEMS))
