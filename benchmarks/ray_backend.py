"""Ray backend: a CPU-bound batch function on 1 and 2 Ray workers vs the local backend."""

from __future__ import annotations

import time
from typing import Any

from batchline import Batch, run_batches

from .common import Row

ITEMS, CHUNK = 400, 20


def burn(batch: Batch[int]) -> list[int]:
    """About 5 ms of pure-Python work per item (threads cannot run it in parallel)."""
    out = []
    for item in batch.items:
        total = 0
        for i in range(60_000):
            total += (i * item) % 7
        out.append(total)
    return out


def _rate(**options: Any) -> float:
    start = time.perf_counter()
    result = run_batches(range(ITEMS), burn, chunk_size=CHUNK, **options)
    assert result.ok
    return ITEMS / (time.perf_counter() - start)


def run() -> list[Row]:
    """Items/s locally (1 and 2 threads) and on Ray (1 and 2 workers)."""
    label = f"Ray: CPU-bound batches ({ITEMS} items x ~5 ms, chunks of {CHUNK})"
    rows = [
        Row(label, "local backend, 1 thread", f"{_rate():,.0f} items/s"),
        Row(
            label,
            "local backend, 2 threads",
            f"{_rate(max_concurrency=2):,.0f} items/s",
            "the GIL: no faster",
        ),
    ]
    try:
        import ray
    except ImportError:
        rows.append(Row(label, "Ray", "not installed", 'pip install "batchline[ray]"'))
        return rows
    from batchline.backends import RayBackend

    backend = RayBackend(num_cpus=2)
    backend.ensure_started()
    try:
        _rate(backend=backend, max_concurrency=2)  # warm the workers
        for workers in (1, 2):
            rate = _rate(backend=backend, max_concurrency=workers)
            rows.append(
                Row(
                    label,
                    f"Ray backend, {workers} worker(s)",
                    f"{rate:,.0f} items/s",
                    "driver commits every batch",
                )
            )
    finally:
        ray.shutdown()
    return rows
