"""batchline on Ray vs Ray Data vs plain Ray tasks, on the same local two-node cluster.

A head and a second node (one CPU each, 80 MB object stores) are started for the run.
The work is CPU-bound pure Python (~5 ms an item), so threads cannot help and two nodes
can at best double one. batchline also commits every batch to SQLite (it could resume);
Ray Data and plain tasks keep nothing. Then the driver's memory over many batches:
batchline on Ray keeps only the batches in flight referenced.

python -m benchmarks ray_backend
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from batchline import Batch, SQLiteStateStore, run_batches, stream_batches

from .common import Row

ITEMS, CHUNK = 400, 20
LABEL = f"Ray, 2-node local cluster: CPU-bound ({ITEMS} items x ~5 ms, batches of {CHUNK})"
MEMORY = "Ray: driver memory over a run"


def _burn_one(item: int) -> int:
    total = 0
    for i in range(60_000):
        total += (i * item) % 7
    return total


def burn(batch: Batch[int]) -> list[int]:
    """About 5 ms of pure-Python work per item."""
    return [_burn_one(item) for item in batch.items]


def _burn_list(items: list[int]) -> list[int]:
    return [_burn_one(item) for item in items]


def _burn_frame(frame: dict[str, Any]) -> dict[str, Any]:
    return {"out": [_burn_one(int(item)) for item in frame["id"]]}


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return ITEMS / (time.perf_counter() - start)


def _plain_tasks(ray: Any) -> None:
    remote = ray.remote(num_cpus=1)(_burn_list)
    chunks = [list(range(i, min(i + CHUNK, ITEMS))) for i in range(0, ITEMS, CHUNK)]
    pending: list[Any] = []
    results: list[Any] = []
    for chunk in chunks:  # at most 2 in flight, as batchline's max_concurrency=2
        if len(pending) == 2:
            done, pending = ray.wait(pending, num_returns=1)
            results += ray.get(done)
        pending.append(remote.remote(chunk))
    results += ray.get(pending)
    assert sum(len(r) for r in results) == ITEMS


def _ray_data(ray: Any) -> None:
    dataset = ray.data.range(ITEMS).map_batches(
        _burn_frame, batch_size=CHUNK, batch_format="numpy", num_cpus=1
    )
    assert dataset.count() == ITEMS


def _batchline(backend: Any, folder: Path, run: int) -> None:
    store = SQLiteStateStore(folder / f"bench-{run}.db")
    result = run_batches(
        range(ITEMS), burn, chunk_size=CHUNK, max_concurrency=2, backend=backend, store=store
    )
    assert result.ok
    store.close()


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _store_mb(ray: Any) -> float:
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    found = re.search(r"Plasma memory usage (\d+) MiB", text)
    return float(found.group(1)) if found else float("nan")


def megabyte(batch: Batch[int]) -> list[str]:
    return ["x" * (2**20 // len(batch.items))] * len(batch.items)


def tiny(batch: Batch[int]) -> list[int]:
    return list(batch.items)


def _memory_rows(ray: Any, backend: Any) -> list[Row]:
    rows = []
    samples = [_store_mb(ray)]
    stream = stream_batches(range(160), megabyte, chunk_size=2, max_concurrency=2, backend=backend)
    for number, _ in enumerate(stream, 1):
        if number % 10 == 0:
            samples.append(_store_mb(ray))
    rows.append(
        Row(
            MEMORY,
            "object store, 80 batches of 1 MB (every 10 batches)",
            " / ".join(f"{mb:.0f}" for mb in samples) + " MiB",
            "Ray frees released results lazily: bounded, falls back (before: grew 28 -> 83 MiB)",
        )
    )
    run_batches(range(200), tiny, chunk_size=1, max_concurrency=2, backend=backend)  # warm
    before = _rss_mb()
    for _ in stream_batches(range(2000), tiny, chunk_size=1, max_concurrency=2, backend=backend):
        pass
    rows.append(
        Row(
            MEMORY,
            "driver RSS, 2,000 small batches",
            f"{_rss_mb() - before:+.0f} MB",
            "before: +120 MB (every task handle kept)",
        )
    )
    return rows


def run() -> list[Row]:
    """Items/s for plain Ray tasks, Ray Data and batchline on one cluster; driver memory."""
    try:
        import ray
    except ImportError:
        return [Row(LABEL, "Ray", "not installed", 'pip install "batchline[ray]"')]
    from batchline.backends import RayBackend
    from batchline.testing.ray_cluster import LocalRayCluster

    local = _timed(lambda: run_batches(range(ITEMS), burn, chunk_size=CHUNK))
    rows = [Row(LABEL, "local backend, 1 thread (no Ray)", f"{local:,.0f} items/s")]
    with LocalRayCluster(extra_nodes=1) as cluster, tempfile.TemporaryDirectory() as tmp:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        backend = RayBackend(cluster.address)
        backend.ensure_started()
        try:
            while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
                time.sleep(0.2)
            ray.cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
            _plain_tasks(ray)  # warm the workers of both nodes, and each contender
            _ray_data(ray)
            _batchline(backend, Path(tmp), 0)
            plain = _timed(lambda: _plain_tasks(ray))
            data = _timed(lambda: _ray_data(ray))
            ours = _timed(lambda: _batchline(backend, Path(tmp), 1))
            rows += [
                Row(
                    LABEL, "plain Ray tasks (2 in flight)", f"{plain:,.0f} items/s", "keeps nothing"
                ),
                Row(LABEL, "Ray Data (map_batches)", f"{data:,.0f} items/s", "no resume"),
                Row(
                    LABEL,
                    "batchline on Ray (max_concurrency=2)",
                    f"{ours:,.0f} items/s",
                    "commits every batch to SQLite; resumable",
                ),
            ]
            rows += _memory_rows(ray, backend)
        finally:
            ray.shutdown()
    return rows
