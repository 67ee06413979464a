"""Crash safety with real processes: SIGKILL at random moments, SIGTERM and SIGINT."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from batchline import SQLiteStateStore, run_batches

WORKER = str(Path(__file__).resolve().parents[1] / "cases" / "crash_worker.py")
ITEMS, CHUNK = 3000, 10


def _start(
    python: str, db: Path, log: Path, *, seed: int, concurrency: int, sleep: float = 0.004
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            python,
            WORKER,
            str(db),
            "crash",
            str(ITEMS),
            str(CHUNK),
            str(concurrency),
            str(log),
            str(seed),
            str(sleep),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "concurrency"), [(1, 1), (2, 4), (3, 8)])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, python: str, seed: int, concurrency: int
) -> None:
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    logs: list[Path] = []
    kills = 0
    while True:
        log = tmp_path / f"attempt{len(logs)}.log"
        logs.append(log)
        child = _start(python, db, log, seed=seed * 100 + len(logs), concurrency=concurrency)
        # Kill after a random number of started items, while batches are in flight.
        target = rng.randint(1, ITEMS // 5) if kills < 4 else None
        while target is not None and child.poll() is None:
            started = len(log.read_text().split()) if log.exists() else 0
            if started >= target:
                time.sleep(rng.random() * 0.01)
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        if target is not None:
            child.wait()
            if child.returncode == -signal.SIGKILL:
                kills += 1
                continue
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.strip().startswith("finished")
        break
    assert kills == 4, "every random kill should land mid-run"

    # Zero lost and zero duplicated results: every item once, with its right result.
    store = SQLiteStateStore(db)
    records = list(store.iter_items("crash"))
    assert [r.key for r in records] == list(range(ITEMS))
    assert all(r.status == "done" and r.result == 2 * r.key for r in records)
    info = store.get_run("crash")
    assert (info.succeeded, info.failed, info.status) == (ITEMS, 0, "completed")
    result = run_batches(
        [{"id": i} for i in range(ITEMS)],
        lambda b: 1 / 0,
        key="id",
        chunk_size=CHUNK,
        store=store,
        run_id="crash",
    )
    assert result.ok
    assert result.stats.resumed == ITEMS
    assert result.results == [2 * i for i in range(ITEMS)]

    # Re-run only what was in flight at each kill: at most 2 x max_concurrency batches.
    later: Counter[str] = Counter()
    for log in reversed(logs):
        started = log.read_text().split() if log.exists() else []
        rerun = sum(1 for key in set(started) if later[key])
        assert rerun <= 2 * concurrency * CHUNK, (log.name, rerun)
        later.update(set(started))
    total_started = sum(later.values())
    assert total_started - ITEMS <= kills * 2 * concurrency * CHUNK


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_gracefully_and_say_how_to_resume(
    tmp_path: Path, python: str, signum: int
) -> None:
    db = tmp_path / "graceful.db"
    log = tmp_path / "graceful.log"
    child = _start(python, db, log, seed=5, concurrency=2, sleep=0.05)
    deadline = time.monotonic() + 30
    while (not log.exists() or len(log.read_text().split()) < 60) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signum)
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0
    assert "RunInterrupted" in err
    assert "interrupted by" in err
    assert signal.Signals(signum).name in err
    assert "Resume with the same store and run_id='crash'" in err
    assert str(db) in err

    store = SQLiteStateStore(db)
    info = store.get_run("crash")
    assert info.status == "interrupted"
    assert info.active_pid is None  # the lease was released
    started = log.read_text().split()
    # In-flight batches finished and were committed: nothing started was lost.
    assert info.succeeded == len(started)
    assert 0 < info.succeeded < ITEMS

    finished = _start(python, db, tmp_path / "resume.log", seed=6, concurrency=4, sleep=0)
    _, err = finished.communicate(timeout=60)
    assert finished.returncode == 0, err
    resumed = (tmp_path / "resume.log").read_text().split()
    assert len(resumed) == ITEMS - len(started)
    assert not set(resumed) & set(started)
