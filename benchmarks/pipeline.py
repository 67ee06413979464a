"""Pipeline overhead: a batching scope over the bare engine; a flow over a plain loop."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

from batchline import Batch, SQLiteStateStore, run_batches
from batchline.pipeline import Agent, Pipeline

from .common import Row, best_of, median

N, CHUNK = 100_000, 100
ITEMS = list(range(N))


def _intervals(stamps: list[float]) -> float:
    return median([b - a for a, b in pairwise(stamps)])


def scope_overhead_us() -> tuple[float, float]:
    """Median µs per batch: bare engine, and a one-agent pipeline scope (no-op work)."""
    stamps: list[float] = []
    clock = time.perf_counter

    def engine_noop(batch: Batch[int]) -> list[None]:
        stamps.append(clock())
        return [None] * len(batch.items)

    class Noop(Agent):
        def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
            stamps.append(clock())
            return {}

    Noop.triggers_batching(chunk_size=CHUNK, over="items")
    pipeline = Pipeline(Noop)
    engine, scope = [], []
    for _ in range(5):
        stamps.clear()
        run_batches(ITEMS, engine_noop, chunk_size=CHUNK, key=lambda i: i)
        engine.append(_intervals(stamps))
        stamps.clear()
        pipeline.run({"items": ITEMS})
        scope.append(_intervals(stamps))
    return min(engine) * 1e6, min(scope) * 1e6


def scope_on_sqlite() -> list[Row]:
    """100k items through a one-agent scope committing to SQLite, against the bare engine
    committing the same items to SQLite (best of 3 each, whole run)."""
    label = "pipeline: 100k items, chunks of 100, SQLite state"

    def engine_noop(batch: Batch[int]) -> list[None]:
        return [None] * len(batch.items)

    class Noop(Agent):
        def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
            return {}

    Noop.triggers_batching(chunk_size=CHUNK, over="items", key=None)
    runs = iter(range(1_000))

    def bare() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStateStore(Path(tmp) / "state.db")
            run_batches(ITEMS, engine_noop, chunk_size=CHUNK, store=store, run_id="b")
            store.close()

    def scoped() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStateStore(Path(tmp) / "state.db")
            Pipeline(Noop, store=store, run_id=f"p{next(runs)}").run({"items": ITEMS})
            store.close()

    t_bare, t_scope = best_of(3, bare), best_of(3, scoped)
    return [
        Row(label, "bare engine (run_batches, hash keys)", f"{t_bare:.2f} s"),
        Row(
            label,
            "pipeline batching scope (content keys)",
            f"{t_scope:.2f} s",
            f"{t_scope / t_bare:.2f}x the bare engine; target <= 1.3x",
        ),
    ]


def work(context: Mapping[str, Any], name: str) -> dict[str, Any]:
    """About 20 µs of real work: what a small agent does."""
    return {name: sum(i * i for i in range(300))}


def flow_vs_loop() -> list[Row]:
    agents = []
    for index in range(5):
        name = f"f{index}"
        agents.append(type(f"A{index}", (Agent,), {"run": lambda self, ctx, n=name: work(ctx, n)}))
    flow: Any = agents[0]
    for agent in agents[1:]:
        flow = flow >> agent
    pipeline = Pipeline(flow)
    instances = [agent() for agent in agents]
    runs = 2000

    def plain() -> None:
        for _ in range(runs):
            context: dict[str, Any] = {"query": "x"}
            for instance in instances:
                context.update(instance.run(context))

    def piped() -> None:
        for _ in range(runs):
            pipeline.run({"query": "x"})

    t_plain = best_of(5, plain)
    t_pipe = best_of(5, piped)
    overhead = (t_pipe - t_plain) / runs * 1e6
    return [
        Row(
            "pipeline: 5 agents, no batching (~20 µs work each)",
            "plain loop calling run()",
            f"{t_plain / runs * 1e6:.1f} µs/run",
        ),
        Row(
            "pipeline: 5 agents, no batching (~20 µs work each)",
            "batchline Pipeline.run",
            f"{t_pipe / runs * 1e6:.1f} µs/run",
            f"{t_pipe / t_plain - 1:+.0%} vs plain ({overhead:.1f} µs/run); target <= +20%",
        ),
    ]


def run() -> list[Row]:
    """Every pipeline row."""
    engine, scope = scope_overhead_us()
    return [
        Row(
            "pipeline: per-batch cost, no-op, chunks of 100",
            "bare engine (run_batches)",
            f"{engine:.1f} µs",
        ),
        Row(
            "pipeline: per-batch cost, no-op, chunks of 100",
            "pipeline batching scope",
            f"{scope:.1f} µs",
            f"overhead over the engine {scope - engine:.1f} µs; target < 100 µs",
        ),
        *scope_on_sqlite(),
        *flow_vs_loop(),
    ]
