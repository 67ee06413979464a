"""Crash safety: SIGKILL a durable run at 20 random points, resume, count the damage."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from batchline import SQLiteStateStore

from .common import Row

CASES = Path(__file__).resolve().parent.parent / "tests" / "cases"
ITEMS, CHUNK, CONCURRENCY, KILLS = 5000, 10, 4, 20


def run() -> list[Row]:
    """Kill 20 times, finish, and report lost / duplicated / re-run items."""
    rng = random.Random(20)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "crash.db"
        logs: list[Path] = []
        kills = 0
        while True:
            log = Path(tmp) / f"{len(logs)}.log"
            logs.append(log)
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(CASES / "crash_worker.py"),
                    str(db),
                    "crash",
                    str(ITEMS),
                    str(CHUNK),
                    str(CONCURRENCY),
                    str(log),
                    str(len(logs)),
                    "0.004",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if kills < KILLS:
                target = rng.randint(1, ITEMS // (KILLS + 5))
                while child.poll() is None:
                    if log.exists() and len(log.read_bytes().split()) >= target:
                        time.sleep(rng.random() * 0.01)
                        child.send_signal(signal.SIGKILL)
                        break
                    time.sleep(0.001)
                child.wait()
                if child.returncode == -signal.SIGKILL:
                    kills += 1
                    continue
            child.wait()
            break
        store = SQLiteStateStore(db)
        records = list(store.iter_items("crash"))
        keys = [r.key for r in records]
        lost = ITEMS - len(set(keys))
        duplicated = len(keys) - len(set(keys))
        wrong = sum(1 for r in records if r.result != 2 * r.key)
        started = Counter(k for log in logs if log.exists() for k in set(log.read_text().split()))
        rerun = sum(count - 1 for count in started.values())
    return [
        Row(
            "crash safety: SIGKILL x20, resume",
            "lost / duplicated / wrong results",
            f"{lost} / {duplicated} / {wrong}",
            f"{ITEMS:,} items, must be 0 / 0 / 0",
        ),
        Row(
            "crash safety: SIGKILL x20, resume",
            "items run again",
            f"{rerun} ({rerun / max(kills, 1):.0f} per kill)",
            f"bound: in-flight batches, {2 * CONCURRENCY * CHUNK} per kill",
        ),
    ]
