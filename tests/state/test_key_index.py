"""The key index of a first session: keys go into `chunks` as batches commit and into the
`items` index once, sorted, when the session ends. Readers see every committed item
meanwhile, a crash leaves nothing unreachable, and files written before this (schema 1)
keep working."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore, run_batches
from batchline.engine import Batch, content_keys
from batchline.state.schema import MIGRATIONS, migrate
from batchline.ui.source import StateSource

ITEMS = [{"name": f"company {n}", "n": n} for n in range(60)]
KEYS = content_keys(ITEMS)


def _unindexed(path: Path, run_id: str) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM chunks AS c JOIN runs AS r ON r.id = c.run"
                " WHERE r.run_id = ? AND r.index_from IS NOT NULL AND c.id >= r.index_from",
                (run_id,),
            ).fetchone()[0]
        )


def test_a_reader_sees_every_item_of_a_first_session_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    seen: dict[str, Any] = {}

    def work(batch: Batch[dict[str, Any]]) -> list[Any]:
        if batch.number == 4:  # three batches (30 items) committed, keys not indexed yet
            seen["unindexed"] = _unindexed(path, "live")
            with SQLiteStateStore(path, read_only=True) as reader:
                seen["succeeded"] = reader.get_run("live").succeeded
                seen["listed"] = {r.run_id: r.succeeded for r in reader.list_runs()}
                seen["lookup"] = reader.lookup("live", [KEYS[0], KEYS[29], KEYS[30]])
                seen["items"] = [r.key for r in reader.iter_items("live")]
            source = StateSource(path)
            try:
                seen["ui_item"] = source.item("live", KEYS[22])
                seen["ui_failed"] = source.item("live", KEYS[12])
                seen["ui_find"] = source.find_keys("live", KEYS[5][:12])
            finally:
                source.close()
        if batch.number == 2:
            raise ValueError("batch two fails")
        return [item["n"] * 2 for item in batch.items]

    store = SQLiteStateStore(path)
    result = run_batches(ITEMS, work, chunk_size=10, store=store, run_id="live")
    store.close()
    assert seen["unindexed"] == 3  # batches 1-3 (batch 2's failed keys are indexed at once)
    assert seen["succeeded"] == 20
    assert seen["listed"] == {"live": 20}
    assert set(seen["lookup"]) == {KEYS[0], KEYS[29]}
    assert seen["lookup"][KEYS[29]].result == 58
    assert seen["items"] == KEYS[:30]  # input order, failed ones included
    assert seen["ui_item"] is not None
    assert seen["ui_item"].result == 44
    assert seen["ui_failed"] is not None
    assert seen["ui_failed"].status == "failed"
    assert seen["ui_find"] == [KEYS[5]]
    assert result.stats.failed == 10
    assert _unindexed(path, "live") == 0  # indexed when the session ended
    with SQLiteStateStore(path) as again:
        assert again.get_run("live").succeeded == 50
        assert again.get_run("live").failed == 10
        records = again.lookup("live", KEYS)
        assert len(records) == 60
        assert records[KEYS[59]].result == 118


WORKER = textwrap.dedent(
    """
    import sys, time
    from batchline import SQLiteStateStore, run_batches
    items = [{"name": f"company {n}", "n": n} for n in range(400)]
    log = open(sys.argv[2], "a")
    def work(batch):
        for item in batch.items:
            log.write(f"{item['n']}\\n")
        log.flush()
        time.sleep(0.05)
        return [item["n"] for item in batch.items]
    run_batches(items, work, chunk_size=10, store=SQLiteStateStore(sys.argv[1]), run_id="k")
    """
)


def test_a_first_session_killed_before_indexing_resumes_exactly(tmp_path: Path) -> None:
    path, log = tmp_path / "state.db", tmp_path / "ran.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(log)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and _unindexed(path, "k") >= 5:
            break
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    unindexed = _unindexed(path, "k")
    assert unindexed >= 5
    with SQLiteStateStore(path, read_only=True) as reader:
        assert reader.get_run("k").succeeded == unindexed * 10

    items = [{"name": f"company {n}", "n": n} for n in range(400)]
    ran: list[int] = []

    def work(batch: Batch[dict[str, Any]]) -> list[int]:
        ran.extend(item["n"] for item in batch.items)
        return [item["n"] for item in batch.items]

    with SQLiteStateStore(path) as store:
        result = run_batches(items, work, chunk_size=10, store=store, run_id="k")
    assert _unindexed(path, "k") == 0
    assert result.stats.resumed == unindexed * 10
    assert result.ok
    assert result.results == list(range(400))
    before = {int(n) for n in log.read_text().split()}
    committed_before = set(range(400)) - set(ran)
    assert committed_before <= before  # what was committed had run
    assert len(committed_before) == unindexed * 10
    assert not committed_before & set(ran)  # nothing committed ran again


def test_a_schema_1_file_is_migrated_and_its_runs_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path), {1: MIGRATIONS[1]})
    db.close()
    with sqlite3.connect(path) as db:  # a v1 file has no `index_from`
        assert "index_from" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    # Written by v1: keys indexed batch by batch (`items` rows for every done item).
    with SQLiteStateStore(path) as store:
        run_batches(ITEMS, lambda b: [i["n"] for i in b.items], store=store, run_id="old")
    with SQLiteStateStore(path, read_only=True) as reader:
        assert reader.get_run("old").succeeded == 60
        assert len(list(reader.iter_items("old"))) == 60
