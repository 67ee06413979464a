"""The `batchline` command over a real state file, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchline import Batch, RetryPolicy, SQLiteStateStore, run_batches


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    store = SQLiteStateStore(path)

    def fn(batch: Batch[dict[str, Any]]) -> list[int]:
        if batch.number == 2:
            raise ValueError("bad row")
        return [item["n"] * 10 for item in batch.items]

    items = [{"id": f"k{i}", "n": i} for i in range(6)]
    run_batches(
        items,
        fn,
        chunk_size=2,
        key="id",
        store=store,
        run_id="nightly",
        retry=RetryPolicy(max_attempts=1),
    )
    run_batches(items[:2], fn, chunk_size=2, key="id", store=store, run_id="small")
    store.close()
    return path


def test_runs_lists_runs_with_counts(state: Path) -> None:
    done = cli("runs", "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert "nightly" in done.stdout
    assert "small" in done.stdout
    listed = json.loads(cli("runs", "--state", str(state), "--json").stdout)
    by_id = {run["run_id"]: run for run in listed}
    assert by_id["nightly"]["succeeded"] == 4
    assert by_id["nightly"]["failed"] == 2
    assert by_id["nightly"]["status"] == "failed"
    assert by_id["small"]["status"] == "completed"


def test_show_run_and_failed_items(state: Path) -> None:
    done = cli("show", "nightly", "--state", str(state))
    assert done.returncode == 0
    assert "failed" in done.stdout
    assert "--failed" in done.stdout
    failed = cli("show", "nightly", "--state", str(state), "--failed")
    assert "'k2'" in failed.stdout
    assert "ValueError: bad row" in failed.stdout
    data = json.loads(cli("show", "nightly", "--state", str(state), "--json", "--items").stdout)
    assert [item["result"] for item in data["items"]] == [0, 10, None, None, 40, 50]


def test_unknown_run_and_missing_state_are_clear(state: Path, tmp_path: Path) -> None:
    unknown = cli("show", "nope", "--state", str(state))
    assert unknown.returncode == 1
    assert "no run 'nope'" in unknown.stderr
    assert "nightly" in unknown.stderr
    missing = cli("runs", "--state", str(tmp_path / "absent.db"))
    assert missing.returncode == 1
    assert "no state file" in missing.stderr
    assert "--state" in missing.stderr
