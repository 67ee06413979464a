"""batchline's main demo: enrich 12,000 companies, get interrupted half-way, resume.

    python examples/demo.py            # the whole story (what `make demo` runs)
    python examples/demo.py --worker   # just the enrichment run (resumes if interrupted)

The run reads examples/data/companies.csv, scores every company in batches of 100 on
4 threads, and commits each batch to a SQLite state file. The demo starts it as a
child process, sends it Ctrl-C (SIGINT) once about half of the items are done, shows
the message the run prints, and then resumes it: only the missing items run again.
"""

from __future__ import annotations

import argparse
import csv
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batchline import Batch, RetryPolicy, RunInterrupted, SQLiteStateStore, run_batches

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "companies.csv"
RUN_ID = "companies-demo"


def load(path: Path) -> list[dict[str, Any]]:
    """The input records: one dict per CSV row."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def enrich(batch: Batch[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score a batch of companies (a stand-in for an LLM or API call: ~20 ms a batch)."""
    time.sleep(0.02)
    results = []
    for company in batch.items:
        employees = int(company["employees"])
        revenue = float(company["revenue_musd"])
        age = 2026 - int(company["founded"])
        score = min(100.0, 12 * math.log1p(employees) + 9 * math.log1p(revenue) + age / 5)
        results.append(
            {
                "segment": "enterprise"
                if employees >= 500
                else "smb"
                if employees >= 25
                else "startup",
                "score": round(score, 1),
                "revenue_per_employee_kusd": round(1000 * revenue / employees, 1),
            }
        )
    return results


def run(state: Path, progress: bool | None) -> None:
    """The enrichment run itself; the same command resumes it after an interruption."""
    companies = load(DATA)
    result = run_batches(
        companies,
        enrich,
        chunk_size=100,
        key="id",
        store=SQLiteStateStore(state),
        run_id=RUN_ID,
        max_concurrency=4,
        retry=RetryPolicy(max_attempts=3, backoff=0.2),
        progress=progress,
    )
    top = max((r for r in result.results if r is not None), key=lambda r: r["score"], default=None)
    print(
        f"run {result.run_id!r}: {result.stats.succeeded:,} enriched, {result.stats.failed} "
        f"failed, {result.stats.resumed:,} resumed from state, {result.stats.batches} batches "
        f"in {result.stats.duration:.1f}s; best score {top['score'] if top else '-'}"
    )


def story(state: Path) -> None:
    """Start the run, interrupt it half-way with Ctrl-C, then resume it."""
    if state.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
    total = len(load(DATA))
    print(f"1. enriching {total:,} companies from {DATA.relative_to(HERE.parent)} ...")
    child = subprocess.Popen(  # noqa: S603 - runs this very file
        [sys.executable, __file__, "--worker", "--state", str(state), "--no-progress"],
        stderr=subprocess.PIPE,
        text=True,
    )
    store = None
    while child.poll() is None:
        time.sleep(0.05)
        if store is None and state.exists():
            store = SQLiteStateStore(state)
        if store is not None and any(r.run_id == RUN_ID for r in store.list_runs()):
            done = store.get_run(RUN_ID).succeeded
            if done >= total // 2:
                print(f"2. {done:,} of {total:,} done: pressing Ctrl-C (SIGINT) on purpose")
                child.send_signal(signal.SIGINT)
                break
    _, err = child.communicate()
    message = [line for line in err.splitlines() if "interrupted by" in line]
    print("   the run said:", message[-1].split(": ", 1)[-1] if message else err.strip())
    assert store is not None
    info = store.get_run(RUN_ID)
    print(f"   state: {info.status}, {info.succeeded:,} committed, nothing lost")
    print("3. resuming the same run (same store, same run_id): only the missing items run")
    run(state, progress=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="run (or resume) the enrichment")
    parser.add_argument("--state", type=Path, default=Path("demo-out/state.db"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.worker:
        try:
            run(args.state, progress=False if args.no_progress else None)
        except RunInterrupted as exc:
            print(f"RunInterrupted: {exc}", file=sys.stderr)
            sys.exit(130)
        return
    story(args.state)


if __name__ == "__main__":
    main()
