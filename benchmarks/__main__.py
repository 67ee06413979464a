"""Run every benchmark side by side and write benchmarks/RESULTS.md.

python -m benchmarks            # all
python -m benchmarks engine     # only some: engine, crash, memory

Each suite runs in a process of its own, with a time limit
(``BATCHLINE_BENCH_SUITE_SECONDS``, default 900): a suite that hangs (a peer's cluster
that never schedules, say) costs its own rows, not the others'. Each suite's rows are
printed as soon as it ends.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import Row, machine

SUITES = [
    "engine",
    "pipeline",
    "workflow",
    "context",
    "llm",
    "ray_backend",
    "crash",
    "memory",
    "ui",
]
ROWS_MARK = "BATCHLINE-BENCH-ROWS "


def _one(name: str) -> None:
    """Run one suite here and print its rows, marked, on the last line of stdout."""
    rows = importlib.import_module(f"benchmarks.{name}").run()
    print(ROWS_MARK + json.dumps([dataclasses.asdict(r) for r in rows]), flush=True)


def _suite(name: str, limit: float) -> list[Row]:
    """One suite in a process of its own; a row saying so if it fails or runs too long."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--one", name],
        cwd=root, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the suite and what it started (servers, Ray)
        child.communicate()
        return [Row(f"suite `{name}`", "-", "did not finish", f"stopped after {limit:.0f} s")]
    for line in reversed(out.splitlines()):
        if line.startswith(ROWS_MARK):
            return [Row(**row) for row in json.loads(line[len(ROWS_MARK) :])]
    return [Row(f"suite `{name}`", "-", "failed", f"exit code {child.returncode}")]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        _one(argv[1])
        return
    chosen = argv or SUITES
    limit = float(os.environ.get("BATCHLINE_BENCH_SUITE_SECONDS", "900"))
    rows: list[Row] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        found = _suite(name, limit)
        for row in found:
            print(f"  {row.benchmark} | {row.contender} | {row.value} | {row.note}",
                  file=sys.stderr, flush=True)  # fmt: skip
        rows.extend(found)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, all rows in one run (`make bench`).",
        "",
        "| benchmark | contender | result | note |",
        "| --- | --- | --- | --- |",
        *[f"| {r.benchmark} | {r.contender} | {r.value} | {r.note} |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not argv:
        Path(__file__).with_name("RESULTS.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
