"""Run every benchmark side by side and write benchmarks/RESULTS.md.

python -m benchmarks            # all
python -m benchmarks engine     # only some: engine, crash, memory
"""

from __future__ import annotations

import importlib
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


def main(argv: list[str]) -> None:
    chosen = argv or SUITES
    rows: list[Row] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        rows.extend(module.run())
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
