"""State files with real runs in them, written by batchline itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from batchline import RetryPolicy, SQLiteStateStore, TerminalError, run_batches
from batchline.engine import ItemFailed

SECRET = "sk-test-0123456789abcdef"  # noqa: S105 - a fake key the dashboard must redact


def engine_run(path: Path, run_id: str = "enrich-nov", n: int = 300) -> None:
    """A run with 300 items: items divisible by 7 fail (ValueError), by 11 fail (KeyError)."""

    def work(batch: Any) -> list[Any]:
        out: list[Any] = []
        for item in batch.items:
            if item["id"] % 7 == 0:
                out.append(ItemFailed(ValueError(f"no website for company {item['id']}")))
            elif item["id"] % 11 == 0:
                out.append(ItemFailed(KeyError(f"missing field in {item['id']} key={SECRET}")))
            else:
                out.append({"id": item["id"], "tier": "A" if item["id"] % 2 else "B"})
        return out

    with SQLiteStateStore(path) as store:
        run_batches(
            [{"id": i} for i in range(n)],
            work,
            chunk_size=20,
            key="id",
            store=store,
            run_id=run_id,
            retry=RetryPolicy(max_attempts=1),
        )


def failing_batches(path: Path, run_id: str = "flaky") -> None:
    """A run whose every third batch fails as a whole with a TerminalError."""

    def work(batch: Any) -> list[Any]:
        if batch.number % 3 == 0:
            raise TerminalError(f"upstream refused batch {batch.number}")
        return [item * 2 for item in batch.items]

    with SQLiteStateStore(path) as store:
        run_batches(list(range(100)), work, chunk_size=10, store=store, run_id=run_id)


WORKFLOW = textwrap.dedent(
    """
    name: tag-files
    steps:
      - name: numbers
        task: python
        inputs:
          code: "result = list(range(30))"
      - name: tag
        task: batch
        inputs:
          items: "{{ steps.numbers.result }}"
          chunk_size: 5
          task:
            task: python
            inputs:
              code: |
                if batch.item % 9 == 4:
                    raise ValueError("cannot tag item")
                result = {"n": batch.item, "tag": "even" if batch.item % 2 == 0 else "odd"}
    """
)


def workflow_run(folder: Path) -> Path:
    """Run a small workflow through the real CLI; return its workspace's state file."""
    folder.mkdir(parents=True, exist_ok=True)
    wf = folder / "tag.yaml"
    wf.write_text(WORKFLOW)
    workspace = folder / "ws"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchline.cli",
            "run",
            str(wf),
            "--workspace",
            str(workspace),
            "--quiet",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    state = workspace / "state.db"
    assert state.exists(), done.stderr
    return state
