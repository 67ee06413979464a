"""Storage faults with real files, mounts, limits and processes.

Each fault becomes a ``StateError`` naming the file, the run and the remedy (never "move
the file away"); nothing committed is lost; listing and showing runs works on a
read-only state file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchline import SQLiteStateStore, StateError, run_batches
from batchline.state.faults import StateFileError

CASES = Path(__file__).resolve().parents[1] / "cases"
WORKER = str(CASES / "fault_worker.py")


def _can_mount(tmp_path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    ok = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
        capture_output=True,
        check=False,
    )
    if ok.returncode != 0:
        return False
    subprocess.run(["umount", str(probe)], check=False)
    return True


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _committed(out: str) -> list[int]:
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")]


def _no_bad_advice(message: str) -> None:
    assert "move the file" not in message
    assert "never move or delete one of them alone" in message


@pytest.mark.parametrize("how", ["tmpfs", "file-size-limit"])
def test_disk_full_is_explained_and_nothing_committed_is_lost(
    tmp_path: Path, python: str, how: str
) -> None:
    items, size = 400, 2000
    if how == "tmpfs" and not _can_mount(tmp_path):
        pytest.skip("mounting a small tmpfs needs root (the file-size-limit case runs instead)")
    if how == "tmpfs":
        context: contextlib.AbstractContextManager[Path] = _tmpfs(tmp_path / "small", "256k")
        limit: list[str] = []
    else:  # no mount here: a file-size limit in the child fails writes the same way
        (tmp_path / "small").mkdir()
        context = contextlib.nullcontext(tmp_path / "small")
        limit = ["200000"]
    with context as folder:
        db = folder / "state.db"
        full = subprocess.run(
            [python, WORKER, str(db), "big", str(items), str(size), *limit],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert full.returncode == 4, full.stderr
        message = full.stderr
        assert "StateFileError" in message
        assert "is full" in message
        assert str(db) in message
        assert "'big'" in message
        assert "resume the same run_id" in message
        _no_bad_advice(message)
        committed = _committed(full.stdout)
        assert committed, "some batches were committed before the disk filled up"
        store = SQLiteStateStore(db, read_only=True)
        records = list(store.iter_items("big"))
        assert len(records) >= 5 * len(committed)  # everything reported is there
        store.close()
        if limit:
            limit = []
        else:
            subprocess.run(["mount", "-o", "remount,size=8m", str(folder)], check=True)
        done = subprocess.run(
            [python, WORKER, str(db), "big", str(items), str(size)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        store = SQLiteStateStore(db, read_only=True)
        assert [r.key for r in store.iter_items("big")] == [r.key for r in store.iter_items("big")]
        assert store.get_run("big").succeeded == items
        store.close()


def _open_and_run(path: Path, run_id: str = "r", **options: float) -> None:
    store = SQLiteStateStore(path, **options)  # type: ignore[arg-type]
    run_batches(
        range(10),
        lambda b: list(b.items),
        chunk_size=5,
        store=store,
        run_id=run_id,
        progress=False,
    )


def _open_and_read(path: Path) -> None:
    store = SQLiteStateStore(path)
    list(store.iter_items("r"))
    store.list_runs()


def _state_with_a_run(path: Path) -> None:
    store = SQLiteStateStore(path)
    run_batches(
        range(10), lambda b: list(b.items), chunk_size=5, store=store, run_id="r", progress=False
    )
    store.close()


def test_read_only_file_is_explained_and_runs_and_show_still_work(
    tmp_path: Path, python: str
) -> None:
    mounted = _can_mount(tmp_path)
    folder = tmp_path / "ro"
    with _tmpfs(folder, "1m") if mounted else contextlib.nullcontext(folder) as where:
        if not mounted:
            where.mkdir()
        db = where / "state.db"
        _state_with_a_run(db)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        else:
            db.chmod(0o444)
            where.chmod(0o555)
        try:
            with pytest.raises(StateFileError) as caught:
                _open_and_run(db)
            assert caught.value.reason == "read-only"
            assert str(db) in str(caught.value)
            assert "writable" in str(caught.value)
            _no_bad_advice(str(caught.value))
            for args in (["runs"], ["show", "r", "--items"]):
                shown = subprocess.run(
                    [python, "-m", "batchline.cli", *args, "--state", str(db)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert shown.returncode == 0, shown.stderr
                assert "r" in shown.stdout
        finally:
            if not mounted:
                where.chmod(0o755)


def test_a_frozen_writer_makes_a_bounded_wait_that_says_what_it_waited_for(
    sqlite_store: SQLiteStateStore, db_path: Path, python: str
) -> None:
    run_batches(range(4), lambda b: list(b.items), store=sqlite_store, run_id="r", progress=False)
    writer = subprocess.Popen(
        [
            python,
            "-c",
            "import sqlite3, sys, time\n"  # noqa: S608 - a fixed statement
            f"db = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            'db.execute("UPDATE runs SET updated_at = 0")\n'
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "locked"
        writer.send_signal(signal.SIGSTOP)  # frozen, holding the write transaction
        with pytest.raises(StateFileError) as caught:
            _open_and_run(db_path, "r2", timeout=0.5)
        message = str(caught.value)
        assert caught.value.reason == "locked"
        assert "waited for 0.5 s" in message
        assert f"fuser {db_path}" in message
        assert "kill -CONT" in message
        _no_bad_advice(message)
        # Readers are not blocked by the writer.
        shown = subprocess.run(
            [python, "-m", "batchline.cli", "runs", "--state", str(db_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
    finally:
        writer.send_signal(signal.SIGCONT)
        writer.kill()
        writer.wait()


def test_a_malformed_database_is_explained(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    _state_with_a_run(db)
    data = bytearray(db.read_bytes())
    page = 4096
    data[page : page * 3] = b"\xde\xad\xbe\xef" * (page // 2)  # trash two pages of tables
    db.write_bytes(bytes(data))
    with pytest.raises(StateError) as caught:
        _open_and_read(db)
    message = str(caught.value)
    assert str(db) in message
    assert "damaged" in message or "malformed" in message
    assert ".recover" in message
    _no_bad_advice(message)


def test_a_damaged_result_row_names_the_batch_and_run(tmp_path: Path) -> None:
    db = tmp_path / "row.db"
    _state_with_a_run(db)
    raw = sqlite3.connect(db)
    raw.execute("UPDATE chunks SET results = '[1, 2' WHERE batch = 2")
    raw.commit()
    raw.close()
    store = SQLiteStateStore(db)
    with pytest.raises(StateFileError) as caught:
        run_batches(
            range(10),
            lambda b: list(b.items),
            chunk_size=5,
            store=store,
            run_id="r",
            progress=False,
        )
    message = str(caught.value)
    assert "batch 2 of run 'r'" in message
    assert str(db) in message
    assert "other batches are intact" in message


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO customers (name) VALUES ('ada')")
    raw.commit()
    raw.close()
    with pytest.raises(StateFileError) as caught:
        SQLiteStateStore(db)
    assert caught.value.reason == "foreign"
    assert "`customers`" in str(caught.value)
    assert "will not add its tables" in str(caught.value)
    raw = sqlite3.connect(db)
    tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    raw.close()
    assert tables == ["customers"]


def test_run_active_error_from_the_cli_is_one_line_with_its_own_exit_code(
    tmp_path: Path, python: str
) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: act\nsettings: {workspace: ws}\nsteps:\n"
        "  - name: fail\n    task: python\n    inputs: {code: 'result = 1 / 0'}\n"
    )
    first = subprocess.run(
        [python, "-m", "batchline.cli", "run", "wf.yaml", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 1
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    (info,) = store.list_runs()
    store.acquire(info.run_id)  # this (live) process now drives the run
    try:
        again = subprocess.run(
            [python, "-m", "batchline.cli", "resume", info.run_id, "--workspace", "ws"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        store.close()
    assert again.returncode == 3
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert lines[0].startswith("error: run ")
    assert f"is active in process {os.getpid()}" in lines[0]
    assert "Traceback" not in again.stderr


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("storage-fault tests use Linux mounts and /proc")
