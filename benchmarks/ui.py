"""Dashboard: how fast its pages answer over a state file holding 1,000,000 items.

A run of 1,000,000 items (1% failed, chunks of 100) is written once with the engine;
then the runs page, the run page, the chart data, a deep page of the item browser and
a key search are fetched over HTTP from a real ``batchline ui`` server, each timed as
the best of five. The peer is the naive way to show the same numbers: counting the
run's items with ``SQLiteStateStore.list_runs()`` (what ``batchline runs`` does).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore, run_batches
from batchline.engine import ItemFailed
from batchline.ui import create_app, serve

from .common import Row, best_of

ITEMS = 1_000_000


def _work(batch: Any) -> list[Any]:
    return [ItemFailed(ValueError("no data")) if i % 100 == 7 else {"n": i} for i in batch.items]


def _serve(path: Path) -> tuple[str, asyncio.AbstractEventLoop, Any]:
    loop = asyncio.new_event_loop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        holder["runner"] = loop.run_until_complete(serve(create_app([path]), "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    threading.Thread(target=main, daemon=True).start()
    ready.wait(30)
    return f"http://127.0.0.1:{port}", loop, holder["runner"]


def _fetch(url: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback only
        response.read()


def run() -> list[Row]:
    """Time the dashboard's pages over one million items."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        start = time.perf_counter()
        with SQLiteStateStore(path) as store:
            run_batches(
                range(ITEMS), _work, chunk_size=100, key=lambda i: i, store=store, run_id="big"
            )
        written = time.perf_counter() - start
        base, loop, runner = _serve(path)
        pages = {
            "runs page": "/",
            "run page (counts, failures page 1)": "/run?s=0&id=big",
            "chart data": "/api/series?s=0&id=big",
            "item browser, page 10,000 of 20,000": "/items?s=0&id=big&page=10000",
            "key search": "/items?s=0&id=big&q=777777",
        }
        for name, page in pages.items():
            seconds = best_of(5, lambda page=page: _fetch(base + page))
            rows.append(
                Row(
                    "dashboard over 1,000,000 items",
                    f"batchline ui: {name}",
                    f"{seconds * 1000:.0f} ms",
                    "target well under 1 s",
                )
            )
        with SQLiteStateStore(path) as store:
            naive = best_of(3, store.list_runs)
        rows.append(
            Row(
                "dashboard over 1,000,000 items",
                "peer: count items per run (SQLiteStateStore.list_runs)",
                f"{naive * 1000:.0f} ms",
                f"the state file was written in {written:.0f} s",
            )
        )
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row.contender}: {row.value} ({row.note})")
